//! The read-back diff and the anti-entropy timing, against a fake Redis that applies the core's
//! batches and answers its read-backs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::super::antientropy::CHECK_IDLE;
use super::super::{Core, CoreConfig, Notice, StartMode, Work, WorkResult};
use super::ReadBack;
use crate::core::engine_tests::link as ev;
use crate::core::link::{LinkEvent, LinkOp, IFF_LOWER_UP, IFF_RUNNING, IFF_UP};
use crate::core::port::PortStatus;

const UP: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP | 0x1002;

/// STATE_DB `PORT_TABLE` and APPL_DB `PORT_TABLE` keys, as the fake Redis holds them.
#[derive(Default)]
struct Redis {
    state: BTreeMap<String, BTreeMap<String, String>>,
    app: BTreeSet<String>,
    /// Every STATE_DB write received: (port, Some = HSET, None = DEL).
    log: Vec<(String, Option<PortStatus>)>,
    read_backs: usize,
}

impl Redis {
    fn answer(&mut self, w: &Work) -> WorkResult {
        for (name, v) in &w.writes {
            self.log.push((name.clone(), *v));
            match v {
                Some(s) => {
                    let row = self.state.entry(name.clone()).or_default();
                    row.extend(s.fields());
                }
                None => {
                    self.state.remove(name);
                }
            }
        }
        let known = w
            .checks
            .iter()
            .map(|n| (n.clone(), self.app.contains(n)))
            .collect();
        let read_back = w.read_back.as_ref().map(|names| {
            self.read_backs += 1;
            ReadBack {
                state: names
                    .iter()
                    .map(|n| {
                        let row = self.state.get(n).cloned().unwrap_or_default();
                        (n.clone(), row.into_iter().collect())
                    })
                    .collect(),
                app_known: names
                    .iter()
                    .filter(|n| self.app.contains(*n))
                    .cloned()
                    .collect(),
            }
        });
        WorkResult::Done { known, read_back }
    }

    /// Runs every due batch; returns the STATE_DB writes made.
    fn flush(&mut self, core: &mut Core, now: Instant) -> Vec<(String, Option<PortStatus>)> {
        let before = self.log.len();
        let mut rounds = 0;
        while let Some(w) = core.take_work(now) {
            let r = self.answer(&w);
            core.on_work_result(r, now);
            rounds += 1;
            assert!(rounds < 100, "the core keeps handing out work");
        }
        self.log[before..].to_vec()
    }

    fn set(&mut self, port: &str, field: &str, value: &str) {
        self.state
            .entry(port.into())
            .or_default()
            .insert(field.into(), value.into());
    }
}

const PORTS: [&str; 3] = ["Ethernet0", "Ethernet4", "Ethernet8"];

/// A cold-started core with PORTS up and published, the fake Redis holding them.
fn running(interval: Option<Duration>) -> (Core, Redis, Instant) {
    let names: BTreeSet<String> = PORTS.iter().map(|s| s.to_string()).collect();
    let t0 = Instant::now();
    let mut core = Core::new(
        CoreConfig {
            mode: StartMode::Cold { old_netdev: false },
            configured: names.clone(),
            already_initialised: BTreeSet::new(),
            app_known: names.clone(),
            baseline: BTreeMap::new(),
            eoiu_timeout: Some(Duration::from_secs(10)),
        },
        t0,
    )
    .with_resync_interval(interval);
    core.on_dump_requested(1, t0);
    for (i, n) in PORTS.iter().enumerate() {
        core.on_link(1, &ev(LinkOp::New, 10 + i as u32, n, UP, 9100), false);
    }
    core.on_dump_done(1, false, false, t0);
    core.on_tick(t0);
    let mut redis = Redis {
        app: names,
        ..Redis::default()
    };
    assert_eq!(redis.flush(&mut core, t0).len(), 3);
    core.drain_notices();
    (core, redis, t0)
}

fn up(mtu: u32) -> Option<PortStatus> {
    Some(PortStatus {
        admin_up: true,
        oper_up: true,
        mtu,
    })
}

#[test]
fn reconnect_with_data_intact_writes_nothing() {
    let (mut core, mut redis, t0) = running(None);
    core.on_redis_reconnected();
    assert!(redis.flush(&mut core, t0).is_empty());
    assert_eq!(redis.read_backs, 1);
    assert!(matches!(
        core.drain_notices().as_slice(),
        [Notice::ReadBack { ports: 3, rewrite, app_missing }] if rewrite.is_empty() && app_missing.is_empty()
    ));
}

#[test]
fn reconnect_to_an_empty_redis_rewrites_everything() {
    let (mut core, mut redis, t0) = running(None);
    redis.state.clear();
    redis.app.clear();
    core.on_redis_reconnected();
    let w = redis.flush(&mut core, t0);
    let names: Vec<&str> = w.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, PORTS);
    assert!(w.iter().all(|(_, v)| *v == up(9100)));
    assert!(matches!(
        core.drain_notices().as_slice(),
        [Notice::ReadBack { rewrite, app_missing, .. }] if rewrite.len() == 3 && app_missing.len() == 3
    ));
}

#[test]
fn only_a_missing_or_wrong_entry_is_rewritten_and_other_writers_fields_are_ignored() {
    let (mut core, mut redis, t0) = running(None);
    redis.state.remove("Ethernet0"); // missing
    redis.set("Ethernet4", "mtu", "1500"); // wrong value of a field portsyncd owns
    redis.set("Ethernet8", "host_tx_ready", "true"); // orchagent's own field
    core.on_redis_reconnected();
    let w = redis.flush(&mut core, t0);
    assert_eq!(
        w,
        vec![
            ("Ethernet0".into(), up(9100)),
            ("Ethernet4".into(), up(9100))
        ]
    );
    assert_eq!(redis.state["Ethernet8"]["host_tx_ready"], "true");
}

#[test]
fn a_partial_entry_is_rewritten_and_a_port_changed_meanwhile_gets_its_new_state() {
    let (mut core, mut redis, t0) = running(None);
    redis.state.get_mut("Ethernet0").unwrap().remove("state");
    core.on_link(0, &ev(LinkOp::New, 11, "Ethernet4", IFF_UP, 9100), false);
    core.on_redis_reconnected();
    let w = redis.flush(&mut core, t0);
    let down = Some(PortStatus {
        admin_up: true,
        oper_up: false,
        mtu: 9100,
    });
    assert_eq!(
        w,
        vec![("Ethernet0".into(), up(9100)), ("Ethernet4".into(), down)]
    );
}

#[test]
fn a_failed_read_back_is_asked_again_and_holds_writes_back() {
    let (mut core, mut redis, t0) = running(None);
    core.on_redis_reconnected();
    core.on_link(0, &ev(LinkOp::New, 10, "Ethernet0", UP, 1600), false);
    let w = core.take_work(t0).expect("the read-back");
    assert!(w.read_back.is_some() && w.writes.is_empty());
    core.on_work_result(WorkResult::Failed, t0);
    assert!(core.take_work(t0).is_none(), "the retry wait holds it back");
    let w = redis.flush(&mut core, t0 + crate::core::engine::REDIS_RETRY_MIN);
    assert_eq!(w, vec![("Ethernet0".into(), up(1600))]);
    assert_eq!(redis.read_backs, 1);
}

#[test]
fn a_del_owed_for_an_entry_already_gone_is_not_sent() {
    let (mut core, mut redis, t0) = running(None);
    core.on_link(0, &ev(LinkOp::Del, 10, "Ethernet0", 0, 9100), false);
    redis.state.remove("Ethernet0"); // someone else deleted it already
    core.on_redis_reconnected();
    assert!(redis.flush(&mut core, t0).is_empty());
    // And it stays settled: a new netdev of that name is written once, without a DEL first.
    core.on_link(0, &ev(LinkOp::New, 40, "Ethernet0", UP, 9100), false);
    let w = redis.flush(&mut core, t0);
    assert_eq!(w, vec![("Ethernet0".into(), up(9100))]);
}

/// Starts the anti-entropy check due at `at` and runs its dump with `links` as the replies.
fn check(core: &mut Core, at: Instant, seq: u32, links: &[LinkEvent]) {
    core.on_tick(at);
    assert!(core.checking(), "a check is due at {at:?}");
    assert!(core.dump_due(at));
    core.on_dump_requested(seq, at);
    for l in links {
        core.on_link(seq, l, false);
    }
    core.on_dump_done(seq, false, false, at);
}

fn all_up(mtu0: u32) -> Vec<LinkEvent> {
    PORTS
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mtu = if i == 0 { mtu0 } else { 9100 };
            ev(LinkOp::New, 10 + i as u32, n, UP, mtu)
        })
        .collect()
}

fn check_done(core: &mut Core) -> (Vec<String>, Vec<String>) {
    core.drain_notices()
        .into_iter()
        .find_map(|n| match n {
            Notice::CheckDone { kernel, state_db } => Some((kernel, state_db)),
            _ => None,
        })
        .expect("a CheckDone notice")
}

#[test]
fn a_consistent_switch_gets_checked_without_a_write() {
    let interval = Duration::from_secs(60);
    let (mut core, mut redis, t0) = running(Some(interval));
    assert_eq!(core.next_deadline(), Some(t0 + interval));
    core.on_tick(t0 + interval - Duration::from_millis(1));
    assert!(!core.checking(), "not before the interval");
    redis.set("Ethernet8", "host_tx_ready", "true");
    let t1 = t0 + interval;
    check(&mut core, t1, 2, &all_up(9100));
    assert!(redis.flush(&mut core, t1).is_empty());
    assert_eq!(redis.read_backs, 1);
    assert_eq!(check_done(&mut core), (vec![], vec![]));
    assert_eq!(core.stats().resyncs, 0, "a check's dump is no resync");
    core.on_tick(t1);
    assert!(!core.checking());
    assert_eq!(core.next_deadline(), Some(t1 + interval));
}

#[test]
fn drift_in_the_kernel_and_in_state_db_is_repaired_and_reported() {
    let interval = Duration::from_secs(60);
    let (mut core, mut redis, t0) = running(Some(interval));
    redis.set("Ethernet4", "netdev_oper_status", "down");
    redis.state.remove("Ethernet8");
    let t1 = t0 + interval;
    // Ethernet0's MTU changed without a notification reaching portsyncd.
    check(&mut core, t1, 2, &all_up(1500));
    let w = redis.flush(&mut core, t1);
    assert_eq!(
        w,
        vec![
            ("Ethernet0".into(), up(1500)),
            ("Ethernet4".into(), up(9100)),
            ("Ethernet8".into(), up(9100))
        ]
    );
    assert_eq!(
        check_done(&mut core),
        (
            vec!["Ethernet0".to_string()],
            vec!["Ethernet4".to_string(), "Ethernet8".to_string()]
        )
    );
}

#[test]
fn a_port_missing_from_the_check_dump_is_kernel_drift_and_deleted() {
    let interval = Duration::from_secs(60);
    let (mut core, mut redis, t0) = running(Some(interval));
    let t1 = t0 + interval;
    let mut links = all_up(9100);
    links.pop(); // Ethernet8 is gone; its DELLINK never arrived
    check(&mut core, t1, 2, &links);
    assert_eq!(redis.flush(&mut core, t1), vec![("Ethernet8".into(), None)]);
    assert_eq!(
        check_done(&mut core),
        (vec!["Ethernet8".to_string()], vec![])
    );
}

#[test]
fn a_check_waits_for_quiet_and_never_runs_during_the_initial_sync() {
    let interval = Duration::from_secs(5);
    let (mut core, _redis, t0) = running(Some(interval));
    // A link message shortly before the check is due pushes it past CHECK_IDLE of quiet.
    let busy = t0 + interval - Duration::from_millis(500);
    core.on_link(0, &ev(LinkOp::New, 10, "Ethernet0", UP, 9100), false);
    core.on_tick(busy);
    assert_eq!(core.next_deadline(), Some(busy + CHECK_IDLE));
    core.on_tick(t0 + interval);
    assert!(!core.checking(), "not while links are busy");
    core.on_tick(busy + CHECK_IDLE);
    assert!(core.checking());

    // A core still in its initial sync schedules nothing.
    let mut fresh = Core::new(
        CoreConfig {
            mode: StartMode::Warm,
            configured: BTreeSet::new(),
            already_initialised: BTreeSet::new(),
            app_known: BTreeSet::new(),
            baseline: BTreeMap::new(),
            eoiu_timeout: None,
        },
        t0,
    )
    .with_resync_interval(Some(Duration::from_secs(1)));
    fresh.on_tick(t0 + Duration::from_secs(3600));
    assert!(!fresh.checking());
    assert_eq!(fresh.next_deadline(), None);
}

#[test]
fn a_check_waits_for_a_resync_under_way_and_is_off_at_zero() {
    let interval = Duration::from_secs(5);
    let (mut core, mut redis, t0) = running(Some(interval));
    core.on_overrun();
    let t1 = t0 + interval;
    core.on_tick(t1);
    assert!(!core.checking(), "a resync is due: the check waits");
    assert_eq!(core.check_deadline(), Some(t1 + CHECK_IDLE));
    core.on_dump_requested(2, t1);
    for l in all_up(9100) {
        core.on_link(2, &l, false);
    }
    core.on_dump_done(2, false, false, t1);
    core.on_tick(t1);
    assert!(redis.flush(&mut core, t1).is_empty());
    check(&mut core, t1 + CHECK_IDLE, 3, &all_up(9100));

    let (mut off, _redis, t0) = running(Some(Duration::ZERO));
    off.on_tick(t0 + Duration::from_secs(86_400));
    assert!(!off.checking());
    assert_eq!(off.next_deadline(), None);
}

/// Answers the read-back in flight with `rows` (raw, as Redis holds them) for the named ports and
/// the fake Redis's rows for the others; returns the writes that follow.
fn read_back_with(
    core: &mut Core,
    redis: &mut Redis,
    now: Instant,
    rows: &[(&str, super::StateRow)],
) -> Vec<(String, Option<PortStatus>)> {
    core.on_redis_reconnected();
    let w = core.take_work(now).expect("the read-back");
    let names = w.read_back.clone().expect("a read-back batch");
    let state = names
        .iter()
        .map(|n| match rows.iter().find(|(r, _)| r == n) {
            Some((_, row)) => (n.clone(), row.clone()),
            None => {
                let row = redis.state.get(n).cloned().unwrap_or_default();
                (n.clone(), row.into_iter().collect())
            }
        })
        .collect();
    core.on_work_result(
        WorkResult::Done {
            known: vec![],
            read_back: Some(ReadBack {
                state,
                app_known: redis.app.clone(),
            }),
        },
        now,
    );
    redis.flush(core, now)
}

#[test]
fn foreign_bytes_never_break_a_read_back_and_undecodable_own_fields_are_rewritten() {
    let (mut core, mut redis, t0) = running(None);
    let own = |n: &str| -> crate::core::RawFields {
        redis.state[n]
            .iter()
            .map(|(f, v)| (f.clone().into_bytes(), v.clone().into_bytes()))
            .collect()
    };
    // Ethernet0: a foreign field of any bytes next to portsyncd's own: nothing to do.
    let mut e0 = own("Ethernet0");
    e0.insert(b"descr\xff".to_vec(), b"caf\xe9".to_vec());
    // Ethernet4: portsyncd's own `mtu` holds bytes that are not UTF-8: rewritten.
    let mut e4 = own("Ethernet4");
    e4.insert(b"mtu".to_vec(), b"91\xff".to_vec());
    // Ethernet8: the key holds a string: unknown, written again.
    let writes = read_back_with(
        &mut core,
        &mut redis,
        t0,
        &[
            ("Ethernet0", super::StateRow::Fields(e0)),
            ("Ethernet4", super::StateRow::Fields(e4)),
            ("Ethernet8", super::StateRow::Unreadable),
        ],
    );
    assert_eq!(
        writes,
        vec![
            ("Ethernet4".into(), up(9100)),
            ("Ethernet8".into(), up(9100))
        ]
    );
    assert!(matches!(
        core.drain_notices().as_slice(),
        [Notice::ReadBack { ports: 3, rewrite, .. }] if rewrite == &["Ethernet4", "Ethernet8"]
    ));
}

/// An interval beyond the clock's range (the core's API takes any `Duration`) means "never": the
/// check is not due and nothing overflows.
#[test]
fn an_interval_beyond_the_clock_never_falls_due_and_never_overflows() {
    let (mut core, mut redis, t0) = running(Some(Duration::MAX));
    for s in [1u64, 10, 1000] {
        let at = t0 + Duration::from_secs(s);
        core.on_tick(at);
        assert!(!core.dump_due(at));
        assert!(redis.flush(&mut core, at).is_empty());
    }
}
