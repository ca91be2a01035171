//! Every counter with its stable ID: the key its lifetime value is saved under in the store. An ID never
//! changes, so a metric can be renamed (its `family` below) without losing its lifetime value.
//!
//! Saved states written before the IDs existed keyed each value by its series string
//! (`portsyncd_starts_total{mode="cold"}`); `legacy` keeps that key so `Metrics::from_saved` migrates
//! it. New states are saved under the IDs only.

use std::collections::BTreeMap;

use super::model::{Counter, Metrics, SYNC_BUCKETS};

/// One exported counter series.
pub(super) struct Series {
    /// Stable ID: the persistence key. Never change or reuse one.
    pub id: &'static str,
    /// The key of saved states written before the IDs (the series string then exported).
    pub legacy: &'static str,
    /// Prometheus family name (may change; the ID keeps the lifetime value).
    pub family: &'static str,
    /// At most one label.
    pub label: Option<(&'static str, &'static str)>,
    /// HELP text of the family (taken from its first series).
    pub help: &'static str,
    pub get: fn(&Metrics) -> &Counter,
}

macro_rules! series {
    ($id:literal, $family:literal, $label:expr, $help:literal, $legacy:literal, $field:ident) => {
        Series {
            id: $id,
            legacy: $legacy,
            family: $family,
            label: $label,
            help: $help,
            get: |m| &m.$field,
        }
    };
}

/// Every counter, in export order (series of one family adjacent).
pub(super) const COUNTERS: &[Series] = &[
    series!(
        "starts.cold",
        "portsyncd_starts_total",
        Some(("mode", "cold")),
        "Daemon starts by mode (lifetime).",
        "portsyncd_starts_total{mode=\"cold\"}",
        starts_cold
    ),
    series!(
        "starts.warm",
        "portsyncd_starts_total",
        Some(("mode", "warm")),
        "",
        "portsyncd_starts_total{mode=\"warm\"}",
        starts_warm
    ),
    series!(
        "initial_sync.eoiu",
        "portsyncd_initial_sync_total",
        Some(("outcome", "eoiu")),
        "How initial syncs ended (lifetime).",
        "portsyncd_initial_sync_total{outcome=\"eoiu\"}",
        initial_sync_eoiu
    ),
    series!(
        "initial_sync.timeout",
        "portsyncd_initial_sync_total",
        Some(("outcome", "timeout")),
        "",
        "portsyncd_initial_sync_total{outcome=\"timeout\"}",
        initial_sync_timeout
    ),
    series!(
        "recoveries.previous_generation",
        "portsyncd_state_recoveries_total",
        Some(("source", "previous_generation")),
        "Steps down the state recovery ladder (lifetime).",
        "portsyncd_state_recoveries_total{source=\"previous_generation\"}",
        recoveries_previous_generation
    ),
    series!(
        "recoveries.json_export",
        "portsyncd_state_recoveries_total",
        Some(("source", "json_export")),
        "",
        "portsyncd_state_recoveries_total{source=\"json_export\"}",
        recoveries_json_export
    ),
    series!(
        "recoveries.cold_start",
        "portsyncd_state_recoveries_total",
        Some(("source", "cold_start")),
        "",
        "portsyncd_state_recoveries_total{source=\"cold_start\"}",
        recoveries_cold_start
    ),
    series!(
        "state.save_failures",
        "portsyncd_state_save_failures_total",
        None,
        "State commits that failed (lifetime).",
        "portsyncd_state_save_failures_total",
        state_save_failures
    ),
    series!(
        "state.load_failures",
        "portsyncd_state_load_failures_total",
        None,
        "Saved states that could not be loaded (lifetime).",
        "portsyncd_state_load_failures_total",
        state_load_failures
    ),
    series!(
        "state.commits",
        "portsyncd_state_commits_total",
        None,
        "State generations committed (lifetime).",
        "portsyncd_state_commits_total",
        state_commits
    ),
    series!(
        "netlink.overruns",
        "portsyncd_netlink_overruns_total",
        None,
        "Netlink receive overruns (ENOBUFS) (lifetime).",
        "portsyncd_netlink_overruns_total",
        netlink_overruns
    ),
    series!(
        "netlink.resyncs",
        "portsyncd_netlink_resyncs_total",
        None,
        "Fresh link dumps after an overrun or inconsistent dump (lifetime).",
        "portsyncd_netlink_resyncs_total",
        netlink_resyncs
    ),
    series!(
        "netlink.messages",
        "portsyncd_netlink_messages_total",
        None,
        "Link messages received (lifetime).",
        "portsyncd_netlink_messages_total",
        netlink_messages
    ),
    series!(
        "redis.reconnects",
        "portsyncd_redis_reconnects_total",
        None,
        "Redis reconnections (lifetime).",
        "portsyncd_redis_reconnects_total",
        redis_reconnects
    ),
    series!(
        "state_db.writes.set",
        "portsyncd_state_db_writes_total",
        Some(("op", "set")),
        "STATE_DB PORT_TABLE writes (lifetime).",
        "portsyncd_state_db_writes_total{op=\"set\"}",
        state_writes_set
    ),
    series!(
        "state_db.writes.del",
        "portsyncd_state_db_writes_total",
        Some(("op", "del")),
        "",
        "portsyncd_state_db_writes_total{op=\"del\"}",
        state_writes_del
    ),
    series!(
        "warm.reconciled_saved_state_eoiu",
        "portsyncd_warm_restarts_total",
        Some(("result", "reconciled_saved_state_eoiu")),
        "Warm restarts by how they reconciled (lifetime).",
        "portsyncd_warm_restarts_total{result=\"reconciled_saved_state_eoiu\"}",
        warm_reconciled_saved_eoiu
    ),
    series!(
        "warm.reconciled_degraded",
        "portsyncd_warm_restarts_total",
        Some(("result", "reconciled_degraded")),
        "",
        "portsyncd_warm_restarts_total{result=\"reconciled_degraded\"}",
        warm_reconciled_degraded
    ),
    series!(
        "warm.timeouts",
        "portsyncd_warm_restart_timeouts_total",
        None,
        "Warm restarts whose initial sync did not complete within the timer (lifetime).",
        "portsyncd_warm_restart_timeouts_total",
        warm_timeouts
    ),
    series!(
        "resync.checks",
        "portsyncd_resync_checks_total",
        None,
        "Anti-entropy checks completed (lifetime).",
        "portsyncd_resync_checks_total",
        resync_checks
    ),
    series!(
        "resync.repairs.kernel",
        "portsyncd_resync_repairs_total",
        Some(("reason", "kernel")),
        "Ports repaired by anti-entropy, by where the difference was found (lifetime).",
        "portsyncd_resync_repairs_total{reason=\"kernel\"}",
        resync_repairs_kernel
    ),
    series!(
        "resync.repairs.state_db",
        "portsyncd_resync_repairs_total",
        Some(("reason", "state_db")),
        "",
        "portsyncd_resync_repairs_total{reason=\"state_db\"}",
        resync_repairs_state_db
    ),
];

/// The initial-sync histogram's stable IDs (`initial_sync_seconds.le.<bound>`, `.count`, `.sum_us`) and
/// the keys of saved states written before them.
const HIST_ID: &str = "initial_sync_seconds";
const HIST_LEGACY: &str = "portsyncd_initial_sync_seconds";

fn bucket_id(bound: f64) -> String {
    format!("{HIST_ID}.le.{bound}")
}

fn bucket_legacy(bound: f64) -> String {
    format!("{HIST_LEGACY}_bucket{{le=\"{bound}\"}}")
}

/// The saved value under `id`, else under the pre-ID key `legacy`.
fn saved_value(saved: &BTreeMap<String, u64>, id: &str, legacy: &str) -> Option<u64> {
    saved.get(id).or_else(|| saved.get(legacy)).copied()
}

impl Metrics {
    /// Metrics continuing from the totals a previous run saved, under the stable IDs or (older states)
    /// the series strings; unknown keys are ignored.
    pub fn from_saved(saved: &BTreeMap<String, u64>) -> Self {
        let m = Metrics::default();
        for s in COUNTERS {
            if let Some(v) = saved_value(saved, s.id, s.legacy) {
                (s.get)(&m).set(v);
            }
        }
        let h = &m.initial_sync_seconds;
        for (bound, c) in SYNC_BUCKETS.iter().zip(&h.buckets) {
            if let Some(v) = saved_value(saved, &bucket_id(*bound), &bucket_legacy(*bound)) {
                c.set(v);
            }
        }
        let (count_id, sum_id) = (format!("{HIST_ID}.count"), format!("{HIST_ID}.sum_us"));
        if let Some(v) = saved_value(saved, &count_id, &format!("{HIST_LEGACY}_count")) {
            h.count.set(v);
        }
        if let Some(v) = saved_value(saved, &sum_id, &format!("{HIST_LEGACY}_sum_us")) {
            h.sum_us.set(v);
        }
        m
    }

    /// The totals to persist, keyed by stable ID.
    pub fn to_saved(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = COUNTERS
            .iter()
            .map(|s| (s.id.to_string(), (s.get)(self).get()))
            .collect();
        let h = &self.initial_sync_seconds;
        for (bound, c) in SYNC_BUCKETS.iter().zip(&h.buckets) {
            out.insert(bucket_id(*bound), c.get());
        }
        out.insert(format!("{HIST_ID}.count"), h.count.get());
        out.insert(format!("{HIST_ID}.sum_us"), h.sum_us.get());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn totals_survive_a_save_and_load() {
        let m = Metrics::default();
        m.starts_warm.add(3);
        m.recoveries_json_export.inc();
        m.initial_sync_seconds.observe(Duration::from_millis(30));
        let saved = m.to_saved();
        let m2 = Metrics::from_saved(&saved);
        m2.starts_warm.inc();
        assert_eq!(m2.starts_warm.get(), 4);
        assert_eq!(m2.recoveries_json_export.get(), 1);
        assert_eq!(m2.initial_sync_seconds.count(), 1);
        assert_eq!(m2.to_saved()[&bucket_id(0.05)], 1);
        assert_eq!(m2.to_saved()[&bucket_id(0.025)], 0);
    }

    /// A saved state from before the stable IDs (keys = series strings, as an older portsyncd wrote
    /// them) keeps every lifetime value, and is saved back under the IDs only.
    #[test]
    fn series_string_keys_of_older_states_migrate_to_ids() {
        let mut old: BTreeMap<String, u64> = BTreeMap::new();
        for (i, s) in COUNTERS.iter().enumerate() {
            old.insert(s.legacy.to_string(), 100 + i as u64);
        }
        for (i, b) in SYNC_BUCKETS.iter().enumerate() {
            old.insert(bucket_legacy(*b), 10 + i as u64);
        }
        old.insert("portsyncd_initial_sync_seconds_count".into(), 23);
        old.insert("portsyncd_initial_sync_seconds_sum_us".into(), 4_500_000);
        let m = Metrics::from_saved(&old);
        for (i, s) in COUNTERS.iter().enumerate() {
            assert_eq!((s.get)(&m).get(), 100 + i as u64, "{}", s.id);
        }
        assert_eq!(m.initial_sync_seconds.count(), 23);
        assert_eq!(m.initial_sync_seconds.sum_us.get(), 4_500_000);
        assert_eq!(m.initial_sync_seconds.buckets[12].get(), 22);
        let saved = m.to_saved();
        assert!(
            saved.keys().all(|k| !k.starts_with("portsyncd_")),
            "{saved:?}"
        );
        assert_eq!(saved["starts.cold"], 100);
        assert_eq!(saved["initial_sync_seconds.sum_us"], 4_500_000);
        // A state saved under both (never written, but possible by hand): the ID wins.
        old.insert("starts.cold".into(), 7);
        assert_eq!(Metrics::from_saved(&old).starts_cold.get(), 7);
    }

    #[test]
    fn ids_are_unique_and_every_field_is_listed_once() {
        let ids: BTreeSet<&str> = COUNTERS.iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), COUNTERS.len());
        let m = Metrics::default();
        let fields: BTreeSet<*const Counter> = COUNTERS
            .iter()
            .map(|s| (s.get)(&m) as *const Counter)
            .collect();
        assert_eq!(fields.len(), COUNTERS.len());
    }
}
