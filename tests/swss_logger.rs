//! swss-common Logger compatibility against a real redis-server and the real daemon in a netns:
//! CONFIG_DB `LOGGER|portsyncd` is registered with swss-common's defaults, an operator's values are
//! kept, and a live `HSET` (what `swssloglevel` does) changes the level and the output.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{hgetall, wait_until, Daemon, CONFIG_DB};
use common::rig::{Rig, T};

const KEY: &str = "LOGGER|portsyncd";

/// A debug line the daemon writes for every STATE_DB port write.
const DEBUG_LINE: &str = "STATE_DB PORT_TABLE set";

fn start(rig: &Rig, log: &Path, extra: &[&str]) -> Daemon {
    let url = rig.redis.url();
    let state = rig.state_dir.display().to_string();
    let mut args = vec![
        "--redis-url",
        url.as_str(),
        "--state-dir",
        state.as_str(),
        "--metrics-enabled",
        "false",
        "--eoiu-timeout-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    Daemon::start_raw(&rig.ns.name, log, &args)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn stderr_of(log: &Path) -> PathBuf {
    log.with_extension("stderr")
}

fn logger(rig: &Rig) -> std::collections::BTreeMap<String, String> {
    hgetall(&rig.redis.socket, CONFIG_DB, KEY)
}

#[test]
fn registers_defaults_and_follows_live_changes() {
    let rig = Rig::new(&["Ethernet0"]);
    let log = rig.state_dir.with_extension("out");
    let err = stderr_of(&log);
    // stderr at start (given), the level from the table (not given): NOTICE, i.e. no debug lines.
    let mut d = start(&rig, &log, &["--log-output", "stderr"]);
    assert!(
        wait_until(T, || logger(&rig).len() == 2),
        "not registered: {:?}\n{}",
        logger(&rig),
        read(&err)
    );
    let l = logger(&rig);
    assert_eq!(l.get("LOGLEVEL").map(String::as_str), Some("NOTICE"));
    assert_eq!(l.get("LOGOUTPUT").map(String::as_str), Some("SYSLOG"));
    // The level came from the table, not from the option's default (`info`, which hides debug lines
    // as well, so the check below alone would pass with the table ignored).
    assert!(
        wait_until(T, || read(&err).contains(
            "log level set from CONFIG_DB LOGGER|portsyncd loglevel=NOTICE"
        )),
        "the table's NOTICE was not applied at start\n{}",
        read(&err)
    );
    assert!(
        wait_until(T, || read(&err).contains("initial sync complete")),
        "{}",
        read(&err)
    );

    rig.add_port("Ethernet0");
    let names = vec!["Ethernet0".to_string()];
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    assert!(
        !read(&err).contains(DEBUG_LINE),
        "NOTICE must hide debug lines\n{}",
        read(&err)
    );

    // What `swssloglevel -c portsyncd -l DEBUG` does.
    rig.cli(CONFIG_DB, &["HSET", KEY, "LOGLEVEL", "DEBUG"]);
    assert!(
        wait_until(T, || read(&err).contains(
            "log level set from CONFIG_DB LOGGER|portsyncd loglevel=DEBUG"
        )),
        "{}",
        read(&err)
    );
    rig.ns.ip("link set Ethernet0 mtu 1400");
    assert!(
        wait_until(T, || read(&err).contains(DEBUG_LINE)),
        "state {:?}\n{}",
        rig.state("Ethernet0"),
        read(&err)
    );

    // The output follows too: STDOUT.
    rig.cli(CONFIG_DB, &["HSET", KEY, "LOGOUTPUT", "STDOUT"]);
    assert!(
        wait_until(T, || read(&log).contains("log output set from CONFIG_DB")),
        "stdout: {}\nstderr: {}",
        read(&log),
        read(&err)
    );
    let before = read(&err).len();
    rig.ns.ip("link set Ethernet0 mtu 1300");
    assert!(
        wait_until(T, || read(&log).contains(DEBUG_LINE)),
        "{}",
        read(&log)
    );
    assert!(
        !read(&err)[before..].contains(DEBUG_LINE),
        "a line still went to stderr: {}",
        &read(&err)[before..]
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn keeps_an_operators_values_and_applies_them_at_start() {
    let rig = Rig::new(&["Ethernet0"]);
    // The operator set DEBUG earlier; LOGOUTPUT was never set.
    rig.cli(CONFIG_DB, &["HSET", KEY, "LOGLEVEL", "DEBUG"]);
    let log = rig.state_dir.with_extension("out");
    let err = stderr_of(&log);
    let mut d = start(&rig, &log, &["--log-output", "stderr"]);
    assert!(
        wait_until(T, || logger(&rig).len() == 2),
        "{:?}",
        logger(&rig)
    );
    let l = logger(&rig);
    assert_eq!(
        l.get("LOGLEVEL").map(String::as_str),
        Some("DEBUG"),
        "overwritten"
    );
    assert_eq!(l.get("LOGOUTPUT").map(String::as_str), Some("SYSLOG"));
    assert!(
        wait_until(T, || read(&err).contains("initial sync complete")),
        "{}",
        read(&err)
    );
    rig.add_port("Ethernet0");
    assert!(
        wait_until(T, || read(&err).contains(DEBUG_LINE)),
        "the table's DEBUG was not applied at start\n{}",
        read(&err)
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn an_explicit_level_wins_at_start_and_a_later_write_wins_after() {
    let rig = Rig::new(&["Ethernet0"]);
    rig.cli(CONFIG_DB, &["HSET", KEY, "LOGLEVEL", "DEBUG"]);
    let log = rig.state_dir.with_extension("out");
    let err = stderr_of(&log);
    let mut d = start(
        &rig,
        &log,
        &["--log-output", "stderr", "--log-level", "info"],
    );
    assert!(
        wait_until(T, || read(&err).contains("registered with swss Logger")),
        "{}",
        read(&err)
    );
    assert!(
        wait_until(T, || read(&err).contains("initial sync complete")),
        "{}",
        read(&err)
    );
    rig.add_port("Ethernet0");
    let names = vec!["Ethernet0".to_string()];
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    assert!(
        !read(&err).contains(DEBUG_LINE),
        "--log-level info must win at start\n{}",
        read(&err)
    );
    // The same value written again (swssloglevel does HSET) takes over.
    rig.cli(CONFIG_DB, &["HSET", KEY, "LOGLEVEL", "DEBUG"]);
    assert!(
        wait_until(T, || read(&err).contains(
            "log level set from CONFIG_DB LOGGER|portsyncd loglevel=DEBUG"
        )),
        "{}",
        read(&err)
    );
    rig.ns.ip("link set Ethernet0 mtu 1400");
    assert!(
        wait_until(Duration::from_secs(20), || read(&err).contains(DEBUG_LINE)),
        "{}",
        read(&err)
    );
    assert_eq!(d.terminate().code(), Some(0));
}
