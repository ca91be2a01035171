//! The core's side of the bug the simulation found with seed 92665: an entry read back that is not
//! a valid entry of portsyncd's (another writer garbled a field) became "unknown", and when its
//! port had no netdev no rule deleted it. Now it is deleted: as a candidate of the first dump when
//! read before it, at once when read after it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portsyncd::core::{Core, CoreConfig, PortStatus, ReadBack, StartMode, StateRow, WorkResult};

fn warm_core(t0: Instant) -> Core {
    let st = PortStatus {
        admin_up: true,
        oper_up: true,
        mtu: 9100,
    };
    let names: BTreeSet<String> = ["Ethernet0".to_string()].into();
    Core::new(
        CoreConfig {
            mode: StartMode::Warm,
            configured: names.clone(),
            already_initialised: BTreeSet::new(),
            app_known: names,
            baseline: BTreeMap::from([("Ethernet0".to_string(), st)]),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        t0,
    )
}

/// Answers the read-back batch with a garbled Ethernet0 entry.
fn read_back_garbled(core: &mut Core, now: Instant) {
    core.on_redis_reconnected();
    let w = core.take_work(now).expect("the read-back batch");
    let names = w.read_back.clone().expect("a read-back");
    assert!(names.contains(&"Ethernet0".to_string()));
    let garbled: StateRow = [
        ("state", "ok"),
        ("admin_status", "up"),
        ("netdev_oper_status", "up"),
        ("mtu", "x9100"),
    ]
    .into_iter()
    .collect();
    core.on_work_result(
        WorkResult::Done {
            known: Vec::new(),
            read_back: Some(ReadBack {
                state: vec![("Ethernet0".to_string(), garbled)],
                app_known: BTreeSet::new(),
            }),
        },
        now,
    );
}

fn writes(core: &mut Core, now: Instant) -> Vec<(String, Option<PortStatus>)> {
    let mut out = Vec::new();
    while let Some(w) = core.take_work(now) {
        out.extend(w.writes.clone());
        core.on_work_result(
            WorkResult::Done {
                known: Vec::new(),
                read_back: None,
            },
            now,
        );
    }
    out
}

#[test]
fn read_before_the_first_dump_it_goes_when_the_dump_shows_no_netdev() {
    let t0 = Instant::now();
    let mut core = warm_core(t0);
    core.on_dump_requested(1, t0);
    read_back_garbled(&mut core, t0);
    core.on_dump_done(1, false, false, t0); // Ethernet0 is not in the dump
    assert_eq!(writes(&mut core, t0), vec![("Ethernet0".to_string(), None)]);
}

#[test]
fn read_after_the_first_dump_it_goes_at_once() {
    let t0 = Instant::now();
    let mut core = warm_core(t0);
    core.on_dump_requested(1, t0);
    core.on_dump_done(1, false, false, t0);
    // The baseline's Ethernet0 is gone: its DEL lands.
    assert_eq!(writes(&mut core, t0), vec![("Ethernet0".to_string(), None)]);
    // Another writer puts a garbled entry under the name; a reconnect reads it back.
    let t1 = t0 + Duration::from_secs(3);
    read_back_garbled(&mut core, t1);
    assert_eq!(writes(&mut core, t1), vec![("Ethernet0".to_string(), None)]);
}
