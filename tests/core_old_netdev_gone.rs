//! The core's side of the bug the simulation found with seed 25317: at a cold start an old netdev's
//! STATE_DB entry is kept (its name exists), but once a complete dump shows that name neither under
//! the old ifindex nor under a new netdev (the replacement came and went while notifications were
//! lost), the entry belongs to nothing and is deleted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::core_work::flush;
use portsyncd::core::{Core, CoreConfig, Link, LinkEvent, LinkOp, Notice, PortStatus, StartMode};

fn link(ifindex: u32, name: &str) -> LinkEvent {
    LinkEvent {
        op: LinkOp::New,
        link: Link {
            ifindex,
            name: name.into(),
            flags: 0x1 | 0x40 | 0x1_0000,
            mtu: 9100,
            kind: None,
            master: 0,
        },
    }
}

fn cold_core(t0: Instant) -> Core {
    let names: BTreeSet<String> = ["Ethernet0".to_string(), "Ethernet4".to_string()].into();
    let st = PortStatus {
        admin_up: true,
        oper_up: true,
        mtu: 9100,
    };
    Core::new(
        CoreConfig {
            mode: StartMode::Cold { old_netdev: true },
            configured: names.clone(),
            already_initialised: BTreeSet::new(),
            app_known: names,
            // What STATE_DB holds from the earlier run.
            baseline: BTreeMap::from([
                ("Ethernet0".to_string(), st),
                ("Ethernet4".to_string(), st),
            ]),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        t0,
    )
}

#[test]
fn an_old_netdevs_entry_goes_once_a_complete_dump_shows_no_netdev_of_its_name() {
    let t0 = Instant::now();
    let mut core = cold_core(t0);
    // Initial dump: both ports are old netdevs; their entries stay.
    core.on_dump_requested(1, t0);
    core.on_link(1, &link(3, "Ethernet0"), false);
    core.on_link(1, &link(4, "Ethernet4"), false);
    core.on_dump_done(1, false, false, t0);
    let w = flush(&mut core, t0);
    assert!(w.is_empty(), "old netdevs' entries are left alone: {w:?}");
    // syncd replaces Ethernet0 (the old one's DELLINK is ignored); the new one is created and
    // deleted while notifications are lost: an overrun, and the resync dump shows only Ethernet4.
    core.on_overrun();
    let t1 = t0 + Duration::from_secs(1);
    assert!(core.dump_due(t1));
    core.on_dump_requested(2, t1);
    core.on_link(2, &link(4, "Ethernet4"), false);
    core.on_dump_done(2, false, false, t1);
    let w = flush(&mut core, t1);
    assert_eq!(
        w,
        vec![("Ethernet0".to_string(), None)],
        "the entry of a name no netdev has"
    );
}

#[test]
fn an_old_netdev_still_listed_keeps_its_entry_through_later_dumps() {
    let t0 = Instant::now();
    let mut core = cold_core(t0);
    core.on_dump_requested(1, t0);
    core.on_link(1, &link(3, "Ethernet0"), false);
    core.on_link(1, &link(4, "Ethernet4"), false);
    core.on_dump_done(1, false, false, t0);
    assert!(flush(&mut core, t0).is_empty());
    core.on_overrun();
    let t1 = t0 + Duration::from_secs(1);
    core.on_dump_requested(2, t1);
    core.on_link(2, &link(3, "Ethernet0"), false); // still the old netdev
    core.on_link(2, &link(4, "Ethernet4"), false);
    core.on_dump_done(2, false, false, t1);
    assert!(
        flush(&mut core, t1).is_empty(),
        "nothing deleted while the old netdev exists"
    );
}

/// A resync dump whose only interrupted reply (NLM_F_DUMP_INTR) is about an old netdev is no
/// complete dump either: nothing is concluded from it, another is due. (The old netdev's reply
/// used to skip that check, and the entry of a name the dump did not show was deleted.)
#[test]
fn an_interrupted_reply_about_an_old_netdev_taints_the_dump() {
    let t0 = Instant::now();
    let mut core = cold_core(t0);
    core.on_dump_requested(1, t0);
    core.on_link(1, &link(3, "Ethernet0"), false);
    core.on_link(1, &link(4, "Ethernet4"), false);
    core.on_dump_done(1, false, false, t0);
    assert!(flush(&mut core, t0).is_empty());
    core.drain_notices();
    core.on_overrun();
    let t1 = t0 + Duration::from_secs(1);
    assert!(core.dump_due(t1));
    core.on_dump_requested(2, t1);
    core.on_link(2, &link(4, "Ethernet4"), true);
    core.on_dump_done(2, false, false, t1);
    let w = flush(&mut core, t1);
    assert!(
        w.is_empty(),
        "nothing concluded from an interrupted dump: {w:?}"
    );
    assert!(
        core.drain_notices()
            .iter()
            .any(|n| matches!(n, Notice::DumpInconsistent { seq: 2 })),
        "the dump is reported inconsistent"
    );
}
