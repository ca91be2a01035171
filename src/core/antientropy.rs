//! Anti-entropy: a periodic check that what portsyncd believes is still true.
//!
//! Every `interval` (`--resync-interval-secs`), once no link message has arrived for
//! [`CHECK_IDLE`], the core asks for a fresh link dump and then for a read-back of Redis, and
//! repairs any difference through the normal diff rule. A consistent switch gets no write; a
//! difference is reported once per check ([`Notice::CheckDone`]) with the ports, split by where it
//! was found: the kernel (a dump reply, or a port missing from the dump, that the core's view did
//! not match: a lost notification) or STATE_DB (an entry that is not what portsyncd wrote).
//!
//! The check never runs during the initial sync, and never next to other work on the kernel's
//! view (a dump already in progress): it waits for a quiet moment instead of competing with a storm.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Core, Notice};
use crate::core::link::Link;
use crate::core::port::PortStatus;

/// How long no link message may arrive before a due check starts.
pub const CHECK_IDLE: Duration = Duration::from_secs(2);

/// Where a check is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next check.
    #[default]
    Idle,
    /// The dump is due or in progress (repeated if it ends inconsistent).
    Dump,
    /// The dump completed; the read-back is due or in flight.
    ReadBack,
    /// Ended; the next tick schedules the next one.
    Ended,
}

/// The anti-entropy state of the core.
#[derive(Debug, Default)]
pub(super) struct Check {
    /// None: anti-entropy is off.
    interval: Option<Duration>,
    phase: Phase,
    /// The next check is due at (set at the first tick after the initial sync).
    next: Option<Instant>,
    /// When the last link message was seen (by tick).
    last_activity: Option<Instant>,
    /// `stats.link_events` at the last tick.
    seen_events: u64,
    /// Ports the check's dump found different from the core's view.
    kernel_drift: BTreeSet<String>,
}

impl Core {
    /// Turns the anti-entropy check on (every `interval`) or off (None, the default).
    pub fn with_resync_interval(mut self, interval: Option<Duration>) -> Self {
        self.check.interval = interval.filter(|i| !i.is_zero());
        self
    }

    /// True while an anti-entropy check is under way (tests, logs).
    pub fn checking(&self) -> bool {
        !matches!(self.check.phase, Phase::Idle | Phase::Ended)
    }

    /// When the next check may start (None: off, under way, or not scheduled yet).
    pub(super) fn check_deadline(&self) -> Option<Instant> {
        let c = &self.check;
        if c.interval.is_none() || c.phase != Phase::Idle || self.sync.waiting() {
            return None;
        }
        let quiet = c.last_activity.map(|t| t + CHECK_IDLE);
        [c.next?].into_iter().chain(quiet).max()
    }

    /// Time passed: notes link activity, schedules and starts checks.
    pub(super) fn check_tick(&mut self, now: Instant) {
        if self.check.seen_events != self.stats.link_events {
            self.check.seen_events = self.stats.link_events;
            self.check.last_activity = Some(now);
        }
        let Some(interval) = self.check.interval else {
            return;
        };
        match self.check.phase {
            Phase::Ended => {
                self.check.phase = Phase::Idle;
                // None: beyond the clock's range, i.e. never (the option is bounded too).
                self.check.next = now.checked_add(interval);
            }
            Phase::Idle if !self.sync.waiting() && self.first_dump_complete => {
                if self.check.next.is_none() {
                    self.check.next = now.checked_add(interval);
                }
                let Some(next) = self.check.next else {
                    return; // an interval beyond the clock's range: never due
                };
                let quiet = self
                    .check
                    .last_activity
                    .is_none_or(|t| now.saturating_duration_since(t) >= CHECK_IDLE);
                if now < next || !quiet {
                    return;
                }
                if self.dump.is_some() || self.dump_due {
                    // A resync is under way: it does the kernel half already; look again later.
                    self.check.next = Some(now + CHECK_IDLE);
                    return;
                }
                self.check.phase = Phase::Dump;
                self.check.kernel_drift.clear();
                self.dump_due = true;
            }
            _ => {}
        }
    }

    /// A reply of a dump: during a check, a reply the core's view does not match is drift.
    pub(super) fn note_dump_reply(&mut self, name: &str, link: &Link) {
        if self.check.phase != Phase::Dump {
            return;
        }
        let same = self
            .kernel
            .get(name)
            .is_some_and(|k| k.ifindex == link.ifindex && k.status() == PortStatus::of(link));
        if !same {
            self.check.kernel_drift.insert(name.to_string());
        }
    }

    /// A dump completed cleanly; `vanished` were in the core's view but not in the dump.
    pub(super) fn check_dump_done(&mut self, vanished: &[String]) {
        if self.check.phase != Phase::Dump {
            return;
        }
        self.check.kernel_drift.extend(vanished.iter().cloned());
        self.check.phase = Phase::ReadBack;
        self.read_back.due = true;
    }

    /// A read-back landed; `state_db` are the ports whose entry was not what portsyncd believed.
    pub(super) fn check_read_back_done(&mut self, state_db: Vec<String>) {
        if self.check.phase != Phase::ReadBack {
            return;
        }
        self.check.phase = Phase::Ended;
        let kernel = std::mem::take(&mut self.check.kernel_drift)
            .into_iter()
            .collect();
        self.notices.push(Notice::CheckDone { kernel, state_db });
    }
}
