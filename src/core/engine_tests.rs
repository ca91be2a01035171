//! Behaviour of the core, one scenario per test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::engine::*;
use super::link::*;
use super::port::PortStatus;
use super::sync::SyncOutcome;

const UP_RUNNING: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP | 0x1002; // + BROADCAST|MULTICAST
const DUMP: u32 = 7;

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cfg(mode: StartMode, configured: &[&str]) -> CoreConfig {
    CoreConfig {
        mode,
        configured: names(configured),
        already_initialised: BTreeSet::new(),
        app_known: names(configured),
        baseline: BTreeMap::new(),
        eoiu_timeout: Some(Duration::from_secs(10)),
    }
}

/// A link message as the parser hands it to the core (shared with the read-back tests).
pub(super) fn link(op: LinkOp, ifindex: u32, name: &str, flags: u32, mtu: u32) -> LinkEvent {
    LinkEvent {
        op,
        link: Link {
            ifindex,
            name: name.into(),
            flags,
            mtu,
            kind: Some("veth".into()),
            master: 0,
        },
    }
}

fn up(i: u32, n: &str) -> LinkEvent {
    link(LinkOp::New, i, n, UP_RUNNING, 9100)
}

fn st(admin: bool, oper: bool, mtu: u32) -> PortStatus {
    PortStatus {
        admin_up: admin,
        oper_up: oper,
        mtu,
    }
}

/// Starts a core, runs the initial dump with `links` and completes it.
fn synced(c: CoreConfig, links: &[LinkEvent]) -> (Core, Instant) {
    let t0 = Instant::now();
    let mut core = Core::new(c, t0);
    assert!(core.dump_due(t0));
    core.on_dump_requested(DUMP, t0);
    for l in links {
        core.on_link(DUMP, l, false);
    }
    core.on_dump_done(DUMP, false, false, t0);
    (core, t0)
}

/// Runs every due batch to completion with Redis answering "known" for `known`.
fn flush(core: &mut Core, now: Instant, known: &[&str]) -> Vec<Work> {
    let mut out = Vec::new();
    while let Some(w) = core.take_work(now) {
        let k = w
            .checks
            .iter()
            .map(|n| (n.clone(), known.contains(&n.as_str())))
            .collect();
        core.on_work_result(
            WorkResult::Done {
                known: k,
                read_back: None,
            },
            now,
        );
        out.push(w);
    }
    out
}

fn writes(ws: &[Work]) -> Vec<(String, Option<PortStatus>)> {
    ws.iter().flat_map(|w| w.writes.clone()).collect()
}

#[test]
fn cold_start_publishes_configured_ports_then_port_init_done() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0"), up(3, "Ethernet4")],
    );
    let ws = flush(&mut core, t0, &[]);
    assert_eq!(
        writes(&ws),
        vec![
            ("Ethernet0".into(), Some(st(true, true, 9100))),
            ("Ethernet4".into(), Some(st(true, true, 9100)))
        ]
    );
    assert!(ws.iter().any(|w| w.port_init_done));
    assert!(
        !ws.iter().any(|w| w.reconciled),
        "cold start never says reconciled"
    );
    assert!(core.port_init_done_sent());
    assert!(flush(&mut core, t0, &[]).is_empty(), "nothing more to do");
}

#[test]
fn port_init_done_waits_for_every_configured_port_even_after_timeout() {
    let t0 = Instant::now();
    let mut c = cfg(
        StartMode::Cold { old_netdev: false },
        &["Ethernet0", "Ethernet4"],
    );
    c.eoiu_timeout = Some(Duration::from_secs(1));
    let mut core = Core::new(c, t0);
    core.on_dump_requested(DUMP, t0);
    core.on_link(DUMP, &up(2, "Ethernet0"), false);
    let t1 = t0 + Duration::from_secs(1);
    core.on_tick(t1);
    let notices = core.drain_notices();
    assert!(matches!(
        notices.as_slice(),
        [Notice::SyncCompleted(e)] if e.outcome == SyncOutcome::Timeout
    ));
    let ws = flush(&mut core, t1, &[]);
    assert_eq!(writes(&ws).len(), 1);
    assert!(!ws.iter().any(|w| w.port_init_done), "Ethernet4 is missing");
    core.on_link(0, &up(3, "Ethernet4"), false);
    let ws = flush(&mut core, t1, &[]);
    assert_eq!(writes(&ws).len(), 1);
    assert!(ws.iter().any(|w| w.port_init_done));
    core.on_link(0, &link(LinkOp::New, 3, "Ethernet4", IFF_UP, 9100), false);
    let ws = flush(&mut core, t1, &[]);
    assert!(
        !ws.iter().any(|w| w.port_init_done),
        "PortInitDone is sent once"
    );
}

#[test]
fn already_initialised_ports_do_not_hold_back_port_init_done() {
    let mut c = cfg(
        StartMode::Cold { old_netdev: false },
        &["Ethernet0", "Ethernet4"],
    );
    c.already_initialised = names(&["Ethernet4"]);
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0")]);
    assert!(flush(&mut core, t0, &[]).iter().any(|w| w.port_init_done));
}

#[test]
fn writes_are_held_until_eoiu() {
    let t0 = Instant::now();
    let mut core = Core::new(cfg(StartMode::Warm, &["Ethernet0"]), t0);
    core.on_dump_requested(DUMP, t0);
    core.on_link(DUMP, &up(2, "Ethernet0"), false);
    assert_eq!(core.take_work(t0), None, "held during the initial sync");
    core.on_dump_done(DUMP, false, false, t0 + Duration::from_millis(5));
    let n = core.drain_notices();
    assert!(matches!(n.as_slice(), [Notice::SyncCompleted(e)]
        if e.outcome == SyncOutcome::Eoiu && e.elapsed == Duration::from_millis(5)));
    assert_eq!(writes(&flush(&mut core, t0, &[])).len(), 1);
}

#[test]
fn dump_replies_with_ifi_change_zero_do_not_end_the_sync() {
    // Only NLMSG_DONE of our own sequence ends it; a foreign seq's DONE is ignored.
    let t0 = Instant::now();
    let mut core = Core::new(cfg(StartMode::Warm, &["Ethernet0"]), t0);
    core.on_dump_requested(DUMP, t0);
    core.on_link(DUMP, &up(2, "Ethernet0"), false);
    core.on_dump_done(DUMP + 1, false, false, t0);
    assert!(core.syncing());
    core.on_dump_done(DUMP, false, false, t0);
    assert!(!core.syncing());
}

#[test]
fn interrupted_initial_dump_is_repeated_before_eoiu() {
    let t0 = Instant::now();
    let mut core = Core::new(cfg(StartMode::Warm, &["Ethernet0"]), t0);
    core.on_dump_requested(DUMP, t0);
    core.on_link(DUMP, &up(2, "Ethernet0"), true);
    core.on_dump_done(DUMP, true, false, t0);
    assert!(core.syncing(), "an interrupted dump is no EOIU");
    assert!(matches!(
        core.drain_notices().as_slice(),
        [Notice::DumpInconsistent { .. }]
    ));
    let t1 = t0 + DUMP_MIN_INTERVAL;
    assert!(!core.dump_due(t0), "rate-limited");
    assert!(core.dump_due(t1));
    core.on_dump_requested(DUMP + 1, t1);
    core.on_link(DUMP + 1, &up(2, "Ethernet0"), false);
    core.on_dump_done(DUMP + 1, false, false, t1);
    assert!(!core.syncing());
    assert_eq!(core.stats().resyncs, 1);
}

#[test]
fn warm_restart_with_nothing_changed_writes_nothing_but_flags() {
    let mut c = cfg(StartMode::Warm, &["Ethernet0", "Ethernet4"]);
    c.baseline = [
        ("Ethernet0".to_string(), st(true, true, 9100)),
        ("Ethernet4".to_string(), st(true, true, 9100)),
    ]
    .into();
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0"), up(3, "Ethernet4")]);
    let ws = flush(&mut core, t0, &[]);
    assert!(writes(&ws).is_empty(), "zero STATE_DB churn: {ws:?}");
    assert!(ws.iter().any(|w| w.port_init_done));
    assert!(ws.iter().any(|w| w.reconciled));
}

#[test]
fn warm_restart_writes_exactly_what_changed_while_down() {
    let mut c = cfg(
        StartMode::Warm,
        &["Ethernet0", "Ethernet4", "Ethernet8", "Ethernet12"],
    );
    c.baseline = [
        ("Ethernet0".to_string(), st(true, true, 9100)), // unchanged
        ("Ethernet4".to_string(), st(true, true, 9100)), // admin down now
        ("Ethernet8".to_string(), st(true, true, 9100)), // deleted
        ("Ethernet12".to_string(), st(true, true, 9100)), // mtu changed
    ]
    .into();
    let (mut core, t0) = synced(
        c,
        &[
            up(2, "Ethernet0"),
            link(LinkOp::New, 3, "Ethernet4", 0x1002, 9100),
            link(LinkOp::New, 5, "Ethernet12", UP_RUNNING, 1500),
            up(6, "Ethernet16"), // new and configured later
        ],
    );
    let ws = flush(&mut core, t0, &[]);
    let mut w = writes(&ws);
    w.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        w,
        vec![
            ("Ethernet12".into(), Some(st(true, true, 1500))),
            ("Ethernet4".into(), Some(st(false, false, 9100))),
            ("Ethernet8".into(), None),
        ]
    );
    // Ethernet16 is unknown to APPL_DB: it was checked, not written, and holds nothing back.
    assert!(ws
        .iter()
        .any(|w| w.checks == vec!["Ethernet16".to_string()]));
}

#[test]
fn cold_start_deletes_stale_entries_of_ports_gone_since_the_last_run() {
    let mut c = cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]);
    c.baseline = [
        ("Ethernet0".to_string(), st(true, true, 9100)),
        ("Ethernet99".to_string(), st(true, true, 9100)),
    ]
    .into();
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0")]);
    let mut w = writes(&flush(&mut core, t0, &[]));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        w,
        vec![
            ("Ethernet0".into(), Some(st(true, true, 9100))), // cold: rewritten, truth unknown
            ("Ethernet99".into(), None)
        ]
    );
}

#[test]
fn only_real_changes_are_written() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    flush(&mut core, t0, &[]);
    // Same flags again (e.g. an address change notification): nothing.
    core.on_link(0, &up(2, "Ethernet0"), false);
    assert!(writes(&flush(&mut core, t0, &[])).is_empty());
    // Carrier loss.
    core.on_link(
        0,
        &link(LinkOp::New, 2, "Ethernet0", IFF_UP | 0x1002, 9100),
        false,
    );
    assert_eq!(
        writes(&flush(&mut core, t0, &[])),
        vec![("Ethernet0".into(), Some(st(true, false, 9100)))]
    );
    // A flap that returns to the published state before the write goes out: nothing.
    core.on_link(0, &up(2, "Ethernet0"), false);
    core.on_link(
        0,
        &link(LinkOp::New, 2, "Ethernet0", IFF_UP | 0x1002, 9100),
        false,
    );
    assert!(writes(&flush(&mut core, t0, &[])).is_empty());
}

#[test]
fn filters_of_the_contract() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "PortChannel1"],
        ),
        &[],
    );
    flush(&mut core, t0, &[]);
    core.on_link(0, &up(9, "eth0"), false); // not a port name
    let mut team = up(10, "PortChannel1");
    team.link.kind = Some("team".into());
    core.on_link(0, &team, false); // teamsyncd's
    let mut del = link(LinkOp::Del, 2, "Ethernet0", UP_RUNNING, 9100);
    del.link.master = 40; // leaving a bridge: the netdev stays
    core.on_link(0, &del, false);
    assert!(flush(&mut core, t0, &[]).is_empty());
    // A real DELLINK deletes even a port never published by this process.
    core.on_link(0, &link(LinkOp::Del, 2, "Ethernet0", 0, 9100), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &[])),
        vec![("Ethernet0".into(), None)]
    );
}

#[test]
fn unknown_ports_are_published_once_appl_db_knows_them() {
    let mut c = cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]);
    c.app_known.clear();
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0")]);
    let ws = flush(&mut core, t0, &[]);
    assert_eq!(ws[0].checks, vec!["Ethernet0".to_string()]);
    assert!(writes(&ws).is_empty() && !ws.iter().any(|w| w.port_init_done));
    // Rechecked only after the interval.
    assert!(core.take_work(t0).is_none());
    let t1 = t0 + UNKNOWN_RECHECK;
    assert_eq!(core.next_work_deadline(), Some(t1));
    let ws = flush(&mut core, t1, &["Ethernet0"]);
    assert_eq!(
        writes(&ws),
        vec![("Ethernet0".into(), Some(st(true, true, 9100)))]
    );
    assert!(ws.iter().any(|w| w.port_init_done));
}

#[test]
fn failed_batches_are_written_again_with_the_latest_state() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    let w = core.take_work(t0).expect("work");
    assert_eq!(w.writes.len(), 1);
    core.on_link(
        0,
        &link(LinkOp::New, 2, "Ethernet0", IFF_UP | 0x1002, 1500),
        false,
    );
    assert!(
        core.take_work(t0).is_none(),
        "one batch in flight at a time"
    );
    core.on_work_result(WorkResult::Failed, t0);
    assert!(core.take_work(t0).is_none(), "the retry waits");
    let ws = flush(&mut core, t0 + REDIS_RETRY_MIN, &[]);
    assert_eq!(
        writes(&ws),
        vec![("Ethernet0".into(), Some(st(true, false, 1500)))]
    );
    assert!(
        ws.iter().any(|w| w.port_init_done),
        "PortInitDone retried too"
    );
    assert!(core.take_snapshot_due());
    assert!(!core.take_snapshot_due());
}

#[test]
fn overrun_resync_deletes_ports_that_vanished_and_fixes_missed_changes() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0"), up(3, "Ethernet4")],
    );
    flush(&mut core, t0, &[]);
    core.drain_notices();
    core.on_overrun();
    let t1 = t0 + DUMP_MIN_INTERVAL;
    assert!(core.dump_due(t1));
    core.on_dump_requested(20, t1);
    core.on_link(20, &link(LinkOp::New, 2, "Ethernet0", 0x1002, 9100), false);
    core.on_dump_done(20, false, false, t1);
    assert!(
        matches!(core.drain_notices().as_slice(), [Notice::Vanished { names }] if names == &["Ethernet4".to_string()])
    );
    let mut w = writes(&flush(&mut core, t1, &[]));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        w,
        vec![
            ("Ethernet0".into(), Some(st(false, false, 9100))),
            ("Ethernet4".into(), None)
        ]
    );
    assert_eq!(core.stats().overruns, 1);
    assert_eq!(core.stats().resyncs, 1);
}

#[test]
fn overrun_during_a_dump_taints_it() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    core.drain_notices();
    core.on_overrun();
    core.on_dump_requested(30, t0);
    core.on_overrun();
    core.on_dump_done(30, false, false, t0);
    assert!(matches!(
        core.drain_notices().as_slice(),
        [Notice::DumpInconsistent { seq: 30 }]
    ));
    assert_eq!(
        core.kernel_port("Ethernet0").map(|k| k.ifindex),
        Some(2),
        "no deletion from a tainted dump"
    );
}

#[test]
fn old_netdevs_at_cold_start_are_set_down_and_ignored() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: true }, &["Ethernet0"]),
        &[up(2, "Ethernet0"), up(3, "PortChannel5")],
    );
    let n = core.drain_notices();
    assert!(n.contains(&Notice::SetAdminDown {
        ifindex: 2,
        name: "Ethernet0".into()
    }));
    assert!(flush(&mut core, t0, &[])
        .iter()
        .all(|w| w.writes.is_empty()));
    // Later messages for the old ifindex are ignored; a new netdev of the same name is published.
    core.on_link(0, &link(LinkOp::New, 2, "Ethernet0", 0x1002, 9100), false);
    assert!(writes(&flush(&mut core, t0, &[])).is_empty());
    core.on_link(0, &up(12, "Ethernet0"), false);
    assert_eq!(writes(&flush(&mut core, t0, &[])).len(), 1);
}

#[test]
fn warm_start_skips_old_netdev_handling() {
    let (mut core, _) = synced(cfg(StartMode::Warm, &["Ethernet0"]), &[up(2, "Ethernet0")]);
    assert!(!core
        .drain_notices()
        .iter()
        .any(|n| matches!(n, Notice::SetAdminDown { .. })));
}

/// A port renamed to a name portsyncd never publishes (`foo`, or a name that is not UTF-8, which the
/// parser hands on escaped and marked): the port is gone under its old name at once, not only at the
/// next dump. Only that ifindex's entry goes; a DELLINK of a bridge member (with a master) does not
/// count.
#[test]
fn rename_to_a_name_that_is_not_a_port_removes_the_old_name() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0"), up(3, "Ethernet4")],
    );
    flush(&mut core, t0, &[]);
    core.on_link(0, &up(2, "foo"), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &[])),
        vec![("Ethernet0".into(), None)]
    );
    core.on_link(0, &up(3, "\\xffeth (not UTF-8)"), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &[])),
        vec![("Ethernet4".into(), None)]
    );
    // Unrelated names and ifindexes change nothing.
    core.on_link(0, &up(9, "bar"), false);
    assert!(writes(&flush(&mut core, t0, &[])).is_empty());
}

#[test]
fn rename_removes_the_old_name() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0")],
    );
    flush(&mut core, t0, &[]);
    core.on_link(0, &up(2, "Ethernet4"), false);
    let mut w = writes(&flush(&mut core, t0, &[]));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        w,
        vec![
            ("Ethernet0".into(), None),
            ("Ethernet4".into(), Some(st(true, true, 9100)))
        ]
    );
}

#[test]
fn timeout_does_not_delete_baseline_ports_it_has_not_seen() {
    let t0 = Instant::now();
    let mut c = cfg(StartMode::Warm, &["Ethernet0", "Ethernet4"]);
    c.baseline = [
        ("Ethernet0".to_string(), st(true, true, 9100)),
        ("Ethernet4".to_string(), st(true, true, 9100)),
    ]
    .into();
    c.eoiu_timeout = Some(Duration::ZERO);
    let mut core = Core::new(c, t0);
    core.on_dump_requested(DUMP, t0);
    core.on_tick(t0);
    core.on_link(
        DUMP,
        &link(LinkOp::New, 2, "Ethernet0", IFF_UP, 9100),
        false,
    );
    let ws = flush(&mut core, t0, &[]);
    assert_eq!(
        writes(&ws),
        vec![("Ethernet0".into(), Some(st(true, false, 9100)))]
    );
    // The dump never completed: Ethernet4 may well exist. It is not deleted on a guess.
    assert!(!ws.iter().any(|w| w.port_init_done));
}

#[test]
fn published_ports_reflect_confirmed_writes_only() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    let _ = core.take_work(t0);
    assert_eq!(core.published_ports().count(), 0, "not confirmed yet");
    core.on_work_result(
        WorkResult::Done {
            known: vec![],
            read_back: None,
        },
        t0,
    );
    let p: Vec<_> = core.published_ports().collect();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, "Ethernet0");
    assert_eq!(p[0].2.map(|k| k.ifindex), Some(2));
}

#[test]
fn stale_notifications_queued_before_the_dump_do_not_keep_a_deleted_port_alive() {
    // The DELLINK of Ethernet4 was lost in an overrun; an older NEWLINK of it was still queued
    // ahead of the resync dump's first reply.
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0"), up(3, "Ethernet4")],
    );
    flush(&mut core, t0, &[]);
    core.on_overrun();
    let t1 = t0 + DUMP_MIN_INTERVAL;
    core.on_dump_requested(40, t1);
    core.on_link(0, &link(LinkOp::New, 3, "Ethernet4", IFF_UP, 1600), false);
    core.on_link(40, &up(2, "Ethernet0"), false);
    // A link created while the dump runs (after its first reply) is kept.
    core.on_link(0, &up(9, "Ethernet8"), false);
    core.on_dump_done(40, false, false, t1);
    assert_eq!(core.kernel_port("Ethernet4"), None);
    assert!(core.kernel_port("Ethernet8").is_some());
    assert!(writes(&flush(&mut core, t1, &[])).contains(&("Ethernet4".into(), None)));
}

#[test]
fn a_retry_of_the_initial_dump_does_not_take_new_host_interfaces_for_old_ones() {
    let t0 = Instant::now();
    let mut core = Core::new(
        cfg(
            StartMode::Cold { old_netdev: true },
            &["Ethernet0", "Ethernet4"],
        ),
        t0,
    );
    core.on_dump_requested(DUMP, t0);
    core.on_link(DUMP, &up(2, "Ethernet0"), true); // old, in an interrupted dump
    core.on_dump_done(DUMP, true, false, t0);
    let t1 = t0 + DUMP_MIN_INTERVAL;
    core.on_dump_requested(DUMP + 1, t1);
    core.on_link(DUMP + 1, &up(2, "Ethernet0"), false);
    core.on_link(DUMP + 1, &up(20, "Ethernet4"), false); // created by orchagent meanwhile
    core.on_dump_done(DUMP + 1, false, false, t1);
    let n = core.drain_notices();
    let downs: Vec<_> = n
        .iter()
        .filter_map(|n| match n {
            Notice::SetAdminDown { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(downs, vec!["Ethernet0"]);
    assert_eq!(
        writes(&flush(&mut core, t1, &[])),
        vec![("Ethernet4".into(), Some(st(true, true, 9100)))]
    );
}

#[test]
fn a_dellink_then_newlink_of_the_same_name_still_deletes_first() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    flush(&mut core, t0, &[]);
    // Re-created in one burst: SONiC deletes on the DELLINK, then publishes the new netdev once
    // APPL_DB confirms it.
    core.on_link(0, &link(LinkOp::Del, 2, "Ethernet0", 0, 9100), false);
    core.on_link(0, &up(7, "Ethernet0"), false);
    let ws = flush(&mut core, t0, &["Ethernet0"]);
    assert_eq!(
        writes(&ws),
        vec![
            ("Ethernet0".into(), None),
            ("Ethernet0".into(), Some(st(true, true, 9100)))
        ]
    );
    // While a batch is in flight, too.
    core.on_link(0, &link(LinkOp::New, 7, "Ethernet0", IFF_UP, 9100), false);
    let w = core.take_work(t0).expect("work");
    core.on_link(0, &link(LinkOp::Del, 7, "Ethernet0", 0, 9100), false);
    core.on_link(0, &up(8, "Ethernet0"), false);
    core.on_work_result(
        WorkResult::Done {
            known: vec![],
            read_back: None,
        },
        t0,
    );
    assert_eq!(w.writes.len(), 1);
    let ws = flush(&mut core, t0, &["Ethernet0"]);
    assert_eq!(
        writes(&ws),
        vec![
            ("Ethernet0".into(), None),
            ("Ethernet0".into(), Some(st(true, true, 9100)))
        ]
    );
}

#[test]
fn no_work_deadline_while_a_batch_is_in_flight() {
    let mut c = cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]);
    c.app_known.clear();
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0")]);
    let _w = core.take_work(t0).expect("the first check");
    assert_eq!(core.next_work_deadline(), None);
    core.on_work_result(WorkResult::Failed, t0);
    assert!(core.next_work_deadline().is_none_or(|d| d >= t0));
}

#[test]
fn a_del_already_landed_is_not_owed_again_after_a_quick_recreate() {
    // Issue 7: DELLINK (the DEL lands), NEWLINK before APPL_DB knows the port, DELLINK, NEWLINK once
    // APPL_DB knows it. The second DELLINK owes no DEL (Redis is known to hold none), and nothing
    // may stay owed: the next carrier flap is one HSET, never a DEL that would wipe the fields other
    // writers own in PORT_TABLE|Ethernet0 (orchagent's host_tx_ready).
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    assert_eq!(writes(&flush(&mut core, t0, &["Ethernet0"])).len(), 1);
    core.on_link(0, &link(LinkOp::Del, 2, "Ethernet0", 0, 9100), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &[])),
        vec![("Ethernet0".into(), None)]
    );
    core.on_link(0, &up(3, "Ethernet0"), false);
    let ws = flush(&mut core, t0, &[]);
    assert!(ws.iter().any(|w| w.checks == vec!["Ethernet0".to_string()]));
    assert!(
        writes(&ws).is_empty(),
        "not in APPL_DB yet: nothing to write"
    );
    core.on_link(0, &link(LinkOp::Del, 3, "Ethernet0", 0, 9100), false);
    assert!(
        writes(&flush(&mut core, t0, &[])).is_empty(),
        "Redis holds no entry: no DEL"
    );
    core.on_link(0, &up(4, "Ethernet0"), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &["Ethernet0"])),
        vec![("Ethernet0".into(), Some(st(true, true, 9100)))]
    );
    // Carrier flap: down, then up again.
    let down = IFF_UP | IFF_LOWER_UP | 0x1002;
    core.on_link(0, &link(LinkOp::New, 4, "Ethernet0", down, 9100), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &["Ethernet0"])),
        vec![("Ethernet0".into(), Some(st(true, false, 9100)))],
        "a flap is one HSET, no DEL"
    );
    core.on_link(0, &up(4, "Ethernet0"), false);
    assert_eq!(
        writes(&flush(&mut core, t0, &["Ethernet0"])),
        vec![("Ethernet0".into(), Some(st(true, true, 9100)))]
    );
}

#[test]
fn failed_batches_are_retried_after_a_growing_capped_backoff() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let w = core.take_work(now).expect("work due");
        assert!(!w.writes.is_empty());
        assert!(core.work_in_flight());
        core.on_work_result(WorkResult::Failed, now);
        assert!(!core.work_in_flight());
        let at = core.next_work_deadline().expect("a retry deadline");
        assert!(
            core.take_work(at - Duration::from_millis(1)).is_none(),
            "nothing before the retry instant"
        );
        waits.push(at - now);
        now = at;
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![100, 200, 400, 800, 1600, 2000, 2000]);
    // Success resets the backoff and the gate.
    flush(&mut core, now, &[]);
    assert_eq!(core.next_work_deadline(), None);
    core.on_link(
        0,
        &link(LinkOp::New, 2, "Ethernet0", IFF_UP | 0x1002, 9100),
        false,
    );
    let w = core.take_work(now).expect("a change goes out at once");
    core.on_work_result(WorkResult::Failed, now);
    assert_eq!(core.next_work_deadline(), Some(now + REDIS_RETRY_MIN));
    drop(w);
}

#[test]
fn the_retry_gate_holds_back_rechecks_too() {
    let mut c = cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]);
    c.app_known.clear();
    let (mut core, t0) = synced(c, &[up(2, "Ethernet0")]);
    let w = core.take_work(t0).expect("the first check");
    assert_eq!(w.checks, vec!["Ethernet0".to_string()]);
    core.on_work_result(WorkResult::Failed, t0);
    assert_eq!(core.next_work_deadline(), Some(t0 + REDIS_RETRY_MIN));
    assert!(core.take_work(t0).is_none());
    let w = core
        .take_work(t0 + REDIS_RETRY_MIN)
        .expect("the check again");
    assert_eq!(w.checks, vec!["Ethernet0".to_string()]);
}

/// The table the store would hold: one full `published_ports` and then only the drained changes.
type SavedTable = BTreeMap<String, (PortStatus, Option<KernelPort>)>;

fn published_table(core: &Core) -> SavedTable {
    core.published_ports()
        .map(|(n, s, k)| (n.to_string(), (s, k)))
        .collect()
}

#[test]
fn drained_saved_changes_keep_a_copy_of_the_published_table_exact() {
    let all = ["Ethernet0", "Ethernet4", "Ethernet8"];
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &all),
        &[up(2, "Ethernet0"), up(3, "Ethernet4"), up(4, "Ethernet8")],
    );
    flush(&mut core, t0, &all);
    core.clear_saved_changes();
    let mut copy = published_table(&core);
    assert_eq!(copy.len(), 3);
    let steps: Vec<Vec<LinkEvent>> = vec![
        // Carrier flag only (IFF_LOWER_UP): nothing to write, but the saved flags change.
        vec![link(
            LinkOp::New,
            2,
            "Ethernet0",
            UP_RUNNING & !IFF_LOWER_UP,
            9100,
        )],
        // A real change, then nothing at all.
        vec![link(LinkOp::New, 3, "Ethernet4", IFF_UP | 0x1002, 9100)],
        vec![],
        // Gone, then back under a new ifindex; an MTU change.
        vec![link(LinkOp::Del, 4, "Ethernet8", 0, 9100)],
        vec![
            up(9, "Ethernet8"),
            link(LinkOp::New, 2, "Ethernet0", UP_RUNNING, 1500),
        ],
    ];
    for (i, events) in steps.into_iter().enumerate() {
        for e in &events {
            core.on_link(0, e, false);
        }
        // Before and after the batch lands: the copy follows either way.
        for stage in 0..2 {
            if stage == 1 {
                flush(&mut core, t0, &all);
            }
            for (n, now) in core.drain_saved_changes() {
                match now {
                    Some(v) => copy.insert(n, v),
                    None => copy.remove(&n),
                };
            }
            assert_eq!(copy, published_table(&core), "step {i}, stage {stage}");
        }
    }
    assert!(core.drain_saved_changes().is_empty());
}

/// Answers the batch in flight: every write lands but those of `rejected`.
fn answer_rejecting(core: &mut Core, w: &Work, rejected: &[&str], now: Instant) {
    let rejected: Vec<String> = w
        .writes
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| rejected.contains(&n.as_str()))
        .collect();
    core.on_work_result(
        WorkResult::Partial {
            known: w.checks.iter().map(|n| (n.clone(), false)).collect(),
            read_back: None,
            rejected,
        },
        now,
    );
}

#[test]
fn a_rejected_write_is_held_back_with_its_own_backoff_and_others_go_on() {
    let (mut core, t0) = synced(
        cfg(
            StartMode::Cold { old_netdev: false },
            &["Ethernet0", "Ethernet4"],
        ),
        &[up(2, "Ethernet0"), up(3, "Ethernet4")],
    );
    let w = core.take_work(t0).expect("the first writes");
    assert_eq!(w.writes.len(), 2);
    answer_rejecting(&mut core, &w, &["Ethernet0"], t0);
    // Ethernet4 landed; Ethernet0 did not and waits for its own backoff, without a batch backoff.
    let p: Vec<&str> = core.published_ports().map(|(n, _, _)| n).collect();
    assert_eq!(p, ["Ethernet4"]);
    assert!(core.write_held("Ethernet0"));
    assert!(
        core.take_work(t0).is_none_or(|w| w.writes.is_empty()),
        "no hot loop on the rejected port"
    );
    // Another port's change goes out at once, the rejected one still not.
    if core.work_in_flight() {
        core.on_work_result(
            WorkResult::Done {
                known: vec![],
                read_back: None,
            },
            t0,
        );
    }
    core.on_link(0, &link(LinkOp::New, 3, "Ethernet4", IFF_UP, 9100), false);
    let w = core.take_work(t0).expect("Ethernet4's change");
    assert_eq!(
        w.writes,
        vec![("Ethernet4".into(), Some(st(true, false, 9100)))]
    );
    core.on_work_result(
        WorkResult::Done {
            known: vec![],
            read_back: None,
        },
        t0,
    );
    // The loop is woken when the hold ends; then the write is tried again.
    let due = core
        .next_work_deadline()
        .expect("a wake-up for the held port");
    assert_eq!(due, t0 + REJECTED_RETRY_MIN);
    let w = core.take_work(due).expect("the retry");
    assert_eq!(
        w.writes,
        vec![("Ethernet0".into(), Some(st(true, true, 9100)))]
    );
    // Rejected again: the wait doubles.
    answer_rejecting(&mut core, &w, &["Ethernet0"], due);
    assert_eq!(
        core.next_work_deadline(),
        Some(due + REJECTED_RETRY_MIN * 2)
    );
    let later = due + REJECTED_RETRY_MIN * 2;
    let w = core.take_work(later).expect("the second retry");
    // The key's owner fixed it: the write lands, the hold is gone.
    core.on_work_result(
        WorkResult::Done {
            known: vec![],
            read_back: None,
        },
        later,
    );
    assert_eq!(w.writes.len(), 1);
    assert!(!core.write_held("Ethernet0"));
    assert_eq!(core.published_ports().count(), 2);
    assert!(flush(&mut core, later, &[])
        .iter()
        .all(|w| w.writes.is_empty()));
}

#[test]
fn a_rejected_port_that_goes_away_is_deleted_and_forgotten() {
    let (mut core, t0) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    let w = core.take_work(t0).expect("the first write");
    answer_rejecting(&mut core, &w, &["Ethernet0"], t0);
    core.on_link(0, &link(LinkOp::Del, 2, "Ethernet0", 0, 9100), false);
    let t = t0 + REJECTED_RETRY_MAX;
    let ws = flush(&mut core, t, &[]);
    assert_eq!(writes(&ws), vec![("Ethernet0".into(), None)], "a DEL, once");
    assert!(!core.write_held("Ethernet0"));
}

#[test]
fn the_rejection_wait_is_capped() {
    let (mut core, mut t) = synced(
        cfg(StartMode::Cold { old_netdev: false }, &["Ethernet0"]),
        &[up(2, "Ethernet0")],
    );
    for _ in 0..20 {
        let w = core.take_work(t).expect("a retry");
        answer_rejecting(&mut core, &w, &["Ethernet0"], t);
        let next = core.next_work_deadline().expect("a wake-up");
        assert!(next - t <= REJECTED_RETRY_MAX);
        t = next;
    }
}
