//! The initial-sync state machine: after start-up, STATE_DB writes wait for the end of the initial
//! link dump (EOIU) or for a timeout, whichever comes first, and the transition happens exactly once.

use std::time::{Duration, Instant};

/// How the initial sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The NLMSG_DONE of our own, uninterrupted initial dump arrived.
    Eoiu,
    /// The timeout fired first (or was 0).
    Timeout,
}

impl SyncOutcome {
    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            SyncOutcome::Eoiu => "eoiu",
            SyncOutcome::Timeout => "timeout",
        }
    }
}

/// Events that drive the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// A complete, uninterrupted dump ended.
    DumpComplete,
    /// Time passed; `now` is checked against the deadline.
    Tick(Instant),
}

/// The phase of the initial sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Writes are held until `deadline` (None: no deadline — only EOIU ends it).
    Waiting {
        started: Instant,
        deadline: Option<Instant>,
    },
    /// The initial sync ended; normal operation.
    Done {
        outcome: SyncOutcome,
        elapsed: Duration,
    },
}

/// A completed transition out of `Waiting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncEnd {
    pub outcome: SyncOutcome,
    pub elapsed: Duration,
}

impl SyncState {
    /// Starts waiting at `now`. A zero timeout still starts in `Waiting`; the first tick ends it.
    pub fn start(now: Instant, timeout: Option<Duration>) -> Self {
        SyncState::Waiting {
            started: now,
            // A timeout too large to represent never fires: the same as no timeout.
            deadline: timeout.and_then(|t| now.checked_add(t)),
        }
    }

    /// True while writes are held.
    pub fn waiting(&self) -> bool {
        matches!(self, SyncState::Waiting { .. })
    }

    /// The instant the timeout fires, if still waiting.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            SyncState::Waiting { deadline, .. } => *deadline,
            SyncState::Done { .. } => None,
        }
    }

    /// Applies `event`; returns the transition when the sync ends (at most once in a lifetime).
    pub fn on(&mut self, event: SyncEvent, now: Instant) -> Option<SyncEnd> {
        let end = match (*self, event) {
            (SyncState::Waiting { started, .. }, SyncEvent::DumpComplete) => SyncEnd {
                outcome: SyncOutcome::Eoiu,
                elapsed: now.saturating_duration_since(started),
            },
            (
                SyncState::Waiting {
                    started,
                    deadline: Some(deadline),
                },
                SyncEvent::Tick(t),
            ) if t >= deadline => SyncEnd {
                outcome: SyncOutcome::Timeout,
                elapsed: t.saturating_duration_since(started),
            },
            (SyncState::Waiting { .. }, SyncEvent::Tick(_)) => return None,
            // Done is final: later dumps (resyncs) and ticks never complete the sync again.
            (SyncState::Done { .. }, _) => return None,
        };
        *self = SyncState::Done {
            outcome: end.outcome,
            elapsed: end.elapsed,
        };
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eoiu_before_deadline() {
        let t0 = Instant::now();
        let mut s = SyncState::start(t0, Some(Duration::from_secs(10)));
        assert!(s.waiting());
        assert_eq!(s.on(SyncEvent::Tick(t0 + Duration::from_secs(1)), t0), None);
        let end = s
            .on(SyncEvent::DumpComplete, t0 + Duration::from_millis(20))
            .expect("ends");
        assert_eq!(end.outcome, SyncOutcome::Eoiu);
        assert_eq!(end.elapsed, Duration::from_millis(20));
        assert!(!s.waiting());
    }

    #[test]
    fn timeout_fires_on_its_own_tick_and_only_once() {
        let t0 = Instant::now();
        let mut s = SyncState::start(t0, Some(Duration::from_secs(2)));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
        let t = t0 + Duration::from_secs(2);
        let end = s.on(SyncEvent::Tick(t), t).expect("ends");
        assert_eq!(end.outcome, SyncOutcome::Timeout);
        assert_eq!(s.on(SyncEvent::Tick(t + Duration::from_secs(5)), t), None);
        assert_eq!(
            s.on(SyncEvent::DumpComplete, t),
            None,
            "never completes twice"
        );
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn zero_timeout_ends_at_first_tick() {
        let t0 = Instant::now();
        let mut s = SyncState::start(t0, Some(Duration::ZERO));
        let end = s.on(SyncEvent::Tick(t0), t0).expect("immediate");
        assert_eq!(end.outcome, SyncOutcome::Timeout);
        assert_eq!(end.elapsed, Duration::ZERO);
    }

    #[test]
    fn no_deadline_waits_for_eoiu() {
        let t0 = Instant::now();
        let mut s = SyncState::start(t0, None);
        assert_eq!(
            s.on(SyncEvent::Tick(t0 + Duration::from_secs(3600)), t0),
            None
        );
        assert!(s.on(SyncEvent::DumpComplete, t0).is_some());
    }
}
