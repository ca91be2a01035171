//! The one backoff type: every retry in portsyncd (Redis reconnects and writes, start-up steps, store
//! commits and reopens) waits by it, so delays grow and cap the same way everywhere.

use std::time::Duration;

/// Exponential backoff: `initial`, doubling on every failure, capped at `max`; `reset` after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// The delay to wait after a failure; each call doubles the following one up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}
