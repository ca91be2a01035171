//! Warm restart with the real daemon: zero churn when nothing changed, exactly the differences when
//! something did, EOIU and its timeout, and SIGKILL during a link storm.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::daemon::{assert_metrics, parse_metric, wait_until};
use common::monitor::Monitor;
use common::rig::{rig_with, T};

#[test]
fn warm_restart_with_nothing_changed_writes_nothing() {
    let (rig, names) = rig_with(6);
    rig.first_run(&names, &[], false);
    rig.enable_warm();
    // PortInitDone is what APPL_DB may see; clear it so its re-send is observable.
    rig.cli(0, &["DEL", "PORT_TABLE:PortInitDone"]);
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.start(&[]);
    rig.wait_reconciled(&d);
    // PortInitDone once every configured port exists (not before: some tests leave one out).
    let configured = rig.cli(4, &["KEYS", "PORT|*"]).lines().count();
    if configured == names.len() {
        assert!(wait_until(T, || !rig
            .appl("PORT_TABLE:PortInitDone")
            .is_empty()));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        mon.state_port_writes(),
        Vec::<String>::new(),
        "STATE_DB churn"
    );
    let appl: Vec<String> = mon
        .writes(0)
        .into_iter()
        .filter(|l| !l.contains("PortInitDone") && !l.contains("PORT_TABLE_CHANNEL"))
        .filter(|l| l.contains("Ethernet") || l.contains("PortConfigDone"))
        .collect();
    assert_eq!(appl, Vec::<String>::new(), "APPL_DB writes on a warm start");
    let warm = rig.warm_table();
    assert_eq!(warm.get("restore_count").map(String::as_str), Some("1"));
    assert!(rig.converged(&names));
    let m = d.metrics();
    assert_metrics(&m, &[("portsyncd_starts_total{mode=\"warm\"}", 1.0)]);
    assert_eq!(
        parse_metric(&m, "portsyncd_starts_total{mode=\"cold\"}"),
        1.0,
        "lifetime: {m}"
    );
    assert_metrics(
        &m,
        &[
            ("portsyncd_initial_sync_total{outcome=\"eoiu\"}", 2.0),
            ("portsyncd_initial_sync_seconds_count", 2.0),
            (
                "portsyncd_warm_restarts_total{result=\"reconciled_saved_state_eoiu\"}",
                1.0,
            ),
        ],
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn warm_restart_writes_exactly_what_changed_while_down() {
    let (rig, names) = rig_with(5); // Ethernet0..16
    rig.first_run(&names[..4], &[], false); // Ethernet16 has no netdev yet
                                            // While the daemon is down: admin down, MTU, a deleted link, a new link.
    rig.ns.set_down("Ethernet0");
    rig.ns.set_mtu("Ethernet4", 9000);
    rig.ns.del_link("Ethernet8");
    rig.add_port("Ethernet16");
    // The carrier of a new veth comes up asynchronously (linkwatch): let the kernel settle, so the
    // daemon sees one state for it, not two.
    assert!(wait_until(T, || rig
        .kernel("Ethernet16")
        .is_some_and(|k| k.0 == "up")));
    rig.enable_warm();
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.start(&[]);
    rig.wait_reconciled(&d);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    std::thread::sleep(Duration::from_millis(300));
    let written = mon.state_ports_written();
    let want: BTreeSet<String> = ["Ethernet0", "Ethernet4", "Ethernet8", "Ethernet16"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(written, want, "{:#?}", mon.state_port_writes());
    assert_eq!(
        mon.state_port_writes().len(),
        4,
        "one write each: {:#?}",
        mon.state_port_writes()
    );
    assert!(rig.state("Ethernet8").is_empty());
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn eoiu_timeout_zero_and_long() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    rig.enable_warm();
    // 0 = no wait.
    let mut d = rig.start(&["--eoiu-timeout-secs", "0"]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    assert!(
        d.log_text().contains("outcome=\"timeout\"") || d.log_text().contains("outcome=timeout"),
        "{}",
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0));
    // A long timeout with a prompt dump completes at EOIU, promptly.
    let mut d = rig.start(&["--eoiu-timeout-secs", "600"]);
    assert!(
        d.wait_log("initial sync complete", Duration::from_secs(5)),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("outcome=\"eoiu\"") || log.contains("outcome=eoiu"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let m = d.metrics();
    // Lifetime: 2 EOIU (first run + this) and 1 timeout; never twice for one start.
    assert_metrics(
        &m,
        &[
            ("portsyncd_initial_sync_total{outcome=\"eoiu\"}", 2.0),
            ("portsyncd_initial_sync_total{outcome=\"timeout\"}", 1.0),
            // The warm start with timer 0: the alert rule PortsyncdWarmRestartTimedOut reads this.
            ("portsyncd_warm_restart_timeouts_total", 1.0),
        ],
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_dump_that_never_completes_ends_at_the_timeout() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    rig.enable_warm();
    rig.ns.set_down("Ethernet0"); // a change to publish once the timeout fires
    let started = std::time::Instant::now();
    let mut d = rig.start_with_env(
        &["--eoiu-timeout-secs", "2"],
        &[("PORTSYNCD_FAULT_DROP_DUMP_DONE", "1")],
    );
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "completed before the timeout: {waited:?}"
    );
    let log = d.log_text();
    assert!(
        log.contains("outcome=\"timeout\"") || log.contains("outcome=timeout"),
        "{log}"
    );
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    std::thread::sleep(Duration::from_millis(300));
    let m = d.metrics();
    assert_metrics(
        &m,
        &[
            ("portsyncd_initial_sync_total{outcome=\"timeout\"}", 1.0),
            (
                "portsyncd_warm_restarts_total{result=\"reconciled_degraded\"}",
                1.0,
            ),
            ("portsyncd_warm_restart_timeouts_total", 1.0),
        ],
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn sigkill_during_a_link_storm_then_warm_restart_converges_every_time() {
    let (rig, names) = rig_with(16);
    rig.first_run(&names, &[], false);
    rig.enable_warm();
    let mut storm = String::new();
    for r in 0..40 {
        for (i, p) in names.iter().enumerate() {
            storm += &match (r + i) % 3 {
                0 => format!("link set {p} down\n"),
                1 => format!("link set {p} up\n"),
                _ => format!("link set {p} mtu {}\n", 1500 + (r % 5) * 100),
            };
        }
    }
    let rounds = 20;
    for round in 0..rounds {
        let d = rig.start(&[]);
        let ns = rig.ns.name.clone();
        let batch = storm.clone();
        let storm_thread = std::thread::spawn(move || {
            let mut child = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ip", "-batch", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("ip batch");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(batch.as_bytes())
                .expect("write");
            child.wait().expect("wait")
        });
        // Kill at a moment that varies from round to round (start-up, sync, mid-storm).
        std::thread::sleep(Duration::from_millis(40 + (round as u64 * 37) % 400));
        let mut d = d;
        d.kill();
        storm_thread.join().expect("storm");
        // The next start must open the store and converge.
        let mut d2 = rig.start(&[]);
        assert!(
            rig.wait_converged(&names, T),
            "round {round}: {:?}\n{}",
            rig.mismatches(&names),
            d2.log_text()
        );
        assert!(
            !d2.log_text().contains("fatal"),
            "round {round}: {}",
            d2.log_text()
        );
        d2.kill(); // leave the next round a store written by a killed process too
    }
}
