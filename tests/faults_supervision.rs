//! Supervision (issue 7): a panic injected into each worker thread (`fault-injection` feature,
//! `PORTSYNCD_FAULT_PANIC=<thread>[:n]`) makes the daemon log the thread's name and exit with status 1
//! within 1 s, so supervisord / SONiC's critical-process monitor restarts it. Real redis-server and
//! netns. The time is measured from the panic's log timestamp to the moment the process became a
//! zombie (polled every millisecond in /proc), and printed.
//!
//! The auxiliary threads (the metrics endpoint, the CONFIG_DB `LOGGER|portsyncd` follower) are not
//! worth a restart of the whole daemon: a panic there is logged and the thread is restarted with
//! backoff, while ports keep publishing (`..._is_restarted_...` below).

#![cfg(feature = "fault-injection")]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::Daemon;
use common::rig::{Rig, T};

/// The bound: exit within 1 s of the panic.
const EXIT_BOUND: Duration = Duration::from_secs(1);

/// Seconds since midnight UTC of a tracing timestamp `2026-11-30T14:03:27.123456Z`.
fn log_time_of_day(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut it = time.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_time_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// Polls /proc every millisecond until `pid` is a zombie (exited, not reaped) or gone; returns the
/// time of day it was first seen so, or None after `timeout`.
fn wait_exit_time(pid: u32, timeout: Duration) -> Option<f64> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        let exited = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // "pid (comm) S ...": the state follows the last ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
            Err(_) => true,
        };
        if exited {
            return Some(now_time_of_day());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Starts the daemon with a panic injected into `thread`, triggers it with `trigger`, and checks
/// exit status 1 within [`EXIT_BOUND`] of the panic, with the thread named in the log.
fn panic_exits_within_bound(thread: &str, spec: &str, trigger: impl FnOnce(&Rig, &Daemon)) {
    panic_exits_within_bound_env(thread, &[("PORTSYNCD_FAULT_PANIC", spec)], trigger);
}

fn panic_exits_within_bound_env(
    thread: &str,
    env: &[(&str, &str)],
    trigger: impl FnOnce(&Rig, &Daemon),
) -> String {
    let rig = Rig::new(&["Ethernet0"]);
    let mut d = rig.start_with_env(&[], env);
    assert!(
        common::daemon::wait_until(T, || {
            let log = d.log_text();
            log.contains("initial sync complete") || log.contains("thread panicked")
        }),
        "{}",
        d.log_text()
    );
    trigger(&rig, &d);
    let exited_at = wait_exit_time(d.pid(), T);
    let status = d.wait(T);
    let log = d.log_text();
    let exited_at =
        exited_at.unwrap_or_else(|| panic!("still running {T:?} after the trigger\n{log}"));
    let status = status.expect("reaped");
    assert_eq!(status.code(), Some(1), "{log}");
    let panic_line = log
        .lines()
        .find(|l| l.contains("thread panicked"))
        .unwrap_or_else(|| panic!("no panic logged\n{log}"));
    assert!(
        panic_line.contains(&format!("thread={thread}")),
        "the panic names the thread: {panic_line}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("worker thread died") && l.contains(&format!("thread={thread}"))),
        "{log}"
    );
    let panicked_at = log_time_of_day(panic_line).expect("timestamp");
    let took = (exited_at - panicked_at).rem_euclid(86_400.0);
    println!(
        "thread {thread}: exit status {:?} {:.1} ms after the panic",
        status.code(),
        took * 1000.0
    );
    assert!(
        took <= EXIT_BOUND.as_secs_f64(),
        "exit {took:.3} s after the panic\n{log}"
    );
    log
}

#[test]
fn a_panic_of_the_netlink_reader_exits_1_within_1s() {
    // The first burst is the initial dump; the second is the link change below.
    panic_exits_within_bound("netlink", "netlink:1", |rig, _| rig.add_port("Ethernet0"));
}

#[test]
fn a_panic_of_the_redis_writer_exits_1_within_1s() {
    // The first batch goes out once Ethernet0 exists.
    panic_exits_within_bound("redis", "redis", |rig, _| rig.add_port("Ethernet0"));
}

#[test]
fn a_panic_of_the_store_committer_exits_1_within_1s() {
    // The first commit follows the initial sync by itself.
    panic_exits_within_bound("store", "store", |_, _| {});
}

#[test]
fn a_panic_while_the_loop_is_stuck_exits_1_within_1s_by_the_watchdog() {
    // The loop sleeps 3 s per batch of inputs (a stuck core): it cannot act on the death, so the
    // exit watchdog does. The reader panics on its first burst (the initial dump).
    let log = panic_exits_within_bound_env(
        "netlink",
        &[
            ("PORTSYNCD_FAULT_PANIC", "netlink"),
            ("PORTSYNCD_FAULT_LOOP_DELAY_MS", "3000"),
        ],
        |_, _| {},
    );
    assert!(log.contains("took too long: exiting now"), "{log}");
}

/// Starts a daemon with `PORTSYNCD_FAULT_PANIC=spec` and Ethernet0 published; returns both.
fn started_with_panic(rig: &Rig, spec: &str) -> Daemon {
    let d = rig.start_with_env(&[], &[("PORTSYNCD_FAULT_PANIC", spec)]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_port("Ethernet0");
    assert!(
        rig.wait_converged(&["Ethernet0".to_string()], T),
        "{}",
        d.log_text()
    );
    d
}

/// After an auxiliary thread's panic: the daemon still runs and still publishes a link change.
fn still_publishing(rig: &Rig, d: &mut Daemon, mtu: u32) {
    assert!(
        d.wait(std::time::Duration::ZERO).is_none(),
        "{}",
        d.log_text()
    );
    rig.ns.set_mtu("Ethernet0", mtu);
    assert!(
        common::daemon::wait_until(T, || rig.state("Ethernet0").get("mtu")
            == Some(&mtu.to_string())),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_panic_of_the_metrics_endpoint_is_restarted_and_ports_keep_publishing() {
    let rig = Rig::new(&["Ethernet0"]);
    // The first request panics the endpoint's thread; later ones must be served again.
    let mut d = started_with_panic(&rig, "metrics:0:1");
    let first = d.metrics();
    assert!(!first.contains("portsyncd_starts_total"), "{first}");
    assert!(
        d.wait_log("thread panicked", T),
        "the panic is logged: {}",
        d.log_text()
    );
    assert!(
        common::daemon::wait_until(T, || d.metrics().contains("portsyncd_starts_total")),
        "/metrics is not served after the panic\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("restarting") && l.contains("thread=metrics")),
        "{log}"
    );
    still_publishing(&rig, &mut d, 4000);
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn a_panic_of_the_logger_follower_is_restarted_and_follows_again() {
    let rig = Rig::new(&["Ethernet0"]);
    // Read 0 is the start's; read 1 (the first keyspace event below) panics.
    let mut d = started_with_panic(&rig, "swss-logger:1:1");
    rig.cli(
        common::daemon::CONFIG_DB,
        &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "INFO"],
    );
    assert!(d.wait_log("thread panicked", T), "{}", d.log_text());
    // The restarted follower re-reads the key and applies the level written while it was down.
    assert!(
        common::daemon::wait_until(T, || d
            .log_text()
            .lines()
            .any(|l| l.contains("log level set from CONFIG_DB") && l.contains("loglevel=INFO"))),
        "the follower did not come back\n{}",
        d.log_text()
    );
    // And it keeps following.
    rig.cli(
        common::daemon::CONFIG_DB,
        &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "DEBUG"],
    );
    assert!(
        common::daemon::wait_until(T, || {
            d.log_text()
                .lines()
                .any(|l| l.contains("log level set from CONFIG_DB") && l.contains("loglevel=DEBUG"))
        }),
        "{}",
        d.log_text()
    );
    still_publishing(&rig, &mut d, 4000);
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn the_logger_follower_survives_foreign_bytes_and_a_wrong_type() {
    let rig = Rig::new(&["Ethernet0"]);
    let mut d = rig.start(&[]);
    assert!(
        d.wait_log("registered with swss Logger", T),
        "{}",
        d.log_text()
    );
    let mut con = rig.redis.client(i64::from(common::daemon::CONFIG_DB));
    let level_set = |d: &Daemon, level: &str| {
        let needle = format!("loglevel={level}");
        common::daemon::wait_until(T, || {
            d.log_text()
                .lines()
                .any(|l| l.contains("log level set from CONFIG_DB") && l.contains(&needle))
        })
    };
    // LOGOUTPUT in Latin-1 (not UTF-8): ignored and logged; LOGLEVEL still follows.
    let _: () = redis::cmd("HSET")
        .arg("LOGGER|portsyncd")
        .arg("LOGOUTPUT")
        .arg(&b"SYSLOG\xe9"[..])
        .query(&mut con)
        .expect("HSET bytes");
    rig.cli(
        common::daemon::CONFIG_DB,
        &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "INFO"],
    );
    assert!(level_set(&d, "INFO"), "{}", d.log_text());
    assert!(
        d.log_text().contains("SYSLOG\\xe9"),
        "the bad value is logged escaped\n{}",
        d.log_text()
    );
    // The key becomes a string (WRONGTYPE): ignored and logged, not a lost connection.
    rig.cli(common::daemon::CONFIG_DB, &["DEL", "LOGGER|portsyncd"]);
    rig.cli(
        common::daemon::CONFIG_DB,
        &["SET", "LOGGER|portsyncd", "garbage"],
    );
    assert!(
        d.wait_log("CONFIG_DB log settings unusable", T),
        "{}",
        d.log_text()
    );
    // Fixed again: followed at once.
    rig.cli(common::daemon::CONFIG_DB, &["DEL", "LOGGER|portsyncd"]);
    rig.cli(
        common::daemon::CONFIG_DB,
        &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "DEBUG"],
    );
    assert!(level_set(&d, "DEBUG"), "{}", d.log_text());
    let log = d.log_text();
    assert!(
        !log.contains("log settings unreachable"),
        "a bad entry is not a lost connection\n{log}"
    );
    // Both kinds were counted as CONFIG_DB entry errors.
    let m = d.metrics();
    for reason in ["not_utf8", "wrong_type"] {
        let series =
            format!("portsyncd_redis_entry_errors_total{{db=\"CONFIG_DB\",reason=\"{reason}\"}}");
        assert!(
            common::daemon::parse_metric(&m, &series) >= 1.0,
            "{series}\n{m}"
        );
    }
    rig.add_port("Ethernet0");
    assert!(
        rig.wait_converged(&["Ethernet0".to_string()], T),
        "{}",
        d.log_text()
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}
