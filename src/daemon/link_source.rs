//! What the netlink reader needs of the world, as two seams: the link socket ([`LinkSource`]) and
//! the clock ([`Clock`]); the daemon's are [`LinkSocket`] and [`SystemClock`], tests put models of
//! the kernel's socket and of time in their place.

use std::time::Instant;

use crate::netlink::{LinkSocket, NetlinkError, RecvOutcome};

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

/// The reader's time: the real clock and `thread::sleep` in the daemon; a model in tests, which
/// can then see every wait the reader makes (no timed assertions).
pub trait Clock {
    fn now(&self) -> Instant;
    /// Returns at `t` (at once when `t` has passed).
    fn sleep_until(&self, t: Instant);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep_until(&self, t: Instant) {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}
