//! The hand-over between the loop and the store committer: at most one pending delta, newer ones
//! merged into it (newest entry per port), and the final request at shutdown. Bounded whatever the
//! committer's pace: a hung `fsync` cannot grow memory beyond one entry per port.

use crossbeam_channel::Sender;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::saved::PortDelta;

/// The answer to the final commit.
pub type FinalReply = Sender<Result<u64, String>>;

#[derive(Default)]
struct Slot {
    /// The hand-overs not yet taken by the committer, merged.
    pending: Option<PortDelta>,
    /// Set once, at shutdown: commit `pending` (or the newest known) and answer here.
    final_reply: Option<FinalReply>,
}

/// The hand-over between the loop and the committer: one pending delta, newer ones merged into it.
#[derive(Default)]
pub struct CommitSlot {
    slot: Mutex<Slot>,
    wake: Condvar,
}

impl CommitSlot {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A poisoned mutex only means a panic elsewhere; the slot's data is still whole.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(g: &mut Slot, d: PortDelta) {
        match g.pending.as_mut() {
            Some(p) => p.merge(d),
            None => g.pending = Some(d),
        }
    }

    /// Hand `d` over for committing; it is merged into a hand-over still pending.
    pub fn submit(&self, d: PortDelta) {
        Self::put(&mut self.lock(), d);
        self.wake.notify_one();
    }

    /// The final commit: `d` is merged into anything pending; the committer answers on `reply` and ends.
    pub fn finish(&self, d: PortDelta, reply: FinalReply) {
        let mut g = self.lock();
        Self::put(&mut g, d);
        g.final_reply = Some(reply);
        drop(g);
        self.wake.notify_one();
    }

    /// Waits until a hand-over or the final request is there, or `until` passes.
    pub fn take(&self, until: Option<Instant>) -> (Option<PortDelta>, Option<FinalReply>) {
        let mut g = self.lock();
        loop {
            if g.final_reply.is_some() || g.pending.is_some() {
                return (g.pending.take(), g.final_reply.take());
            }
            match until {
                None => g = self.wake.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (None, None);
                    }
                    g = self
                        .wake
                        .wait_timeout(g, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::daemon::saved::numbered_delta as snap;

    #[test]
    fn newer_hand_overs_are_merged_into_the_pending_one() {
        let slot = CommitSlot::default();
        for n in 0..1000 {
            slot.submit(snap(n));
        }
        let (s, r) = slot.take(Some(Instant::now()));
        let s = s.unwrap();
        assert_eq!(s.counters["n"], 999);
        assert!(s.full, "the full set among them is kept full");
        assert!(r.is_none());
        // Nothing else was queued.
        assert!(slot.take(Some(Instant::now())).0.is_none());
    }

    #[test]
    fn the_final_commit_carries_the_newest_hand_over() {
        let slot = CommitSlot::default();
        slot.submit(snap(1));
        let (tx, _rx) = crossbeam_channel::unbounded();
        slot.finish(snap(2), tx);
        let (s, r) = slot.take(None);
        assert_eq!(s.map(|s| s.counters["n"]), Some(2));
        assert!(r.is_some());
    }
}
