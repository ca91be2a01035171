//! Redis faults judged by what Redis received (MONITOR), not by the daemon's counters: a stall with
//! the data intact, a restart that lost everything, and state changed behind the daemon's back
//! (anti-entropy).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::daemon::{parse_metric, signal, wait_until, Daemon};
use common::monitor::Monitor;
use common::rig::{peer_of, rig_with, Rig, T};

/// Starts the daemon with `extra`, creates every port (both ends up) and waits until STATE_DB
/// matches the kernel.
fn ready(rig: &Rig, names: &[String], extra: &[&str]) -> Daemon {
    let d = rig.start(extra);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    let last = format!("PORT_TABLE:{}", names[names.len() - 1]);
    assert!(wait_until(T, || rig.appl(&last).len() == 7));
    rig.add_ports(names);
    assert!(
        rig.wait_converged(names, T),
        "{:?}\n{}",
        rig.mismatches(names),
        d.log_text()
    );
    d
}

/// Changes `port`'s MTU and waits until STATE_DB shows it: every write the daemon decided before
/// this change has landed by then (one loop, batches in order).
fn sentinel(rig: &Rig, d: &Daemon, port: &str, mtu: u32) {
    rig.ns.ip(&format!("link set {port} mtu {mtu}"));
    assert!(
        wait_until(T, || rig.state(port).get("mtu") == Some(&mtu.to_string())),
        "{:?}\n{}",
        rig.state(port),
        d.log_text()
    );
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn redis_stall_rewrites_no_unchanged_port() {
    let (rig, names) = rig_with(6);
    let mut d = ready(&rig, &names, &[]);
    // Orchagent's own field must survive and must not make the port look different.
    rig.cli(
        6,
        &["HSET", "PORT_TABLE|Ethernet8", "host_tx_ready", "true"],
    );
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));

    signal(rig.redis.pid(), libc::SIGSTOP);
    rig.ns.ip("link set Ethernet0 mtu 1600");
    // The fault itself: frozen for longer than the client's 2 s I/O timeout.
    std::thread::sleep(Duration::from_secs(3));
    signal(rig.redis.pid(), libc::SIGCONT);

    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    assert!(
        wait_until(T, || d.metric("portsyncd_redis_reconnects_total") >= 1.0),
        "the stall was not noticed as a lost connection\n{}",
        d.log_text()
    );
    // A change after the reconnect: once it landed, so did everything the reconnect caused.
    sentinel(&rig, &d, "Ethernet4", 1700);
    let written = mon.state_ports_written();
    assert_eq!(
        written,
        set(&["Ethernet0", "Ethernet4"]),
        "only the changed port and the sentinel may be written:\n{}",
        mon.state_port_writes().join("\n")
    );
    assert_eq!(
        rig.state("Ethernet8")
            .get("host_tx_ready")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn redis_restarted_empty_gets_everything_again() {
    let (mut rig, names) = rig_with(6);
    let mut d = ready(&rig, &names, &[]);
    rig.redis.restart_empty();
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    assert!(
        rig.state(&names[0]).is_empty(),
        "the new server starts empty"
    );
    // Nothing changes in the kernel: only the reconnect can bring the entries back. The daemon
    // notices the restart with its next Redis call; a link change of a port outside the table
    // provides one without touching the ports under test.
    let probe = "Ethernet400";
    rig.ns.add_veth(probe, &peer_of(probe));
    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    let want: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(mon.state_ports_written(), want);
    assert!(d.metric("portsyncd_redis_reconnects_total") >= 1.0);
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn anti_entropy_repairs_drift_and_leaves_a_consistent_switch_alone() {
    let (rig, names) = rig_with(4);
    let mut d = ready(&rig, &names, &["--resync-interval-secs", "1"]);
    let checks = |d: &Daemon| d.metric("portsyncd_resync_checks_total");
    let wait_checks = |d: &Daemon, n: f64| {
        assert!(
            wait_until(T, || checks(d) >= n),
            "{} checks, want {n}\n{}",
            checks(d),
            d.log_text()
        )
    };
    // Orchagent's own field is not drift.
    rig.cli(
        6,
        &["HSET", "PORT_TABLE|Ethernet8", "host_tx_ready", "true"],
    );
    wait_checks(&d, 1.0);

    // A consistent switch: several checks, not one write.
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let base = checks(&d);
    wait_checks(&d, base + 3.0);
    assert_eq!(
        mon.state_port_writes(),
        Vec::<String>::new(),
        "a consistent switch must see no STATE_DB PORT_TABLE write"
    );
    // The daemon's APPL_DB writes are ProducerStateTable sets (they name the table's channel);
    // the orchagent stand-in's pops are not its.
    let producer: Vec<String> = mon
        .writes(0)
        .into_iter()
        .filter(|l| l.contains("PORT_TABLE_CHANNEL"))
        .collect();
    assert_eq!(producer, Vec::<String>::new(), "nor any APPL_DB write");
    let page = d.metrics();
    assert_eq!(
        parse_metric(&page, "portsyncd_resync_repairs_total{reason=\"state_db\"}"),
        0.0,
        "{page}"
    );
    assert_eq!(
        parse_metric(&page, "portsyncd_resync_repairs_total{reason=\"kernel\"}"),
        0.0,
        "{page}"
    );

    // Drift behind the daemon's back: a wrong value, a wrong MTU, an entry deleted.
    rig.cli(
        6,
        &["HSET", "PORT_TABLE|Ethernet0", "netdev_oper_status", "down"],
    );
    rig.cli(6, &["HSET", "PORT_TABLE|Ethernet4", "mtu", "1234"]);
    rig.cli(6, &["DEL", "PORT_TABLE|Ethernet12"]);
    assert!(
        rig.wait_converged(&names, T),
        "not repaired: {:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    assert!(
        wait_until(T, || d
            .metric("portsyncd_resync_repairs_total{reason=\"state_db\"}")
            == 3.0),
        "{}",
        d.metrics()
    );
    // The daemon's repairs (its HSETs carry `state`), one per drifted port; the unchanged port with
    // orchagent's extra field is left alone.
    let repaired: BTreeSet<String> = mon
        .state_port_writes()
        .iter()
        .filter(|l| l.contains("\"state\""))
        .filter_map(|l| {
            let i = l.find("\"PORT_TABLE|")? + "\"PORT_TABLE|".len();
            Some(l[i..][..l[i..].find('"')?].to_string())
        })
        .collect();
    assert_eq!(repaired, set(&["Ethernet0", "Ethernet4", "Ethernet12"]));
    assert!(
        d.log_text().contains("anti-entropy repaired"),
        "{}",
        d.log_text()
    );
    assert_eq!(
        rig.state("Ethernet8")
            .get("host_tx_ready")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(d.terminate().code(), Some(0));
}

/// CPU time of every thread of `pid`, in nanoseconds (`/proc/<pid>/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
#[ignore = "benchmark (prints numbers): the CPU cost of one anti-entropy check at 2048 ports"]
fn anti_entropy_cost_at_2048_ports() {
    let n: usize = std::env::var("PORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let long = Duration::from_secs(300);
    let (rig, names) = rig_with(n);
    let d = rig.start_with_env(&["--resync-interval-secs", "1"], &[("RUST_LOG", "info")]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    let last = format!("PORT_TABLE:{}", names[n - 1]);
    assert!(wait_until(long, || rig.appl(&last).len() == 7));
    rig.add_ports(&names);
    assert!(
        rig.wait_converged(&names, long),
        "{:?}",
        rig.mismatches(&names)
    );
    let checks = |d: &Daemon| d.metric("portsyncd_resync_checks_total");
    let k = checks(&d);
    assert!(wait_until(long, || checks(&d) >= k + 1.0));

    // Idle: the daemon does nothing but checks. The window is a fixed time on purpose: polling the
    // metrics endpoint meanwhile would add its own CPU to the daemon's. MONITOR records what Redis
    // received meanwhile: on a consistent switch a check writes nothing.
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let (c0, k0) = (cpu_ns(d.pid()), checks(&d));
    std::thread::sleep(Duration::from_secs(30));
    let (c1, k1) = (cpu_ns(d.pid()), checks(&d));
    assert!(k1 > k0, "no check ran in 30 s");
    let idle_writes = mon.state_port_writes();
    assert!(
        idle_writes.is_empty(),
        "{} checks on a consistent switch wrote {} times, e.g. {:?}",
        k1 - k0,
        idle_writes.len(),
        idle_writes.first()
    );
    let idle_page = d.metrics();
    let idle_repairs = parse_metric(
        &idle_page,
        "portsyncd_resync_repairs_total{reason=\"kernel\"}",
    ) + parse_metric(
        &idle_page,
        "portsyncd_resync_repairs_total{reason=\"state_db\"}",
    );
    assert_eq!(idle_repairs, 0.0, "{idle_page}");
    drop(mon);
    let per_check_ms = (c1 - c0) as f64 / 1e6 / (k1 - k0);

    // A storm for comparison: every port down, then up (2 link changes per port).
    let mut storm = String::new();
    for p in &names {
        storm += &format!("link set {p} down\n");
    }
    for p in &names {
        storm += &format!("link set {p} up\n");
    }
    let s0 = cpu_ns(d.pid());
    rig.ns.ip_batch(&storm);
    assert!(
        rig.wait_converged(&names, long),
        "{:?}",
        rig.mismatches(&names)
    );
    let s1 = cpu_ns(d.pid());
    let page = d.metrics();
    let m = |s: &str| parse_metric(&page, s);
    let repairs = m("portsyncd_resync_repairs_total{reason=\"kernel\"}")
        + m("portsyncd_resync_repairs_total{reason=\"state_db\"}");
    eprintln!(
        "anti-entropy at {n} ports: {:.2} ms CPU per check (mean of {} checks, all threads, \
         idle otherwise); storm of {} link commands: {:.1} ms CPU ({:.1} µs per command), \
         {} link messages, {} overruns, {} resyncs, {} commits in all; anti-entropy repairs {repairs}",
        per_check_ms,
        k1 - k0,
        2 * n,
        (s1 - s0) as f64 / 1e6,
        (s1 - s0) as f64 / 1e3 / (2 * n) as f64,
        m("portsyncd_netlink_messages_total"),
        m("portsyncd_netlink_overruns_total"),
        m("portsyncd_netlink_resyncs_total"),
        m("portsyncd_state_commits_total"),
    );
}
