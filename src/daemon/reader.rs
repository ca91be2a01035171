//! The netlink reader: reads the link socket on a thread of its own and hands the loop bursts of
//! messages and losses, in an order that keeps every loss healable (see [`read_loop`]).
//!
//! The reader works on any [`LinkSource`]: the daemon's [`LinkSocket`], or a model of the kernel's
//! socket in tests (`tests/core_overrun_replay.rs` replays the loss handling of issue 11 against one).

use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::logging::RateLimit;
use crate::netlink::{LinkSocket, NetlinkError, NetlinkItem, RecvOutcome};

use super::faults;
use super::input::Input;
use super::supervise::Supervisor;

/// What the reader needs of a link socket: its two receive calls and its drop counter.
pub trait LinkSource {
    /// Waits (up to the socket's receive timeout) for one datagram.
    fn recv(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError>;
    /// Reads one queued datagram without waiting ([`RecvOutcome::Timeout`]: the queue is empty).
    fn recv_nowait(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError>;
    /// The socket's count of dropped notifications (`SO_MEMINFO`), which also counts the drops the
    /// kernel did not report with an `ENOBUFS`.
    fn drops(&self) -> Result<u32, NetlinkError>;
}

impl LinkSource for LinkSocket {
    fn recv(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
        LinkSocket::recv(self, buf)
    }
    fn recv_nowait(&self, buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
        LinkSocket::recv_nowait(self, buf)
    }
    fn drops(&self) -> Result<u32, NetlinkError> {
        LinkSocket::drops(self)
    }
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
    sup.spawn("netlink", move || read_loop(&*sock, &tx, &stop))
}

/// The reader's loop (see [`netlink_reader`]), on the calling thread, until `stop` is set or the loop's
/// end of `tx` is gone.
pub fn read_loop<S: LinkSource + ?Sized>(sock: &S, tx: &Sender<Input>, stop: &AtomicBool) {
    let mut buf = Vec::new();
    let mut errors = RateLimit::new(Duration::from_secs(10));
    let mut drops = DropWatch::new(sock);
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
            sock,
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
        if let Some(dropped) = drops.rose(sock) {
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
            if !drain(sock, &mut buf, tx) {
                break;
            }
            // Every loss counted so far is covered by the dump this overrun triggers.
            drops.rose(sock);
            if tx.send(Input::Overrun).is_err() {
                break;
            }
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One reception step of the reader: what it read goes into `items`, a loss sets `overrun`.
struct Receive<'a, S: LinkSource + ?Sized> {
    /// Capacity of a burst's vector when its first message arrives.
    burst_hint: usize,
    sock: &'a S,
    buf: &'a mut Vec<u8>,
    errors: &'a mut RateLimit,
    overrun: &'a mut bool,
}

impl<S: LinkSource + ?Sized> Receive<'_, S> {
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

    fn take(&mut self, got: Result<RecvOutcome, NetlinkError>, items: &mut Vec<NetlinkItem>) {
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
fn drain<S: LinkSource + ?Sized>(sock: &S, buf: &mut Vec<u8>, tx: &Sender<Input>) -> bool {
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
    fn new<S: LinkSource + ?Sized>(sock: &S) -> DropWatch {
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
    fn rose<S: LinkSource + ?Sized>(&mut self, sock: &S) -> Option<u32> {
        let last = self.last?;
        let now = sock.drops().ok()?;
        self.last = Some(now);
        (now != last).then(|| now.wrapping_sub(last))
    }
}
