//! The netlink reader's loss policy: a loss is an `ENOBUFS` or a rise of the socket's drop counter,
//! and it is reported only once the receive queue has been read empty.
//!
//! After reporting one overrun the kernel drops every further notification *silently* until the
//! receive queue has been read empty (its `NETLINK_S_CONGESTED` bit). So on a loss the queue is first
//! read empty (what it holds is still handed on) and only then is `Overrun` sent: the resync dump it
//! triggers starts on an uncongested socket, where any later loss is reported again (issue 11).

use crossbeam_channel::Sender;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::logging::RateLimit;
use crate::netlink::RecvOutcome;

use super::input::Input;
use super::link_source::LinkSource;

/// Reports a loss: the queue read empty ([`drain`], in bursts of at most `burst_items` messages),
/// then one `Overrun`, which covers every drop counted so far. False when the loop is gone.
pub fn report<S: LinkSource + ?Sized>(
    sock: &S,
    buf: &mut Vec<u8>,
    tx: &Sender<Input>,
    drops: &mut DropWatch,
    burst_items: usize,
) -> bool {
    if !drain(sock, buf, tx, burst_items) {
        return false;
    }
    // Every loss counted so far is covered by the dump this overrun triggers.
    drops.rose(sock);
    tx.send(Input::Overrun).is_ok()
}

/// Reads the queue empty (an `EAGAIN`), handing what it holds to the loop in bursts. While the
/// socket is congested the kernel adds nothing to the queue but the parts of a dump in progress, so
/// this ends. False when the loop is gone.
fn drain<S: LinkSource + ?Sized>(
    sock: &S,
    buf: &mut Vec<u8>,
    tx: &Sender<Input>,
    burst_items: usize,
) -> bool {
    let mut items = Vec::new();
    loop {
        match sock.recv_nowait(buf) {
            Ok(RecvOutcome::Items(more)) => items.extend(more),
            Ok(RecvOutcome::Overrun) => {}
            Ok(RecvOutcome::Timeout) | Err(_) => break,
        }
        if items.len() >= burst_items
            && tx.send(Input::Netlink(std::mem::take(&mut items))).is_err()
        {
            return false;
        }
    }
    items.is_empty() || tx.send(Input::Netlink(items)).is_ok()
}

/// Follows the socket's drop counter (`SO_MEMINFO`), which also counts the notifications the kernel
/// dropped without an `ENOBUFS`.
pub struct DropWatch {
    /// None: the kernel cannot tell (no `SO_MEMINFO`); only `ENOBUFS` is seen then.
    last: Option<u32>,
    log: RateLimit,
}

impl DropWatch {
    pub fn new<S: LinkSource + ?Sized>(sock: &S) -> DropWatch {
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
    pub fn rose<S: LinkSource + ?Sized>(&mut self, sock: &S) -> Option<u32> {
        let last = self.last?;
        let now = sock.drops().ok()?;
        self.last = Some(now);
        (now != last).then(|| now.wrapping_sub(last))
    }

    /// Logs (rate-limited) drops the kernel made without an `ENOBUFS`.
    pub fn log_silent(&mut self, dropped: u32, now: Instant) {
        if let Some(suppressed) = self.log.allow(now) {
            warn!(
                dropped,
                suppressed,
                "netlink notifications dropped without ENOBUFS: resyncing with a fresh dump"
            );
        }
    }
}
