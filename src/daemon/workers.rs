//! The I/O edges, each on a thread of its own, talking to the loop through one channel:
//! the netlink reader and the Redis writer (the store committer is in `committer.rs`).

use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::core::{ReadBack, StateRow, Work, WorkResult};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::netlink::{LinkSocket, NetlinkItem, RecvOutcome};
use crate::sonic::{DbError, ErrorClass, SonicDb, StateWrite};

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

/// How long the reader waits for more messages after the first one of a quiet period before
/// handing the burst to the loop: a lone change waits this long.
const COALESCE: Duration = Duration::from_millis(2);
/// Shortest time between two bursts while messages keep coming. Each burst costs a wake-up of the
/// reader, one of the loop and a Redis round trip (writer and loop woken again): during a storm the
/// daemon's CPU goes mostly to this per-burst cost, not to the messages (docs/performance.md). So once
/// a burst has gone out, the reader does not wait in `recv` (which wakes it per message) but sleeps to
/// the end of this gap and takes whatever the socket queued meanwhile in one go: during a storm it
/// wakes once per gap, and so do the loop and the writer. Measured against 10 ms (docs/performance.md):
/// half the Redis batches, 17-25 % less CPU per change at 512 and 2048 ports. The price: in a storm a
/// change waits up to this long (plus one COALESCE); convergence after the kernel's last change stays
/// at 10-30 ms, inside the 50 ms target. A lone change still waits only COALESCE.
const BURST_GAP: Duration = Duration::from_millis(20);
/// Most messages handed to the loop at once.
const BURST_ITEMS: usize = 4096;

/// Reads the netlink socket until `stop`; bursts become `Input::Netlink`, losses `Input::Overrun`.
///
/// Pacing: after a quiet period the first message is held COALESCE for company; after a burst went
/// out, the next one is collected by sleeping to the end of BURST_GAP and reading the queue empty
/// (without blocking). When that finds nothing the storm is over and the reader blocks in `recv`
/// again. The socket's 16 MiB buffer holds what arrives during a sleep (thousands of messages).
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
        // When the last burst went to the loop, while a storm may still be going on.
        let mut handed_at: Option<Instant> = None;
        // The size of the last burst: the next one is allocated at that size, so that it does not
        // grow (and reallocate) message by message (glibc's malloc showed in the reader's profile).
        let mut last_burst = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let mut overrun = false;
            let mut items = Vec::new();
            let mut rx = Receive {
                burst_hint: last_burst.clamp(16, BURST_ITEMS),
                sock: &sock,
                buf: &mut buf,
                errors: &mut errors,
                overrun: &mut overrun,
            };
            match handed_at.map(|t| t + BURST_GAP) {
                Some(gap_end) => {
                    sleep_until(gap_end);
                    rx.queued(&mut items);
                    if items.is_empty() {
                        handed_at = None; // quiet again: block in recv
                    }
                }
                None => {
                    rx.blocking(&mut items);
                    if !items.is_empty() && !*rx.overrun {
                        std::thread::sleep(COALESCE);
                        rx.queued(&mut items);
                    }
                }
            }
            if !items.is_empty() {
                faults::panic_point("netlink");
                last_burst = items.len();
                if tx.send(Input::Netlink(items)).is_err() {
                    break;
                }
                handed_at = Some(Instant::now());
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

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One reception step of the reader: what it read goes into `items`, a loss sets `overrun`.
struct Receive<'a> {
    /// Capacity of a burst's vector when its first message arrives.
    burst_hint: usize,
    sock: &'a LinkSocket,
    buf: &'a mut Vec<u8>,
    errors: &'a mut RateLimit,
    overrun: &'a mut bool,
}

impl Receive<'_> {
    /// Waits (up to the socket's receive timeout) for one datagram.
    fn blocking(&mut self, items: &mut Vec<NetlinkItem>) {
        let got = self.sock.recv(self.buf);
        self.take(got, items);
    }

    /// Reads what is queued, without blocking, until the queue is empty, BURST_ITEMS are held or a
    /// loss is seen.
    fn queued(&mut self, items: &mut Vec<NetlinkItem>) {
        while items.len() < BURST_ITEMS && !*self.overrun {
            let got = self.sock.recv_nowait(self.buf);
            if matches!(got, Ok(RecvOutcome::Timeout)) {
                break;
            }
            self.take(got, items);
        }
    }

    fn take(
        &mut self,
        got: Result<RecvOutcome, crate::netlink::NetlinkError>,
        items: &mut Vec<NetlinkItem>,
    ) {
        match got {
            Ok(RecvOutcome::Items(more)) => {
                if items.capacity() == 0 {
                    items.reserve(self.burst_hint.max(more.len()));
                }
                items.extend(more);
            }
            Ok(RecvOutcome::Overrun) => *self.overrun = true,
            Ok(RecvOutcome::Timeout) => {}
            Err(e) => {
                if let Some(suppressed) = self.errors.allow(Instant::now()) {
                    error!(error = %e, suppressed, "netlink receive failed; resyncing with a fresh dump");
                }
                std::thread::sleep(Duration::from_millis(100));
                // A pending socket error other than ENOBUFS is how the kernel reports a
                // notification it could not build (rtnl_set_sk_err): a loss as well.
                *self.overrun = true;
            }
        }
    }
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
    rx: super::handoff::Taker<Work>,
    tx: Sender<Input>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    sup.spawn("redis", move || {
        // Reconnects during start-up were counted by the caller; its entry errors are counted here.
        let mut reconnects_seen = db.reconnects();
        count_entry_errors(&mut db, &metrics);
        let mut pending_reconnect = false;
        let mut was_ok = true;
        for work in rx {
            faults::panic_point("redis");
            let result = execute(&mut db, &work, &metrics);
            count_entry_errors(&mut db, &metrics);
            let now = db.reconnects();
            let new_reconnects = now.saturating_sub(reconnects_seen);
            metrics.redis_reconnects.add(new_reconnects);
            reconnects_seen = now;
            // Reported with the first batch that succeeds after the reconnect.
            pending_reconnect |= new_reconnects > 0;
            let res = match result {
                Ok((known, read_back, rejected)) => {
                    if !was_ok {
                        info!("redis writes succeed again; outstanding writes re-sent");
                    }
                    was_ok = true;
                    if rejected.is_empty() {
                        WorkResult::Done { known, read_back }
                    } else {
                        // Logged and counted per key by the table layer; retried by the core.
                        debug!(ports = ?rejected, "redis refused some STATE_DB writes");
                        WorkResult::Partial {
                            known,
                            read_back,
                            rejected,
                        }
                    }
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
            let reconnected = !matches!(res, WorkResult::Failed) && pending_reconnect;
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
        state: names
            .iter()
            .cloned()
            .zip(rows)
            .map(|(n, row)| (n, row.map_or(StateRow::Unreadable, StateRow::Fields)))
            .collect(),
        app_known,
    })
}

/// Counts the entries the table layer could not use since the last call.
fn count_entry_errors(db: &mut SonicDb, metrics: &Metrics) {
    for (name, reason, n) in db.take_entry_errors() {
        metrics.redis_entry_errors.add(name, reason, n);
    }
}

/// The checks' answers, the read-back, and the ports whose STATE_DB write Redis refused.
type Answers = (Vec<(String, bool)>, Option<ReadBack>, Vec<String>);

fn execute(db: &mut SonicDb, work: &Work, metrics: &Metrics) -> Result<Answers, DbError> {
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
    let mut rejected = Vec::new();
    if !work.writes.is_empty() {
        let writes: Vec<StateWrite> = work
            .writes
            .iter()
            .map(|(name, v)| match v {
                Some(s) => StateWrite::SetFields {
                    name: name.clone(),
                    fields: s.field_values(),
                },
                None => StateWrite::Del { name: name.clone() },
            })
            .collect();
        rejected = db.apply_state_writes(&writes)?;
        let landed = || work.writes.iter().filter(|(n, _)| !rejected.contains(n));
        let dels = landed().filter(|(_, v)| v.is_none()).count();
        let sets = landed().count().saturating_sub(dels);
        metrics.state_writes_del.add(dels as u64);
        metrics.state_writes_set.add(sets as u64);
        for (name, v) in landed() {
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
        match db.publish_port_init_done() {
            Ok(()) => info!("PortInitDone published: every configured port has a host interface"),
            // APPL_DB refuses the ProducerStateTable write itself (its key set or staging hash holds
            // another type): not portsyncd's to repair, and retrying would not help either.
            Err(e) if e.class() == ErrorClass::Command => {
                error!(error = %e, "APPL_DB refused PortInitDone; going on without it");
            }
            Err(e) => return Err(e),
        }
    }
    if work.reconciled {
        // A refused write (the key holds another type) was counted and logged by the table layer.
        if db.write_warm_state("reconciled")? {
            info!("warm restart reconciled");
        }
    }
    Ok((known, read_back, rejected))
}
