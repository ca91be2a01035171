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

/// Reads the netlink socket until `stop`; bursts become `Input::Netlink`, losses `Input::Overrun`.
///
/// A loss is an `ENOBUFS` or a rise of the socket's drop counter: after reporting one overrun the
/// kernel drops every further notification *silently* until the receive queue has been read empty
/// (its `NETLINK_S_CONGESTED` bit). So on a loss the queue is first read empty (what it holds is still
/// handed on) and only then is `Overrun` sent: the resync dump it triggers starts on an uncongested
/// socket, where any later loss is reported again. A dump requested with the backlog still queued
/// kept the socket congested for its whole length, and a change to a link it had already passed was
/// lost for good (issue 11, the 2048-port cold start that never converged).
///
/// Bursts go to the loop on `tx`, the bounded netlink queue: while it is full the reader waits and
/// the kernel's socket buffer holds the backlog (an overflow there is an overrun, healed likewise).
pub fn netlink_reader(
    sup: &Supervisor,
    sock: Arc<LinkSocket>,
    tx: Sender<Input>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    sup.spawn("netlink", move || {
        let mut buf = Vec::new();
        let mut errors = RateLimit::new(Duration::from_secs(10));
        let mut drops = DropWatch::new(&sock);
        while !stop.load(Ordering::Relaxed) {
            let mut overrun = false;
            let items = match sock.recv(&mut buf) {
                Ok(RecvOutcome::Items(items)) => coalesce(&sock, &mut buf, items, &mut overrun),
                Ok(RecvOutcome::Overrun) => {
                    overrun = true;
                    Vec::new()
                }
                Ok(RecvOutcome::Timeout) => Vec::new(),
                Err(e) => {
                    if let Some(suppressed) = errors.allow(Instant::now()) {
                        error!(error = %e, suppressed, "netlink receive failed; resyncing with a fresh dump");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    // A pending socket error other than ENOBUFS is how the kernel reports a
                    // notification it could not build (rtnl_set_sk_err): a loss as well.
                    overrun = true;
                    Vec::new()
                }
            };
            if !items.is_empty() {
                faults::panic_point("netlink");
            }
            if !items.is_empty() && tx.send(Input::Netlink(items)).is_err() {
                break;
            }
            if let Some(dropped) = drops.rose(&sock) {
                if !overrun {
                    if let Some(suppressed) = drops.log.allow(Instant::now()) {
                        warn!(
                            dropped,
                            suppressed,
                            "netlink notifications dropped without ENOBUFS: resyncing with a fresh dump"
                        );
                    }
                }
                overrun = true;
            }
            if overrun {
                if !drain(&sock, &mut buf, &tx) {
                    break;
                }
                // Every loss counted so far is covered by the dump this overrun triggers.
                drops.rose(&sock);
                if tx.send(Input::Overrun).is_err() {
                    break;
                }
            }
        }
    })
}

/// Coalesces a burst: while messages keep coming, collects them for COALESCE at a time, so a storm
/// wakes the loop (and Redis) about once per COALESCE instead of once per message. A lone change
/// waits at most one COALESCE. Stops at an overrun or a receive error (sets `overrun`).
fn coalesce(
    sock: &LinkSocket,
    buf: &mut Vec<u8>,
    mut items: Vec<NetlinkItem>,
    overrun: &mut bool,
) -> Vec<NetlinkItem> {
    let held_since = Instant::now();
    'burst: while items.len() < BURST_ITEMS && held_since.elapsed() < BURST_MAX_WAIT {
        std::thread::sleep(COALESCE);
        let before = items.len();
        loop {
            match sock.recv_nowait(buf) {
                Ok(RecvOutcome::Items(more)) => items.extend(more),
                Ok(RecvOutcome::Overrun) | Err(_) => {
                    *overrun = true;
                    break 'burst;
                }
                Ok(RecvOutcome::Timeout) => break,
            }
            if items.len() >= BURST_ITEMS {
                break 'burst;
            }
        }
        if items.len() == before {
            break;
        }
    }
    items
}

/// Reads the queue empty (an `EAGAIN`), handing what it holds to the loop in bursts. While the
/// socket is congested the kernel adds nothing to the queue but the parts of a dump in progress, so
/// this ends. False when the loop is gone.
fn drain(sock: &LinkSocket, buf: &mut Vec<u8>, tx: &Sender<Input>) -> bool {
    let mut items = Vec::new();
    loop {
        match sock.recv_nowait(buf) {
            Ok(RecvOutcome::Items(more)) => items.extend(more),
            Ok(RecvOutcome::Overrun) => {}
            Ok(RecvOutcome::Timeout) | Err(_) => break,
        }
        if items.len() >= BURST_ITEMS
            && tx.send(Input::Netlink(std::mem::take(&mut items))).is_err()
        {
            return false;
        }
    }
    items.is_empty() || tx.send(Input::Netlink(items)).is_ok()
}

/// Follows the socket's drop counter (`SO_MEMINFO`), which also counts the notifications the kernel
/// dropped without an `ENOBUFS`.
struct DropWatch {
    /// None: the kernel cannot tell (no `SO_MEMINFO`); only `ENOBUFS` is seen then.
    last: Option<u32>,
    log: RateLimit,
}

impl DropWatch {
    fn new(sock: &LinkSocket) -> DropWatch {
        let last = match sock.drops() {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(error = %e, "netlink drop counter unavailable: only ENOBUFS reveals lost notifications");
                None
            }
        };
        DropWatch {
            last,
            log: RateLimit::new(Duration::from_secs(10)),
        }
    }

    /// How many drops the counter rose by since the last call, if it rose.
    fn rose(&mut self, sock: &LinkSocket) -> Option<u32> {
        let last = self.last?;
        let now = sock.drops().ok()?;
        self.last = Some(now);
        (now != last).then(|| now.wrapping_sub(last))
    }
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
