//! The metrics the daemon updates: plain relaxed atomics, so a counter update is one `lock xadd` and the
//! exposition and persistence layers read them when asked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::sonic::{EntryErrorReason, ENTRY_DBS};
use crate::store::Degraded;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    /// Only to load a saved lifetime value at start-up.
    pub(super) fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
}

/// The store's health now (a gauge, not persisted): up, or the reason it takes no commits.
#[derive(Debug, Default)]
pub struct StoreHealth(AtomicU64);

impl StoreHealth {
    /// The store takes commits.
    pub fn set_up(&self) {
        self.0.store(0, Relaxed);
    }
    /// The daemon runs without persistence, for `reason`.
    pub fn set_degraded(&self, reason: Degraded) {
        let i = Degraded::ALL.iter().position(|d| *d == reason).unwrap_or(0);
        self.0.store(i as u64 + 1, Relaxed);
    }
    /// None while up.
    pub fn get(&self) -> Option<Degraded> {
        let i = self.0.load(Relaxed) as usize;
        i.checked_sub(1).and_then(|i| Degraded::ALL.get(i).copied())
    }
}

/// `portsyncd_redis_entry_errors_total{db, reason}`: Redis entries portsyncd could not use (skipped
/// and looked at again later), by database and reason. Counted since the start (not persisted: the
/// entries are retried, so a lifetime total would mostly count the same key again and again).
#[derive(Debug, Default)]
pub struct EntryErrorCounters {
    counts: [[Counter; EntryErrorReason::ALL.len()]; ENTRY_DBS.len()],
}

impl EntryErrorCounters {
    fn slot(&self, db: &str, reason: EntryErrorReason) -> Option<&Counter> {
        let d = ENTRY_DBS.iter().position(|x| *x == db)?;
        let r = EntryErrorReason::ALL.iter().position(|x| *x == reason)?;
        self.counts.get(d)?.get(r)
    }

    /// Adds `n` entries of `db` (one of [`ENTRY_DBS`]; others are not counted) for `reason`.
    pub fn add(&self, db: &str, reason: EntryErrorReason, n: u64) {
        if let Some(c) = self.slot(db, reason) {
            c.add(n);
        }
    }

    /// The count for `db` and `reason` (0 for a database not in [`ENTRY_DBS`]).
    pub fn get(&self, db: &str, reason: EntryErrorReason) -> u64 {
        self.slot(db, reason).map_or(0, Counter::get)
    }
}

/// Upper bounds (seconds) of the initial-sync histogram buckets.
pub const SYNC_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A Prometheus histogram with fixed buckets (cumulative counts, as exposed); the sum is kept in
/// microseconds so that it is an integer that can be persisted exactly.
#[derive(Debug, Default)]
pub struct Histogram {
    pub(super) buckets: [Counter; SYNC_BUCKETS.len()],
    pub(super) count: Counter,
    pub(super) sum_us: Counter,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, c) in SYNC_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                c.inc();
            }
        }
        self.count.inc();
        self.sum_us
            .add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// Every metric portsyncd exports (names and stable IDs: `persist::COUNTERS`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub starts_cold: Counter,
    pub starts_warm: Counter,
    pub initial_sync_eoiu: Counter,
    pub initial_sync_timeout: Counter,
    pub recoveries_previous_generation: Counter,
    pub recoveries_json_export: Counter,
    pub recoveries_cold_start: Counter,
    pub state_save_failures: Counter,
    pub state_load_failures: Counter,
    pub state_commits: Counter,
    pub initial_sync_seconds: Histogram,
    pub netlink_overruns: Counter,
    pub netlink_resyncs: Counter,
    pub netlink_messages: Counter,
    pub redis_reconnects: Counter,
    pub state_writes_set: Counter,
    pub state_writes_del: Counter,
    /// Warm starts that reconciled from a valid saved state at EOIU (the success figure).
    pub warm_reconciled_saved_eoiu: Counter,
    /// Warm starts that reconciled otherwise (baseline read from STATE_DB, or ended by the timeout).
    pub warm_reconciled_degraded: Counter,
    /// Warm starts whose initial sync was ended by the EOIU timer, not by a complete dump.
    pub warm_timeouts: Counter,
    /// Anti-entropy checks completed.
    pub resync_checks: Counter,
    /// Ports an anti-entropy check repaired, by where the difference was found.
    pub resync_repairs_kernel: Counter,
    pub resync_repairs_state_db: Counter,
    /// `portsyncd_state_store_up` and `portsyncd_state_store_degraded{reason}` (gauges, not persisted).
    pub store_health: StoreHealth,
    /// `portsyncd_redis_entry_errors_total{db, reason}` (since start, not persisted).
    pub redis_entry_errors: EntryErrorCounters,
}

impl Metrics {
    /// Share of warm starts that reconciled from a valid saved state at EOIU (1 when none yet).
    pub fn warm_success_ratio(&self) -> f64 {
        let ok = self.warm_reconciled_saved_eoiu.get();
        let all = ok + self.warm_reconciled_degraded.get();
        if all == 0 {
            1.0
        } else {
            ok as f64 / all as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_ratio() {
        let m = Metrics::default();
        assert_eq!(m.warm_success_ratio(), 1.0);
        m.warm_reconciled_saved_eoiu.add(3);
        m.warm_reconciled_degraded.inc();
        assert_eq!(m.warm_success_ratio(), 0.75);
    }

    #[test]
    fn entry_errors_count_per_db_and_reason() {
        let m = Metrics::default();
        m.redis_entry_errors
            .add("STATE_DB", EntryErrorReason::WrongType, 2);
        m.redis_entry_errors
            .add("NO_DB", EntryErrorReason::NotUtf8, 5);
        assert_eq!(
            m.redis_entry_errors
                .get("STATE_DB", EntryErrorReason::WrongType),
            2
        );
        assert_eq!(
            m.redis_entry_errors
                .get("CONFIG_DB", EntryErrorReason::WrongType),
            0
        );
        assert_eq!(
            m.redis_entry_errors.get("NO_DB", EntryErrorReason::NotUtf8),
            0
        );
    }

    #[test]
    fn histogram_buckets_hold_what_fits() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(30));
        let i = |b: f64| SYNC_BUCKETS.iter().position(|x| *x == b).unwrap();
        assert_eq!(h.buckets[i(0.025)].get(), 0);
        assert_eq!(h.buckets[i(0.05)].get(), 1);
        assert_eq!(h.buckets[i(60.0)].get(), 1);
        assert_eq!((h.count(), h.sum_us.get()), (1, 30_000));
    }
}
