//! A saved state naming ports portsyncd would never publish (a foreign or hand-edited state file)
//! must not make a cold start delete those STATE_DB `PORT_TABLE` keys. Real daemon, real
//! redis-server, veth pairs in a private netns; judged by what Redis received (MONITOR).

mod common;

use std::time::Duration;

use common::daemon::{wait_until, STATE_DB};
use common::monitor::Monitor;
use common::rig::Rig;
use portsyncd::store::{PortRecord, Snapshot, Store, StoreConfig};

const T: Duration = Duration::from_secs(15);

fn record(name: &str) -> PortRecord {
    PortRecord {
        name: name.to_string(),
        ifindex: 7,
        admin_up: true,
        oper_up: true,
        flags: 0x11043,
        mtu: 9100,
        published: [
            ("admin_status", "up"),
            ("netdev_oper_status", "up"),
            ("mtu", "9100"),
            ("state", "ok"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    }
}

#[test]
fn a_cold_start_deletes_only_saved_names_portsyncd_could_have_published() {
    let rig = Rig::new(&["Ethernet0"]);
    // Names a foreign state file holds: not a port portsyncd publishes, not a kernel name, and a
    // legitimate one (a port gone while portsyncd was down: its entry must go).
    let foreign = [
        "Loopback0",
        "Ethernet4:1",
        "Ethernet8 x",
        "Ethernet123456789",
    ];
    let legit = "Ethernet8";
    let mut snap = Snapshot::default();
    for n in foreign.iter().chain([&legit, &"Ethernet0"]) {
        snap.ports.insert(n.to_string(), record(n));
    }
    let (mut store, _) = Store::open(StoreConfig::new(&rig.state_dir)).unwrap();
    store.commit(&snap).unwrap();
    drop(store);
    // Another daemon owns these keys (fields portsyncd does not write).
    for n in foreign.iter().chain([&legit]) {
        rig.cli(
            STATE_DB,
            &["HSET", &format!("PORT_TABLE|{n}"), "owner", "someone-else"],
        );
    }
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.start(&[]);
    // A port created after the start (one present before it is an old netdev, ignored).
    assert!(wait_until(T, || rig.appl("PORT_TABLE:Ethernet0").len() == 7));
    rig.add_port("Ethernet0");
    assert!(
        wait_until(T, || rig
            .state("Ethernet0")
            .get("state")
            .is_some_and(|s| s == "ok")),
        "Ethernet0 never published: {}",
        d.log_text()
    );
    // The legitimate candidate is deleted: the cold-start deletions ran.
    assert!(
        wait_until(T, || rig.state(legit).is_empty()),
        "{legit} not deleted: {}",
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0));
    let dels: Vec<String> = mon
        .state_port_writes()
        .into_iter()
        .filter(|l| l.contains("\"DEL\"") || l.contains("\"UNLINK\"") || l.contains("\"HDEL\""))
        .collect();
    for n in foreign {
        let key = format!("\"PORT_TABLE|{n}\"");
        assert!(
            !dels.iter().any(|l| l.contains(&key)),
            "{n} deleted: {dels:#?}"
        );
        assert_eq!(
            rig.state(n).get("owner").map(String::as_str),
            Some("someone-else"),
            "{n}"
        );
    }
}
