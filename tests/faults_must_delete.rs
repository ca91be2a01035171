//! Issue 7, the `must_delete` sequence against the real kernel and Redis: DELLINK (the DEL lands),
//! NEWLINK before APPL_DB knows the port, DELLINK, NEWLINK once APPL_DB knows it. The next carrier
//! flap must be HSETs only: a DEL would wipe the fields other writers own in `PORT_TABLE|<port>`
//! (orchagent's `host_tx_ready`). Judged from what Redis received (MONITOR).

mod common;

use common::daemon::{wait_until, APPL_DB, STATE_DB};
use common::monitor::Monitor;
use common::rig::{peer_of, Rig, T};

/// Waits until the daemon has read `n` more link messages than `before` (the metric counts them).
fn wait_messages(d: &common::daemon::Daemon, before: f64, n: f64) -> f64 {
    let mut now = before;
    assert!(
        wait_until(T, || {
            now = d.metric("portsyncd_netlink_messages_total");
            now >= before + n
        }),
        "the daemon did not read the link messages\n{}",
        d.log_text()
    );
    now
}

#[test]
fn a_quick_delete_and_recreate_leaves_no_del_owed_for_the_next_flap() {
    let rig = Rig::new(&["Ethernet0"]);
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    assert!(wait_until(T, || rig.appl("PORT_TABLE:Ethernet0").len() == 7));
    let app = rig.appl("PORT_TABLE:Ethernet0");
    let ports = vec!["Ethernet0".to_string()];
    rig.add_port("Ethernet0");
    assert!(
        rig.wait_converged(&ports, T),
        "{:?}",
        rig.mismatches(&ports)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mon = Monitor::start(&rig.redis.socket, dir.path().join("monitor.txt"));
    let dels = || {
        mon.state_port_writes()
            .iter()
            .filter(|l| l.contains("\"DEL\"") && l.contains("\"PORT_TABLE|Ethernet0\""))
            .count()
    };

    // 1. DELLINK: the DEL lands.
    rig.ns.del_link("Ethernet0");
    assert!(wait_until(T, || rig.state("Ethernet0").is_empty()));
    assert!(
        wait_until(T, || dels() == 1),
        "{:?}",
        mon.state_port_writes()
    );
    // 2. NEWLINK while APPL_DB does not know the port (as during a breakout).
    rig.cli(APPL_DB, &["DEL", "PORT_TABLE:Ethernet0"]);
    let m0 = d.metric("portsyncd_netlink_messages_total");
    rig.add_port("Ethernet0");
    let m1 = wait_messages(&d, m0, 1.0);
    // 3. DELLINK again (Redis holds no entry: nothing is owed).
    rig.ns.del_link("Ethernet0");
    wait_messages(&d, m1, 1.0);
    // 4. APPL_DB knows the port again, NEWLINK.
    let mut hset = vec!["HSET", "PORT_TABLE:Ethernet0"];
    for (k, v) in &app {
        hset.push(k);
        hset.push(v);
    }
    rig.cli(APPL_DB, &hset);
    rig.add_port("Ethernet0");
    assert!(
        rig.wait_converged(&ports, T),
        "{:?}\n{}",
        rig.mismatches(&ports),
        d.log_text()
    );
    // orchagent's field in the same hash.
    rig.cli(
        STATE_DB,
        &["HSET", "PORT_TABLE|Ethernet0", "host_tx_ready", "true"],
    );

    // 5. A carrier flap.
    rig.ns.set_down(&peer_of("Ethernet0"));
    assert!(wait_until(T, || rig
        .state("Ethernet0")
        .get("netdev_oper_status")
        .map(String::as_str)
        == Some("down")));
    rig.ns.set_up(&peer_of("Ethernet0"));
    assert!(
        rig.wait_converged(&ports, T),
        "{:?}",
        rig.mismatches(&ports)
    );
    assert!(wait_until(T, || rig
        .state("Ethernet0")
        .get("netdev_oper_status")
        .map(String::as_str)
        == Some("up")));

    assert_eq!(
        dels(),
        1,
        "only the first DELLINK's DEL: {:#?}",
        mon.state_port_writes()
    );
    assert_eq!(
        rig.state("Ethernet0")
            .get("host_tx_ready")
            .map(String::as_str),
        Some("true"),
        "orchagent's field survived the flap"
    );
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
