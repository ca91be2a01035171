//! The loop's inputs, on two channels so that nothing the loop must act on waits behind netlink:
//!
//! - control (unbounded, a handful of messages at most): `WorkDone`, `Committed`, `Stop`,
//!   `WorkerDied`; each sender has at most one message outstanding or sends once;
//! - netlink (bounded to [`NETLINK_QUEUE_BURSTS`] bursts): when the loop falls behind, the reader
//!   blocks, the backlog stays in the kernel's socket buffer (not in portsyncd's memory), and a full
//!   socket buffer becomes an overrun (ENOBUFS) that the resync heals.
//!
//! Each batch takes every queued control input and at most [`NETLINK_PER_BATCH`] netlink bursts,
//! so timers, Redis results and the stop request are looked at between bursts.

use std::time::Duration;

use crossbeam_channel::{self as chan, Receiver, RecvTimeoutError, Sender};

use super::input::Input;

/// Netlink bursts (each up to 4096 messages) queued between the reader and the loop at most.
pub const NETLINK_QUEUE_BURSTS: usize = 2;
/// Netlink bursts the loop takes per batch at most.
pub const NETLINK_PER_BATCH: usize = 2;

/// The loop's end of both channels.
pub struct Inbox {
    ctl: Receiver<Input>,
    nl: Option<Receiver<Input>>,
}

/// The senders: control (for the Redis writer, the store committer, signals, supervision) and
/// netlink (for the reader only).
pub fn inbox() -> (Inbox, Sender<Input>, Sender<Input>) {
    let (ctl_tx, ctl) = chan::unbounded();
    let (nl_tx, nl) = chan::bounded(NETLINK_QUEUE_BURSTS);
    (Inbox { ctl, nl: Some(nl) }, ctl_tx, nl_tx)
}

fn is_netlink(i: &Input) -> bool {
    matches!(i, Input::Netlink(_) | Input::Overrun)
}

impl Inbox {
    /// Waits up to `timeout` for input, then returns it with whatever else is queued (see the
    /// module documentation); empty after a timeout; `None` once no control sender is left.
    pub fn next_batch(&mut self, timeout: Duration) -> Option<Vec<Input>> {
        let mut out = Vec::new();
        let never = chan::never();
        let nl = self.nl.as_ref().unwrap_or(&never);
        let mut nl_closed = false;
        chan::select! {
            recv(self.ctl) -> m => out.push(m.ok()?),
            recv(nl) -> m => match m {
                Ok(i) => out.push(i),
                Err(_) => nl_closed = true, // the reader is gone (supervision reports why)
            },
            default(timeout) => {}
        }
        if nl_closed {
            self.nl = None;
        }
        out.extend(self.ctl.try_iter());
        if let Some(nl) = &self.nl {
            let taken = out.iter().filter(|i| is_netlink(i)).count();
            out.extend(nl.try_iter().take(NETLINK_PER_BATCH.saturating_sub(taken)));
        }
        Some(out)
    }

    /// Waits up to `timeout` for a control input only (shutdown).
    pub fn recv_control(&self, timeout: Duration) -> Result<Input, RecvTimeoutError> {
        self.ctl.recv_timeout(timeout)
    }

    /// Drops the netlink end: a reader blocked on a full queue gets an error and ends (shutdown).
    pub fn close_netlink(&mut self) {
        self.nl = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WorkResult;

    fn done() -> Input {
        Input::WorkDone {
            result: WorkResult::Failed,
            reconnected: false,
        }
    }

    #[test]
    fn the_netlink_queue_is_bounded_and_control_never_waits_behind_it() {
        let (mut inbox, ctl, nl) = inbox();
        for _ in 0..NETLINK_QUEUE_BURSTS {
            nl.try_send(Input::Netlink(Vec::new())).expect("room");
        }
        assert!(
            nl.try_send(Input::Overrun).is_err(),
            "full: the reader would block"
        );
        ctl.send(done()).expect("control is never full");
        ctl.send(Input::Stop).expect("control is never full");
        let batch = inbox.next_batch(Duration::ZERO).expect("open");
        let kinds: Vec<bool> = batch.iter().map(is_netlink).collect();
        assert_eq!(
            kinds.iter().filter(|k| !**k).count(),
            2,
            "both control inputs"
        );
        assert!(kinds.iter().filter(|k| **k).count() <= NETLINK_PER_BATCH);
    }

    #[test]
    fn closing_the_netlink_end_unblocks_a_reader_blocked_on_a_full_queue() {
        let (mut inbox, _ctl, nl) = inbox();
        let reader = std::thread::spawn(move || {
            let mut sent = 0;
            while nl.send(Input::Netlink(Vec::new())).is_ok() {
                sent += 1;
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(50));
        inbox.close_netlink();
        assert_eq!(reader.join().expect("reader ends"), NETLINK_QUEUE_BURSTS);
    }

    #[test]
    fn a_timeout_gives_an_empty_batch_and_a_gone_control_side_ends() {
        let (mut inbox, ctl, nl) = inbox();
        assert_eq!(
            inbox.next_batch(Duration::from_millis(1)).map(|b| b.len()),
            Some(0)
        );
        drop(nl);
        assert_eq!(
            inbox.next_batch(Duration::from_millis(1)).map(|b| b.len()),
            Some(0),
            "a gone reader is no input"
        );
        drop(ctl);
        assert!(inbox.next_batch(Duration::from_millis(1)).is_none());
    }
}
