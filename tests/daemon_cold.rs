//! The real daemon on a cold start: APPL_DB, STATE_DB and PortInitDone as SONiC expects.
//! Real redis-server on a unix socket, veth pairs in a private netns, the real binary.

mod common;

use std::time::Duration;

use common::daemon::{summary, wait_until, APPL_DB, STATE_DB};
use common::monitor::Monitor;
use common::rig::{peer_of, Rig};

const T: Duration = Duration::from_secs(15);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Makes one more change (Ethernet0's MTU to `mtu`) and waits until STATE_DB shows it. The daemon
/// handles netlink messages in order and writes STATE_DB in ordered, atomic batches, so once this
/// write is visible, every write that an earlier link change could have caused is visible too: a
/// negative check after it needs no sleep.
fn barrier(rig: &Rig, mtu: u32) {
    rig.ns.set_mtu("Ethernet0", mtu);
    let want = mtu.to_string();
    assert!(
        wait_until(T, || rig.state("Ethernet0").get("mtu") == Some(&want)),
        "barrier write not seen: {:?}",
        rig.state("Ethernet0")
    );
}

#[test]
fn cold_start_publishes_config_verbatim_and_port_config_done() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4", "Ethernet8"]);
    let mut d = rig.start(&[]);
    assert!(
        wait_until(T, || rig.appl("PORT_TABLE:Ethernet8").len() == 7),
        "APPL_DB ports not consumed\n{}",
        d.log_text()
    );
    let appl = rig.appl("PORT_TABLE:Ethernet4");
    let config = common::daemon::hgetall(&rig.redis.socket, 4, "PORT|Ethernet4");
    assert_eq!(appl, config, "APPL_DB fields are CONFIG_DB's, verbatim");
    assert_eq!(appl["lanes"], "4,5,6,7");
    assert!(wait_until(T, || rig
        .appl("PORT_TABLE:PortConfigDone")
        .get("count")
        == Some(&"3".to_string())));
    let warm = rig.warm_table();
    assert_eq!(warm.get("restore_count").map(String::as_str), Some("0"));
    assert_eq!(warm.get("state").map(String::as_str), Some("disabled"));
    // Only ports and the two markers live in APPL_DB PORT_TABLE.
    let keys = rig.cli(APPL_DB, &["KEYS", "PORT_TABLE:*"]);
    assert_eq!(keys.lines().count(), 4, "{keys}");
    let st = d.terminate();
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
}

#[test]
fn state_db_follows_up_carrier_admin_mtu_and_delete() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    assert!(
        wait_until(T, || rig.appl("PORT_TABLE:Ethernet0").len() == 7),
        "APPL_DB ports not published\n{}",
        d.log_text()
    );
    rig.add_port("Ethernet0");
    rig.add_port("Ethernet4");
    let st = |p: &str| summary(&rig.state(p));
    let want = |o: &str, a: &str, m: &str| {
        (
            "ok".to_string(),
            o.to_string(),
            a.to_string(),
            m.to_string(),
        )
    };
    assert!(
        wait_until(T, || st("Ethernet0") == want("up", "up", "1500")),
        "{:?}\n{}",
        st("Ethernet0"),
        d.log_text()
    );
    // Carrier loss: the peer goes down.
    rig.ns.set_down(&peer_of("Ethernet0"));
    assert!(
        wait_until(T, || st("Ethernet0") == want("down", "up", "1500")),
        "{:?}",
        st("Ethernet0")
    );
    // Admin down.
    rig.ns.set_down("Ethernet4");
    assert!(
        wait_until(T, || st("Ethernet4") == want("down", "down", "1500")),
        "{:?}",
        st("Ethernet4")
    );
    // MTU change.
    rig.ns.set_mtu("Ethernet4", 9100);
    assert!(
        wait_until(T, || st("Ethernet4") == want("down", "down", "9100")),
        "{:?}",
        st("Ethernet4")
    );
    // Delete.
    rig.ns.del_link("Ethernet4");
    assert!(
        wait_until(T, || rig.state("Ethernet4").is_empty()),
        "{:?}",
        rig.state("Ethernet4")
    );
    assert!(
        rig.converged(&s(&["Ethernet0", "Ethernet4"])),
        "{:?}",
        rig.mismatches(&s(&["Ethernet0", "Ethernet4"]))
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn port_init_done_only_when_every_configured_port_exists() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    let mut d = rig.start(&["--eoiu-timeout-secs", "1"]);
    assert!(
        wait_until(T, || rig.appl("PORT_TABLE:Ethernet4").len() == 7),
        "APPL_DB ports not published\n{}",
        d.log_text()
    );
    rig.add_port("Ethernet0");
    assert!(wait_until(T, || !rig.state("Ethernet0").is_empty()));
    // Past the end of the initial sync (at the EOIU: its timeout can no longer fire), with Ethernet4
    // still missing: no PortInitDone.
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    barrier(&rig, 1400);
    assert!(
        rig.appl("PORT_TABLE:PortInitDone").is_empty(),
        "sent while a port is missing"
    );
    rig.add_port("Ethernet4");
    assert!(wait_until(T, || rig
        .appl("PORT_TABLE:PortInitDone")
        .get("lanes")
        == Some(&"0".to_string())));
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn unconfigured_and_foreign_names_are_ignored() {
    let rig = Rig::new(&["Ethernet0"]);
    let mut d = rig.start(&[]);
    assert!(
        wait_until(T, || rig.appl("PORT_TABLE:Ethernet0").len() == 7),
        "APPL_DB ports not published\n{}",
        d.log_text()
    );
    rig.add_port("Ethernet100"); // not in CONFIG_DB, so not in APPL_DB
    rig.ns.add_veth("eth5", "peth5");
    rig.ns.set_up("eth5");
    rig.add_port("Ethernet0");
    assert!(wait_until(T, || !rig.state("Ethernet0").is_empty()));
    barrier(&rig, 1400);
    assert!(rig.state("Ethernet100").is_empty());
    assert!(rig.state("eth5").is_empty());
    let keys = rig.cli(STATE_DB, &["KEYS", "PORT_TABLE|*"]);
    assert_eq!(keys.trim(), "PORT_TABLE|Ethernet0", "{keys}");
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn foreign_state_db_fields_survive_and_bridge_membership_keeps_the_entry() {
    let rig = Rig::new(&["Ethernet0"]);
    let mut d = rig.start(&[]);
    assert!(
        wait_until(T, || rig.appl("PORT_TABLE:Ethernet0").len() == 7),
        "APPL_DB ports not published\n{}",
        d.log_text()
    );
    rig.add_port("Ethernet0");
    assert!(wait_until(T, || rig
        .state("Ethernet0")
        .get("netdev_oper_status")
        == Some(&"up".into())));
    // orchagent's own fields in the same hash.
    rig.cli(
        STATE_DB,
        &[
            "HSET",
            "PORT_TABLE|Ethernet0",
            "host_tx_ready",
            "true",
            "speed",
            "100000",
        ],
    );
    rig.ns.set_mtu("Ethernet0", 9000);
    assert!(wait_until(T, || rig.state("Ethernet0").get("mtu")
        == Some(&"9000".into())));
    let e = rig.state("Ethernet0");
    assert_eq!(e.get("host_tx_ready").map(String::as_str), Some("true"));
    assert_eq!(e.get("speed").map(String::as_str), Some("100000"));
    // Enslaved to a bridge and released: the bridge-family DELLINK (with a master) must not delete it.
    // Judged from what Redis received: no DEL of the entry at all.
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    rig.ns.ip("link add br0 type bridge");
    rig.ns.ip("link set Ethernet0 master br0");
    barrier(&rig, 1400);
    rig.ns.ip("link set Ethernet0 nomaster");
    barrier(&rig, 1300);
    let dels: Vec<String> = mon
        .state_port_writes()
        .into_iter()
        .filter(|l| l.contains("\"DEL\""))
        .collect();
    assert!(dels.is_empty(), "{dels:?}\n{}", d.log_text());
    let e = rig.state("Ethernet0");
    assert_eq!(
        e.get("state").map(String::as_str),
        Some("ok"),
        "{e:?}\n{}",
        d.log_text()
    );
    assert_eq!(e.get("host_tx_ready").map(String::as_str), Some("true"));
    assert!(
        rig.wait_converged(&s(&["Ethernet0"]), T),
        "{:?}\n{}\n{}",
        rig.mismatches(&s(&["Ethernet0"])),
        rig.ns.ip("link show"),
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn old_netdevs_at_cold_start_are_set_down_and_ignored() {
    let rig = Rig::new(&["Ethernet0", "Ethernet4"]);
    rig.add_port("Ethernet0"); // exists before the daemon: left over from an earlier run
    let mut d = rig.start(&[]);
    assert!(
        d.wait_log("old netdev at cold start", T),
        "{}",
        d.log_text()
    );
    assert!(wait_until(T, || rig.kernel("Ethernet0").map(|k| k.1)
        == Some("down".into())));
    rig.ns.set_up("Ethernet0"); // later messages for that ifindex are ignored
    rig.add_port("Ethernet4");
    assert!(wait_until(T, || !rig.state("Ethernet4").is_empty()));
    // Ethernet0's `up` came before Ethernet4 was created; one more change of Ethernet4 seen in
    // STATE_DB proves that every write the earlier messages could cause has landed.
    rig.ns.set_mtu("Ethernet4", 1400);
    assert!(wait_until(T, || rig.state("Ethernet4").get("mtu")
        == Some(&"1400".to_string())));
    assert!(
        rig.state("Ethernet0").is_empty(),
        "{:?}",
        rig.state("Ethernet0")
    );
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn bad_options_exit_2_naming_option_and_value() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portsyncd"))
        .args(["--state-rotation", "maybe"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--state-rotation") && err.contains("maybe"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portsyncd"))
        .env("PORTSYNCD_EOIU_TIMEOUT_SECS", "soon")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("eoiu-timeout-secs") && err.contains("soon"),
        "{err}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_portsyncd"))
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    for opt in [
        "--db-config",
        "--namespace",
        "--redis-url",
        "--state-dir",
        "--eoiu-timeout-secs",
        "--state-max-age-days",
        "--state-rotation",
        "--state-generations",
        "--state-recovery",
        "--json-export",
        "--metrics-enabled",
        "--metrics-listen",
        "--log-level",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
}
