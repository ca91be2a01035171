//! The netlink reader: reads the link socket on a thread of its own and hands the loop bursts of
//! messages and losses, in an order that keeps every loss healable (see [`read_loop`]).
//!
//! The reader works on any [`LinkSource`] (`link_source.rs`): the daemon's [`LinkSocket`], or a model
//! of the kernel's socket in tests (`tests/core_overrun_replay.rs` replays the loss handling of issue 11 against one).

use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::error;

use crate::faults;
use crate::logging::RateLimit;
use crate::netlink::{LinkSocket, NetlinkError, NetlinkItem, RecvOutcome};
use crate::supervise::Supervisor;

use super::input::Input;
pub use super::link_source::{Clock, LinkSource, SystemClock};
use super::loss::{self, DropWatch};

/// Shortest time between two bursts while messages keep coming. Each burst costs a wake-up of the
/// reader, one of the loop and a Redis round trip (writer and loop woken again): during a storm the
/// daemon's CPU goes mostly to this per-burst cost, not to the messages (docs/performance.md). So once
/// a burst has gone out, the reader does not wait in `recv` (which wakes it per message) but sleeps to
/// the end of this gap and takes whatever the socket queued meanwhile in one go: during a storm it
/// wakes once per gap, and so do the loop and the writer. Measured against 10 ms (docs/performance.md):
/// half the Redis batches, 17-25 % less CPU per change at 512 and 2048 ports. The price: in a storm a
/// change waits up to this long; convergence after the kernel's last change stays at 10-30 ms, inside
/// the 50 ms target. A change after a quiet period (none in the last gap) does not wait at all.
pub const BURST_GAP: Duration = Duration::from_millis(20);
/// Once a storm has gone on this long, the gap between bursts grows to [`LONG_GAP`]: a storm's cost is
/// about one burst cycle (four thread wake-ups and a Redis round trip) per gap, and the storms that
/// last are the ones of large port tables, where the kernel applies changes slowly (a 2688-command
/// storm takes it 2-4 s at 2048 ports, 4-30 s at 4096 on the benchmark's VM; docs/performance.md).
pub const LONG_STORM: Duration = Duration::from_secs(1);
/// The gap between bursts in a storm that has lasted [`LONG_STORM`].
pub const LONG_GAP: Duration = Duration::from_millis(40);
/// Most messages handed to the loop at once.
const BURST_ITEMS: usize = 4096;

/// Reads the netlink socket until `stop`; bursts become `Input::Netlink`, losses `Input::Overrun`.
///
/// Pacing: after a quiet period the reader blocks in `recv`, and the first message is handed over
/// at once, with whatever else the socket already holds (read without blocking): a lone change
/// waits for nothing. After a burst went out, the next one is collected by sleeping to the end of
/// BURST_GAP (LONG_GAP once the storm has lasted LONG_STORM) and reading the queue empty (without
/// blocking): changes that come faster than one burst per gap are coalesced. When that finds
/// nothing the storm is over and the reader blocks in `recv` again. The socket's 16 MiB buffer holds
/// what arrives during a sleep (thousands of messages).
///
/// A loss is an `ENOBUFS` or a rise of the socket's drop counter; it is reported as `Overrun` only
/// once the queue has been read empty (`loss.rs`): a dump requested with the backlog still queued
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
    read_loop_with(sock, tx, stop, &SystemClock)
}

/// [`read_loop`] on the given clock.
pub fn read_loop_with<S: LinkSource + ?Sized, C: Clock + ?Sized>(
    sock: &S,
    tx: &Sender<Input>,
    stop: &AtomicBool,
    clock: &C,
) {
    let mut buf = Vec::new();
    let mut errors = RateLimit::new(Duration::from_secs(10));
    let mut drops = DropWatch::new(sock);
    // When the last burst went to the loop, while a storm may still be going on.
    let mut handed_at: Option<Instant> = None;
    // When the storm under way began (its first burst went out).
    let mut storm_since: Option<Instant> = None;
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
            clock,
        };
        let gap_end = handed_at.map(|t| {
            let long = storm_since.is_some_and(|s| t.saturating_duration_since(s) >= LONG_STORM);
            t + if long { LONG_GAP } else { BURST_GAP }
        });
        match gap_end {
            Some(gap_end) => {
                clock.sleep_until(gap_end);
                rx.queued(&mut items);
                if items.is_empty() {
                    handed_at = None; // quiet again: block in recv
                    storm_since = None;
                }
            }
            None => {
                rx.blocking(&mut items);
                if !items.is_empty() {
                    // No wait for company: only what is already queued goes with it.
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
            let now = clock.now();
            handed_at = Some(now);
            storm_since.get_or_insert(now);
        }
        if let Some(dropped) = drops.rose(sock) {
            if !overrun {
                drops.log_silent(dropped, clock.now());
            }
            overrun = true;
        }
        if overrun && !loss::report(sock, &mut buf, tx, &mut drops, BURST_ITEMS) {
            break;
        }
    }
}

/// One reception step of the reader: what it read goes into `items`, a loss sets `overrun`.
struct Receive<'a, S: LinkSource + ?Sized, C: Clock + ?Sized> {
    /// Capacity of a burst's vector when its first message arrives.
    burst_hint: usize,
    sock: &'a S,
    buf: &'a mut Vec<u8>,
    errors: &'a mut RateLimit,
    overrun: &'a mut bool,
    clock: &'a C,
}

impl<S: LinkSource + ?Sized, C: Clock + ?Sized> Receive<'_, S, C> {
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
                if let Some(suppressed) = self.errors.allow(self.clock.now()) {
                    error!(error = %e, suppressed, "netlink receive failed; resyncing with a fresh dump");
                }
                self.clock
                    .sleep_until(self.clock.now() + Duration::from_millis(100));
                // A pending socket error other than ENOBUFS is how the kernel reports a
                // notification it could not build (rtnl_set_sk_err): a loss as well.
                *self.overrun = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Link, LinkEvent, LinkOp};
    use crossbeam_channel::Receiver;
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex};

    /// A socket whose queue the test fills; `recv` waits (briefly, like the socket's receive
    /// timeout) for a datagram.
    #[derive(Default)]
    struct Queue {
        q: Mutex<VecDeque<NetlinkItem>>,
        ready: Condvar,
        /// Calls of the blocking `recv`.
        blocking: std::sync::atomic::AtomicUsize,
    }

    impl Queue {
        fn push(&self, n: usize) {
            let mut q = self.q.lock().unwrap();
            for i in 0..n {
                q.push_back(NetlinkItem::Link {
                    seq: 0,
                    dump_intr: false,
                    event: LinkEvent {
                        op: LinkOp::New,
                        link: Link {
                            ifindex: 3,
                            name: "Ethernet0".into(),
                            flags: 0x1,
                            mtu: 1500 + i as u32,
                            kind: None,
                            master: 0,
                        },
                    },
                });
            }
            self.ready.notify_all();
        }
    }

    impl LinkSource for Queue {
        fn recv(&self, _buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
            self.blocking.fetch_add(1, Ordering::SeqCst);
            let q = self.q.lock().unwrap();
            let (mut q, _) = self
                .ready
                .wait_timeout_while(q, Duration::from_millis(20), |q| q.is_empty())
                .unwrap();
            Ok(q.pop_front()
                .map_or(RecvOutcome::Timeout, |i| RecvOutcome::Items(vec![i])))
        }
        fn recv_nowait(&self, _buf: &mut Vec<u8>) -> Result<RecvOutcome, NetlinkError> {
            let mut q = self.q.lock().unwrap();
            Ok(q.pop_front()
                .map_or(RecvOutcome::Timeout, |i| RecvOutcome::Items(vec![i])))
        }
        fn drops(&self) -> Result<u32, NetlinkError> {
            Ok(0)
        }
    }

    /// A clock that moves only when the test moves it: every wait of the reader is seen (as the
    /// instant it sleeps until) and lasts until the test lets it end.
    struct ManualClock {
        t0: Instant,
        /// (now, the instant the reader sleeps until)
        state: Mutex<(Instant, Option<Instant>)>,
        moved: Condvar,
    }

    impl ManualClock {
        fn new() -> ManualClock {
            let t0 = Instant::now();
            ManualClock {
                t0,
                state: Mutex::new((t0, None)),
                moved: Condvar::new(),
            }
        }
        fn advance_to(&self, t: Instant) {
            self.state.lock().unwrap().0 = t;
            self.moved.notify_all();
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.state.lock().unwrap().0
        }
        fn sleep_until(&self, t: Instant) {
            let mut s = self.state.lock().unwrap();
            s.1 = Some(t);
            self.moved.notify_all();
            let mut s = self.moved.wait_while(s, |s| s.0 < t).unwrap();
            s.1 = None;
        }
    }

    /// Waits until the reader has handed a burst over or sleeps (whichever it does first), and
    /// returns the burst's size, or the instant it sleeps until.
    fn next_move(rx: &Receiver<Input>, clock: &ManualClock) -> Result<usize, Instant> {
        loop {
            if let Ok(i) = rx.try_recv() {
                match i {
                    Input::Netlink(items) => return Ok(items.len()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let s = clock.state.lock().unwrap();
            // A sleep whose end has come is over (the reader may not have woken yet).
            if let Some(until) = s.1.filter(|u| *u > s.0) {
                drop(s);
                // A hand-over made just before the sleep is still the first move.
                return match rx.try_recv() {
                    Ok(Input::Netlink(items)) => Ok(items.len()),
                    _ => Err(until),
                };
            }
            let _ = clock
                .moved
                .wait_timeout(s, Duration::from_millis(5))
                .unwrap();
        }
    }

    /// The reader on a test socket and a manual clock, on a thread of its own.
    struct Started {
        sock: Arc<Queue>,
        clock: Arc<ManualClock>,
        stop: Arc<AtomicBool>,
        rx: Receiver<Input>,
        reader: std::thread::JoinHandle<()>,
    }

    fn start_reader() -> Started {
        let sock = Arc::new(Queue::default());
        let clock = Arc::new(ManualClock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = {
            let (sock, clock, stop) = (Arc::clone(&sock), Arc::clone(&clock), Arc::clone(&stop));
            std::thread::spawn(move || read_loop_with(&*sock, &tx, &stop, &*clock))
        };
        Started {
            sock,
            clock,
            stop,
            rx,
            reader,
        }
    }

    /// A lone change goes to the loop at once; changes that come while a burst is under way wait
    /// for the end of the gap and go together; after a quiet gap a change goes at once again.
    #[test]
    fn a_lone_change_is_handed_over_at_once_and_a_storm_is_coalesced_per_gap() {
        let Started {
            sock,
            clock,
            stop,
            rx,
            reader,
        } = start_reader();
        let t0 = clock.t0;

        sock.push(1);
        assert_eq!(
            next_move(&rx, &clock),
            Ok(1),
            "a lone change must be handed over before the reader waits for anything"
        );
        // The storm: 50 changes come while the reader sleeps to the end of the gap.
        let gap_end = next_move(&rx, &clock).expect_err("asleep to the gap's end");
        assert_eq!(gap_end, t0 + BURST_GAP);
        sock.push(50);
        clock.advance_to(gap_end);
        assert_eq!(next_move(&rx, &clock), Ok(50), "one burst at the gap's end");
        let next_end = next_move(&rx, &clock).expect_err("asleep to the next gap's end");
        assert_eq!(next_end, gap_end + BURST_GAP);
        // Nothing came during that gap: the storm is over and the reader blocks in recv again.
        let blocking = sock.blocking.load(Ordering::SeqCst);
        clock.advance_to(next_end + 10 * BURST_GAP);
        while sock.blocking.load(Ordering::SeqCst) == blocking {
            std::thread::yield_now();
        }
        sock.push(1);
        assert_eq!(
            next_move(&rx, &clock),
            Ok(1),
            "after a quiet gap, a change goes at once again"
        );

        stop.store(true, Ordering::Relaxed);
        clock.advance_to(next_end + 100 * BURST_GAP);
        reader.join().unwrap();
    }

    /// A storm that goes on: bursts every BURST_GAP during its first LONG_STORM, every LONG_GAP
    /// after that; once quiet, the next change goes at once and the gap is short again.
    #[test]
    fn a_storm_that_lasts_is_coalesced_over_longer_gaps() {
        let Started {
            sock,
            clock,
            stop,
            rx,
            reader,
        } = start_reader();
        let t0 = clock.t0;
        sock.push(1);
        assert_eq!(next_move(&rx, &clock), Ok(1));
        // Messages keep coming: one burst per gap; record the gaps.
        let mut gaps = Vec::new();
        let mut last = t0;
        while last < t0 + LONG_STORM + 3 * LONG_GAP {
            let end = next_move(&rx, &clock).expect_err("asleep to the gap's end");
            gaps.push(end - last);
            sock.push(3);
            clock.advance_to(end);
            assert_eq!(next_move(&rx, &clock), Ok(3));
            last = end;
        }
        let short = (LONG_STORM.as_millis() / BURST_GAP.as_millis()) as usize;
        assert!(gaps[..short].iter().all(|g| *g == BURST_GAP), "{gaps:?}");
        assert!(gaps[short..].iter().all(|g| *g == LONG_GAP), "{gaps:?}");
        // Quiet: the gap's end finds nothing, the reader blocks in recv again.
        let end = next_move(&rx, &clock).expect_err("asleep to the gap's end");
        let blocking = sock.blocking.load(Ordering::SeqCst);
        clock.advance_to(end + 10 * LONG_GAP);
        while sock.blocking.load(Ordering::SeqCst) == blocking {
            std::thread::yield_now();
        }
        sock.push(1);
        assert_eq!(next_move(&rx, &clock), Ok(1), "after the storm, at once");
        let again = next_move(&rx, &clock).expect_err("asleep to the gap's end");
        assert_eq!(
            again,
            end + 10 * LONG_GAP + BURST_GAP,
            "a new storm starts short"
        );
        stop.store(true, Ordering::Relaxed);
        clock.advance_to(again + 100 * LONG_GAP);
        reader.join().unwrap();
    }
}
