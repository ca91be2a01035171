//! The core's half of the fix for issue 11 (the 2048-port cold start that never converged), replayed
//! without I/O: the order in which the netlink reader now hands things over after a loss.
//!
//! The reader reads the receive queue empty before it reports the loss, so the items drained (which
//! may include the `NLMSG_DONE` of a dump in progress) reach the core *before* the `Overrun`; and a
//! silent loss (a rise of the socket's drop counter, no `ENOBUFS`) is reported after the burst that
//! revealed it, possibly after the DONE of the dump it spoiled. Either way the core must accept what
//! it got and ask for one more dump, which then carries the change that was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portsyncd::core::{
    Core, CoreConfig, Link, LinkEvent, LinkOp, PortStatus, StartMode, WorkResult,
};

const UP_RUNNING: u32 = 0x1 | 0x40 | 0x10000 | 0x1002; // IFF_UP | IFF_RUNNING | IFF_LOWER_UP | ...

fn port(mtu: u32) -> LinkEvent {
    LinkEvent {
        op: LinkOp::New,
        link: Link {
            ifindex: 3,
            name: "Ethernet0".into(),
            flags: UP_RUNNING,
            mtu,
            kind: Some("veth".into()),
            master: 0,
        },
    }
}

/// Hands out every batch and confirms it; returns the STATE_DB writes.
fn flush(core: &mut Core, now: Instant) -> Vec<(String, Option<PortStatus>)> {
    let mut out = Vec::new();
    while let Some(w) = core.take_work(now) {
        let known = w.checks.iter().map(|n| (n.clone(), true)).collect();
        out.extend(w.writes.clone());
        core.on_work_result(
            WorkResult::Done {
                known,
                read_back: None,
            },
            now,
        );
    }
    out
}

fn mtu_written(writes: &[(String, Option<PortStatus>)]) -> Option<u32> {
    writes.iter().rev().find_map(|(_, s)| s.map(|s| s.mtu))
}

#[test]
fn a_loss_reported_after_the_done_of_the_dump_it_spoiled_still_gets_a_fresh_dump() {
    let t0 = Instant::now();
    let names: BTreeSet<String> = ["Ethernet0".to_string()].into();
    let mut core = Core::new(
        CoreConfig {
            mode: StartMode::Cold { old_netdev: true },
            configured: names.clone(),
            already_initialised: BTreeSet::new(),
            app_known: names,
            baseline: BTreeMap::new(),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        t0,
    );
    // Initial dump (empty namespace), then the port appears.
    core.on_dump_requested(1, t0);
    core.on_dump_done(1, false, false, t0);
    core.on_link(0, &port(9100), false);
    assert_eq!(mtu_written(&flush(&mut core, t0)), Some(9100));

    // ENOBUFS. The reader drains the backlog (one old notification) and only then reports it.
    let t1 = t0 + Duration::from_secs(1);
    core.on_link(0, &port(1500), false);
    core.on_overrun();
    assert!(core.dump_due(t1));
    core.on_dump_requested(2, t1);
    // The dump passes Ethernet0 at MTU 1500. Then MTU 1319 is set and its notification is
    // dropped without an ENOBUFS; the dump ends.
    core.on_link(2, &port(1500), false);
    core.on_dump_done(2, false, false, t1);
    assert_eq!(mtu_written(&flush(&mut core, t1)), Some(1500));
    assert!(
        !core.dump_due(t1 + Duration::from_secs(1)),
        "nothing due yet"
    );

    // The drop counter rose: the reader reports the loss after the burst holding the DONE.
    core.on_overrun();
    let t2 = t1 + Duration::from_millis(50);
    assert!(!core.dump_due(t2), "dump requests stay rate-limited");
    let t3 = t1 + Duration::from_millis(100);
    assert!(
        core.dump_due(t3),
        "a fresh dump is due after a loss reported after a DONE"
    );
    core.on_dump_requested(3, t3);
    core.on_link(3, &port(1319), false);
    core.on_dump_done(3, false, false, t3);
    assert_eq!(mtu_written(&flush(&mut core, t3)), Some(1319));
    assert_eq!(core.stats().overruns, 2);
    assert_eq!(core.stats().resyncs, 2);
}

#[test]
fn a_dump_in_progress_when_the_loss_happens_is_followed_by_another() {
    let t0 = Instant::now();
    let names: BTreeSet<String> = ["Ethernet0".to_string()].into();
    let mut core = Core::new(
        CoreConfig {
            mode: StartMode::Cold { old_netdev: false },
            configured: names.clone(),
            already_initialised: BTreeSet::new(),
            app_known: names,
            baseline: BTreeMap::new(),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        t0,
    );
    core.on_dump_requested(1, t0);
    core.on_link(1, &port(9100), false);
    // The loss happens while the first dump runs; the reader drains the queue, DONE included, and
    // reports the loss after it.
    core.on_dump_done(1, false, false, t0);
    core.on_overrun();
    let t1 = t0 + Duration::from_millis(100);
    assert!(core.dump_due(t1));
    core.on_dump_requested(2, t1);
    core.on_link(2, &port(1319), false);
    core.on_dump_done(2, false, false, t1);
    assert_eq!(mtu_written(&flush(&mut core, t1)), Some(1319));
}
