//! SONiC's system warm reboot, end to end: the switch reboots, STATE_DB keeps only its FDB and
//! WARM_RESTART tables, and the netdevs come back only after portsyncd has started (syncd and
//! orchagent recreate them). portsyncd must start warm, put every port back in STATE_DB as the
//! kernel has it, and leave APPL_DB's port configuration alone.
//!
//! The saved state plays no part here (STATE_DB holds no port to compare with it): this test is
//! about the warm path with an empty STATE_DB PORT_TABLE, not about the store.

mod common;

use std::collections::BTreeMap;

use common::daemon::{wait_until, APPL_DB, STATE_DB};
use common::monitor::Monitor;
use common::rig::{rig_with, T};

#[test]
fn system_warm_reboot_brings_every_port_back_and_leaves_appl_db_alone() {
    let (rig, names) = rig_with(4);
    rig.first_run(&names, &[], false);
    let appl_before: BTreeMap<String, BTreeMap<String, String>> = names
        .iter()
        .map(|n| (n.clone(), rig.appl(&format!("PORT_TABLE:{n}"))))
        .collect();
    assert!(
        appl_before.values().all(|f| !f.is_empty()),
        "{appl_before:?}"
    );

    // The reboot: netdevs gone, STATE_DB reduced to FDB_TABLE and WARM_RESTART_* tables.
    for n in &names {
        rig.ns.ip(&format!("link del {n}"));
    }
    rig.cli(
        STATE_DB,
        &[
            "HSET",
            "FDB_TABLE|Vlan1000:00:11:22:33:44:55",
            "port",
            "Ethernet0",
            "type",
            "dynamic",
        ],
    );
    rig.enable_warm();
    let keys = rig.cli(STATE_DB, &["KEYS", "*"]);
    for k in keys.lines().filter(|k| !k.is_empty()) {
        if !(k.starts_with("FDB_TABLE|") || k.starts_with("WARM_RESTART_")) {
            rig.cli(STATE_DB, &["DEL", k]);
        }
    }
    rig.cli(STATE_DB, &["HDEL", "WARM_RESTART_TABLE|portsyncd", "state"]);
    assert!(rig
        .cli(STATE_DB, &["KEYS", "PORT_TABLE|*"])
        .trim()
        .is_empty());
    let restore_before: u64 = rig.warm_table()["restore_count"]
        .parse()
        .expect("restore_count");

    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    // syncd/orchagent recreate the host interfaces after portsyncd is up.
    for n in &names {
        rig.add_port(n);
    }
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    rig.wait_reconciled(&d);

    let warm = rig.warm_table();
    assert_eq!(
        warm.get("restore_count")
            .and_then(|c| c.parse::<u64>().ok()),
        Some(restore_before + 1),
        "a warm start: {warm:?}"
    );
    assert!(d.log_text().contains("warm start"), "{}", d.log_text());
    for n in &names {
        assert_eq!(
            rig.state(n).get("state").map(String::as_str),
            Some("ok"),
            "{n}"
        );
    }
    // APPL_DB's port configuration: same content, and nothing written to it.
    for n in &names {
        assert_eq!(rig.appl(&format!("PORT_TABLE:{n}")), appl_before[n], "{n}");
    }
    let appl_writes: Vec<String> = mon
        .writes(APPL_DB)
        .into_iter()
        .filter(|l| !l.contains("PortInitDone") && !l.contains("PORT_TABLE_CHANNEL"))
        .filter(|l| l.contains("Ethernet") || l.contains("PortConfigDone"))
        .collect();
    assert_eq!(
        appl_writes,
        Vec::<String>::new(),
        "APPL_DB port config written"
    );
    // The tables the reboot kept are untouched.
    assert_eq!(
        rig.cli(
            STATE_DB,
            &["HGET", "FDB_TABLE|Vlan1000:00:11:22:33:44:55", "port"]
        )
        .trim(),
        "Ethernet0"
    );
    assert!(wait_until(T, || !d.log_text().contains("fatal")));
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}
