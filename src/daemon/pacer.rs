//! When to commit the store: group commit with a debounce, paced by what commits cost.
//!
//! A change is committed once the port table has been quiet for `QUIET` (so a storm becomes one
//! generation at its end, not dozens during it), but never later than `MAX_LAG` after the first
//! uncommitted change; and commits are spaced at least `DUTY` times their own duration apart, so
//! they take at most about 1/DUTY of the time however large the table. Sans-IO: plain instants in.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Quiet time after the last change before a commit.
pub const QUIET: Duration = Duration::from_millis(200);
/// Longest a change waits for its commit while changes keep coming.
pub const MAX_LAG: Duration = Duration::from_secs(5);
/// Commits are spaced at least this many times their own duration apart.
pub const DUTY: u32 = 10;
/// First retry delay after a failed commit.
pub const FAIL_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay after failed commits.
pub const FAIL_BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct CommitPacer {
    /// First change not yet handed to the store.
    pending_since: Option<Instant>,
    last_change: Option<Instant>,
    last_commit: Option<Instant>,
    /// Minimum gap after `last_commit`.
    gap: Duration,
    /// Delay before retrying a failed commit (reset by a success).
    fail_backoff: Backoff,
}

impl Default for CommitPacer {
    fn default() -> Self {
        CommitPacer {
            pending_since: None,
            last_change: None,
            last_commit: None,
            gap: Duration::ZERO,
            fail_backoff: Backoff::new(FAIL_BACKOFF_MIN, FAIL_BACKOFF_MAX),
        }
    }
}

impl CommitPacer {
    /// Something worth saving changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.pending_since.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// The instant a commit becomes due, if anything is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        let since = self.pending_since?;
        let settle = self
            .last_change
            .map_or(since, |c| c + QUIET)
            .min(since + MAX_LAG);
        Some(match self.last_commit {
            Some(t) => settle.max(t + self.gap),
            None => settle,
        })
    }

    /// True when a commit should be sent now; the caller then calls `sent`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|d| now >= d)
    }

    /// A commit was handed to the store at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.pending_since = None;
        self.last_commit = Some(now);
    }

    /// The store finished a commit that took `took`; a failed one is due again, after a backoff that
    /// doubles from `FAIL_BACKOFF_MIN` to `FAIL_BACKOFF_MAX` while failures go on.
    pub fn finished(&mut self, took: Duration, ok: bool, now: Instant) {
        if ok {
            self.gap = took * DUTY;
            self.fail_backoff.reset();
        } else {
            self.gap = self.fail_backoff.next_delay().max(took * DUTY);
            self.pending_since.get_or_insert(now);
        }
    }

    /// The current minimum gap after a commit.
    pub fn gap(&self) -> Duration {
        self.gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lone_change_is_committed_after_the_quiet_time() {
        let t0 = Instant::now();
        let mut p = CommitPacer::default();
        assert!(!p.due(t0) && p.next_deadline().is_none());
        p.changed(t0);
        assert!(!p.due(t0 + QUIET - MS));
        assert!(p.due(t0 + QUIET));
        p.sent(t0 + QUIET);
        assert!(p.next_deadline().is_none());
    }

    #[test]
    fn a_storm_is_one_commit_at_its_end_or_at_the_maximum_lag() {
        let t0 = Instant::now();
        let mut p = CommitPacer::default();
        let mut t = t0;
        while t < t0 + Duration::from_secs(2) {
            p.changed(t);
            assert!(!p.due(t), "not during the storm");
            t += 10 * MS;
        }
        assert!(p.due(t + QUIET));
        // A storm longer than MAX_LAG still commits at MAX_LAG.
        let mut p = CommitPacer::default();
        let mut t = t0;
        while t < t0 + MAX_LAG {
            p.changed(t);
            t += 10 * MS;
        }
        p.changed(t0 + MAX_LAG);
        assert!(p.due(t0 + MAX_LAG));
    }

    #[test]
    fn expensive_commits_are_spaced_out() {
        let t0 = Instant::now();
        let mut p = CommitPacer::default();
        p.changed(t0);
        p.sent(t0 + QUIET);
        p.finished(Duration::from_millis(80), true, t0 + QUIET + 80 * MS);
        p.changed(t0 + QUIET + 90 * MS);
        // Quiet after 290 ms, but the gap is 800 ms after the last commit.
        assert!(!p.due(t0 + QUIET + 500 * MS));
        assert!(p.due(t0 + QUIET + 800 * MS));
    }

    #[test]
    fn a_failed_commit_is_due_again_with_backoff() {
        let t0 = Instant::now();
        let mut p = CommitPacer::default();
        p.changed(t0);
        let mut t = t0 + QUIET;
        let mut gaps = Vec::new();
        for _ in 0..9 {
            assert!(p.due(t));
            p.sent(t);
            p.finished(MS, false, t + MS); // a store that fails at once
            let next = p.next_deadline().expect("still pending");
            gaps.push(next - t);
            assert!(!p.due(next - MS), "no retry before the backoff");
            t = next;
        }
        assert_eq!(gaps[0], FAIL_BACKOFF_MIN);
        assert_eq!(gaps[1], 2 * FAIL_BACKOFF_MIN);
        assert_eq!(*gaps.last().expect("gaps"), FAIL_BACKOFF_MAX);
        // Success resets the pacing to the commit's own cost.
        p.sent(t);
        p.finished(MS, true, t + MS);
        p.changed(t + MS);
        assert!(p.due(t + MS + QUIET));
    }
}
