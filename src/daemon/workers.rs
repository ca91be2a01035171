//! The I/O edges, each on a thread of its own, talking to the loop through one channel:
//! the netlink reader and the Redis writer (the store committer is in `committer.rs`).

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::core::{ReadBack, Work, WorkResult};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::netlink::{LinkSocket, NetlinkItem, RecvOutcome};
use crate::sonic::{SonicDb, StateWrite};

use super::faults;
use super::supervise::Supervisor;

/// Everything that wakes the loop.
#[derive(Debug)]
pub enum Input {
    Netlink(Vec<NetlinkItem>),
    Overrun,
    /// A batch ended; `reconnected`: Redis was reconnected since the previous batch (it may have
    /// restarted or been flushed, so what it holds is no longer known).
    WorkDone {
        result: WorkResult,
        reconnected: bool,
    },
    /// A commit ended; `took` is its wall-clock time (it paces the next one).
    Committed {
        result: Result<u64, String>,
        took: Duration,
    },
    Stop,
    /// A supervised thread panicked or ended unexpectedly: the daemon exits with status 1.
    WorkerDied {
        thread: String,
    },
}

/// How long the reader waits for more messages before handing a burst to the loop. Each wait is a
/// wake-up of this thread, and each burst wakes the loop and a Redis round trip: during a storm the
/// daemon's CPU goes mostly to these wake-ups (docs/performance.md), so the window is long enough
/// to gather the trickle the kernel's linkwatch emits (500 µs gathered about 2 messages per wake-up at
/// 2048 ports; 2 ms gathers 4-8) and short against the 50 ms convergence target.
const COALESCE: Duration = Duration::from_millis(2);
/// Longest a burst is held while messages keep coming (a steady trickle never pauses for COALESCE).
const BURST_MAX_WAIT: Duration = Duration::from_millis(10);
/// Most messages handed to the loop at once.
const BURST_ITEMS: usize = 4096;

/// Reads the netlink socket until `stop`; bursts go to the loop on `tx`, the bounded netlink queue:
/// while it is full the reader waits and the kernel's socket buffer holds the backlog (an overflow
/// there is an overrun, healed by a resync).
pub fn netlink_reader(
    sup: &Supervisor,
    sock: Arc<LinkSocket>,
    tx: Sender<Input>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    sup.spawn("netlink", move || {
        let mut buf = Vec::new();
        let mut errors = RateLimit::new(Duration::from_secs(10));
        while !stop.load(Ordering::Relaxed) {
            let input = match sock.recv(&mut buf) {
                Ok(RecvOutcome::Items(mut items)) => {
                    // Coalesce a burst: while messages keep coming, collect them for COALESCE at a
                    // time, so a storm wakes the loop (and Redis) about once per COALESCE instead of
                    // once per message. A lone change waits at most one COALESCE.
                    let mut overrun = false;
                    let held_since = Instant::now();
                    'burst: while items.len() < BURST_ITEMS && held_since.elapsed() < BURST_MAX_WAIT
                    {
                        std::thread::sleep(COALESCE);
                        let before = items.len();
                        loop {
                            match sock.recv_nowait(&mut buf) {
                                Ok(RecvOutcome::Items(more)) => items.extend(more),
                                Ok(RecvOutcome::Overrun) => {
                                    overrun = true;
                                    break 'burst;
                                }
                                Ok(RecvOutcome::Timeout) | Err(_) => break,
                            }
                            if items.len() >= BURST_ITEMS {
                                break 'burst;
                            }
                        }
                        if items.len() == before {
                            break;
                        }
                    }
                    faults::panic_point("netlink");
                    if tx.send(Input::Netlink(items)).is_err() {
                        break;
                    }
                    if !overrun {
                        continue;
                    }
                    Input::Overrun
                }
                Ok(RecvOutcome::Overrun) => Input::Overrun,
                Ok(RecvOutcome::Timeout) => continue,
                Err(e) => {
                    if let Some(suppressed) = errors.allow(Instant::now()) {
                        error!(error = %e, suppressed, "netlink receive failed");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if tx.send(input).is_err() {
                break;
            }
        }
    })
}

/// Executes `Work` against Redis, one batch at a time, and reports each result.
pub fn redis_writer(
    sup: &Supervisor,
    mut db: SonicDb,
    rx: Receiver<Work>,
    tx: Sender<Input>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    sup.spawn("redis", move || {
        // Reconnects during start-up were counted by the caller.
        let mut reconnects_seen = db.reconnects();
        let mut pending_reconnect = false;
        let mut was_ok = true;
        for work in rx {
            faults::panic_point("redis");
            let result = execute(&mut db, &work, &metrics);
            let now = db.reconnects();
            let new_reconnects = now.saturating_sub(reconnects_seen);
            metrics.redis_reconnects.add(new_reconnects);
            reconnects_seen = now;
            // Reported with the first batch that succeeds after the reconnect.
            pending_reconnect |= new_reconnects > 0;
            let res = match result {
                Ok((known, read_back)) => {
                    if !was_ok {
                        info!("redis writes succeed again; outstanding writes re-sent");
                    }
                    was_ok = true;
                    WorkResult::Done { known, read_back }
                }
                Err(e) => {
                    if was_ok {
                        warn!(error = %e, "redis write failed; will retry with backoff");
                    } else {
                        debug!(error = %e, "redis write failed again");
                    }
                    was_ok = false;
                    WorkResult::Failed
                }
            };
            let reconnected = matches!(res, WorkResult::Done { .. }) && pending_reconnect;
            if reconnected {
                pending_reconnect = false;
            }
            if tx
                .send(Input::WorkDone {
                    result: res,
                    reconnected,
                })
                .is_err()
            {
                break;
            }
        }
    })
}

/// Reads what Redis holds for `names`: one pipelined round trip per database.
fn read_back(db: &mut SonicDb, names: &[String]) -> Result<ReadBack, crate::sonic::DbError> {
    let rows = db.read_state_port_rows(names)?;
    let app_known = db.app_ports_existing(names)?;
    debug!(
        ports = names.len(),
        "read back STATE_DB and APPL_DB PORT_TABLE"
    );
    Ok(ReadBack {
        state: names.iter().cloned().zip(rows).collect(),
        app_known,
    })
}

type Answers = (Vec<(String, bool)>, Option<ReadBack>);

fn execute(
    db: &mut SonicDb,
    work: &Work,
    metrics: &Metrics,
) -> Result<Answers, crate::sonic::DbError> {
    let existing = db.app_ports_existing(&work.checks)?;
    let known = work
        .checks
        .iter()
        .map(|n| (n.clone(), existing.contains(n)))
        .collect();
    let read_back = match &work.read_back {
        Some(names) => Some(read_back(db, names)?),
        None => None,
    };
    if !work.writes.is_empty() {
        let writes: Vec<StateWrite> = work
            .writes
            .iter()
            .map(|(name, v)| match v {
                Some(s) => StateWrite::Set {
                    name: name.clone(),
                    fields: s.fields(),
                },
                None => StateWrite::Del { name: name.clone() },
            })
            .collect();
        db.apply_state_writes(&writes)?;
        let dels = work.writes.iter().filter(|(_, v)| v.is_none()).count() as u64;
        metrics.state_writes_del.add(dels);
        metrics
            .state_writes_set
            .add(work.writes.len() as u64 - dels);
        for (name, v) in &work.writes {
            match v {
                Some(s) => {
                    debug!(ifname = %name, admin = s.admin_up, oper = s.oper_up, mtu = s.mtu, "STATE_DB PORT_TABLE set");
                }
                None => {
                    info!(ifname = %name, "STATE_DB PORT_TABLE entry deleted");
                }
            }
        }
    }
    if work.port_init_done {
        db.publish_port_init_done()?;
        info!("PortInitDone published: every configured port has a host interface");
    }
    if work.reconciled {
        db.write_warm_state("reconciled")?;
        info!("warm restart reconciled");
    }
    Ok((known, read_back))
}
