//! `portsyncd-state audit` against a real redis-server, a private netns and the running daemon:
//! 0 on a converged switch, 1 naming the port whose STATE_DB entry lies, 2 on bad input.

mod common;

use std::process::Output;

use common::daemon::{wait_until, STATE_DB};
use common::rig::{rig_with, Rig, T};

fn audit(rig: &Rig, args: &[&str]) -> Output {
    let mut argv = vec![env!("CARGO_BIN_EXE_portsyncd-state"), "--state-dir"];
    let dir = rig.state_dir.display().to_string();
    argv.push(&dir);
    argv.push("audit");
    argv.extend_from_slice(args);
    rig.ns.exec(&argv)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn audit_converged_then_lying_then_bad_input() {
    let (rig, names) = rig_with(3);
    let url = rig.redis.url();
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    for p in &names {
        rig.add_port(p);
    }
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    // The saved state (JSON export) catches up after the commit.
    let export = rig.state_dir.join("port_state.json");
    assert!(wait_until(T, || std::fs::read_to_string(&export)
        .is_ok_and(|t| names.iter().all(|n| t.contains(n.as_str())))));

    // Converged: 0, while the daemon runs.
    let o = audit(&rig, &["--redis-url", &url, "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ok: STATE_DB matches the kernel for all 3"),
        "{}",
        text(&o)
    );
    for n in &names {
        assert!(out.contains(n.as_str()), "--all lists {n}: {}", text(&o));
    }

    // STATE_DB made to lie about one port's MTU: 1, naming that port only.
    rig.cli(STATE_DB, &["HSET", "PORT_TABLE|Ethernet4", "mtu", "1234"]);
    let o = audit(&rig, &["--redis-url", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Ethernet4"), "{}", text(&o));
    assert!(
        !err.contains("Ethernet0") && !err.contains("Ethernet8"),
        "{}",
        text(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let row = out
        .lines()
        .find(|l| l.starts_with("Ethernet4"))
        .unwrap_or_else(|| panic!("no row for Ethernet4: {}", text(&o)));
    assert!(row.contains("1234") && row.contains("mtu"), "{row}");
    assert!(
        !out.lines().any(|l| l.starts_with("Ethernet0")),
        "only differences by default"
    );

    // A STATE_DB entry for a port the kernel does not have: 1 as well.
    rig.cli(STATE_DB, &["HSET", "PORT_TABLE|Ethernet4", "mtu", "1500"]);
    rig.ns.ip("link del Ethernet8");
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    rig.cli(
        STATE_DB,
        &[
            "HSET",
            "PORT_TABLE|Ethernet8",
            "state",
            "ok",
            "admin_status",
            "up",
            "netdev_oper_status",
            "up",
            "mtu",
            "1500",
        ],
    );
    let o = audit(&rig, &["--redis-url", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Ethernet8"),
        "{}",
        text(&o)
    );

    // Bad input: 2.
    let o = audit(&rig, &["--redis-url", "foo://x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let gone = rig.state_dir.with_extension("absent.sock");
    let o = audit(
        &rig,
        &["--redis-url", &format!("unix://{}", gone.display())],
    );
    assert_eq!(o.status.code(), Some(2), "unreachable Redis: {}", text(&o));
    let o = audit(&rig, &["--db-config", "/nonexistent/database_config.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // The daemon was not disturbed.
    assert!(!d.log_text().contains("fatal"), "{}", d.log_text());
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
