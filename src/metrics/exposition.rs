//! The Prometheus text format (0.0.4), built with the `prometheus` crate's data model and `TextEncoder`
//! from the counter table (`persist::COUNTERS`), the histogram and the derived gauges.
//!
//! Why `prometheus` and not `prometheus-client`: `prometheus-client` writes only OpenMetrics text, whose
//! counter families are named without `_total` (`# TYPE portsyncd_starts counter`, samples
//! `portsyncd_starts_total`). `promtool check metrics` (the Prometheus text parser) then reports every
//! counter as "no help text"; the 0.0.4 text of `prometheus` passes it clean.

use prometheus::proto::{
    Bucket, Counter as ProtoCounter, Gauge, Histogram as ProtoHistogram, LabelPair, Metric,
    MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use super::model::{Metrics, SYNC_BUCKETS};
use super::persist::COUNTERS;
use crate::sonic::{EntryErrorReason, ENTRY_DBS};
use crate::store::Degraded;

/// `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn family(name: &str, help: &str, ty: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(ty);
    f
}

fn gauge(label: Option<(&str, &str)>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::default();
    m.set_gauge(g);
    if let Some((k, v)) = label {
        m.set_label(vec![label_pair(k, v)]);
    }
    m
}

fn counter(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut c = ProtoCounter::default();
    c.set_value(value);
    let mut m = Metric::default();
    m.set_counter(c);
    m.set_label(labels.iter().map(|(k, v)| label_pair(k, v)).collect());
    m
}

fn label_pair(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// Every family, in export order.
pub fn families(m: &Metrics) -> Vec<MetricFamily> {
    let mut out = counter_families(m);
    out.push(entry_errors(m));
    out.push(initial_sync(m));
    out.push(warm_success_ratio(m));
    out.extend(store_health(m));
    out
}

/// The counters of the counter table (`persist::COUNTERS`), one family per run of equal names.
fn counter_families(m: &Metrics) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for s in COUNTERS {
        if out.last().map(|f| f.name()) != Some(s.family) {
            out.push(family(s.family, s.help, MetricType::COUNTER));
        }
        let mut c = ProtoCounter::default();
        c.set_value((s.get)(m).get() as f64);
        let mut metric = Metric::default();
        metric.set_counter(c);
        if let Some((k, v)) = s.label {
            metric.set_label(vec![label_pair(k, v)]);
        }
        if let Some(f) = out.last_mut() {
            f.mut_metric().push(metric);
        }
    }
    out
}

/// `portsyncd_redis_entry_errors_total{db, reason}`.
fn entry_errors(m: &Metrics) -> MetricFamily {
    let mut f = family(
        "portsyncd_redis_entry_errors_total",
        "Redis entries portsyncd could not use (skipped and retried later; never a reconnect), \
         since start.",
        MetricType::COUNTER,
    );
    f.set_metric(
        ENTRY_DBS
            .iter()
            .flat_map(|db| {
                EntryErrorReason::ALL.iter().map(move |r| {
                    let n = m.redis_entry_errors.get(db, *r);
                    counter(&[("db", db), ("reason", r.label())], n as f64)
                })
            })
            .collect(),
    );
    f
}

/// The `portsyncd_initial_sync_seconds` histogram.
fn initial_sync(m: &Metrics) -> MetricFamily {
    let h = &m.initial_sync_seconds;
    let mut hist = ProtoHistogram::default();
    hist.set_sample_count(h.count.get());
    hist.set_sample_sum(h.sum_us.get() as f64 / 1e6);
    hist.set_bucket(
        SYNC_BUCKETS
            .iter()
            .zip(&h.buckets)
            .map(|(bound, c)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(c.get());
                b
            })
            .collect(),
    );
    let mut metric = Metric::default();
    metric.set_histogram(hist);
    let mut f = family(
        "portsyncd_initial_sync_seconds",
        "Time from start-up to the end of the initial sync (lifetime).",
        MetricType::HISTOGRAM,
    );
    f.set_metric(vec![metric]);
    f
}

/// The `portsyncd_warm_restart_success_ratio` gauge.
fn warm_success_ratio(m: &Metrics) -> MetricFamily {
    let (name, help) = (
        "portsyncd_warm_restart_success_ratio",
        "Share of warm restarts that reconciled from a valid saved state at EOIU.",
    );
    let mut f = family(name, help, MetricType::GAUGE);
    f.set_metric(vec![gauge(None, m.warm_success_ratio())]);
    f
}

/// `portsyncd_state_store_up` and `portsyncd_state_store_degraded{reason}`, from one reading.
fn store_health(m: &Metrics) -> [MetricFamily; 2] {
    let health = m.store_health.get();
    let mut up = family(
        "portsyncd_state_store_up",
        "1 while the state store takes commits, 0 while portsyncd runs without persistence.",
        MetricType::GAUGE,
    );
    up.set_metric(vec![gauge(None, f64::from(u8::from(health.is_none())))]);
    let mut degraded = family(
        "portsyncd_state_store_degraded",
        "Why the state store takes no commits (1 for the current reason).",
        MetricType::GAUGE,
    );
    degraded.set_metric(
        Degraded::ALL
            .iter()
            .map(|d| {
                gauge(
                    Some(("reason", d.label())),
                    f64::from(u8::from(health == Some(*d))),
                )
            })
            .collect(),
    );
    [up, degraded]
}

/// The text a scrape gets.
pub fn render(m: &Metrics) -> String {
    TextEncoder::new()
        .encode_to_string(&families(m))
        .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
}

impl Metrics {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        render(self)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn render_has_every_required_series() {
        let m = Metrics::default();
        m.initial_sync_timeout.inc();
        m.initial_sync_seconds.observe(Duration::from_secs(2));
        let text = m.render();
        for needle in [
            "portsyncd_starts_total{mode=\"cold\"} 0",
            "portsyncd_starts_total{mode=\"warm\"} 0",
            "portsyncd_initial_sync_total{outcome=\"eoiu\"} 0",
            "portsyncd_initial_sync_total{outcome=\"timeout\"} 1",
            "portsyncd_state_recoveries_total{source=\"previous_generation\"} 0",
            "portsyncd_state_recoveries_total{source=\"json_export\"} 0",
            "portsyncd_state_recoveries_total{source=\"cold_start\"} 0",
            "portsyncd_state_save_failures_total 0",
            "portsyncd_state_load_failures_total 0",
            "portsyncd_initial_sync_seconds_bucket{le=\"2.5\"} 1",
            "portsyncd_initial_sync_seconds_bucket{le=\"1\"} 0",
            "portsyncd_initial_sync_seconds_bucket{le=\"+Inf\"} 1",
            "portsyncd_initial_sync_seconds_count 1",
            "portsyncd_initial_sync_seconds_sum 2",
            "portsyncd_netlink_overruns_total 0",
            "portsyncd_netlink_resyncs_total 0",
            "portsyncd_redis_reconnects_total 0",
            "portsyncd_warm_restart_timeouts_total 0",
            "portsyncd_warm_restart_success_ratio 1",
            "# TYPE portsyncd_initial_sync_seconds histogram",
            "# HELP portsyncd_starts_total Daemon starts by mode (lifetime).",
        ] {
            assert!(text.contains(needle), "missing {needle}\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE portsyncd_starts_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn entry_errors_have_both_labels() {
        let m = Metrics::default();
        m.redis_entry_errors
            .add("STATE_DB", EntryErrorReason::WrongType, 3);
        let text = m.render();
        assert!(
            text.contains(
                "portsyncd_redis_entry_errors_total{db=\"STATE_DB\",reason=\"wrong_type\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "portsyncd_redis_entry_errors_total{db=\"CONFIG_DB\",reason=\"not_utf8\"} 0\n"
        ));
        assert_eq!(
            text.matches("# TYPE portsyncd_redis_entry_errors_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn large_lifetime_values_print_as_integers() {
        let m = Metrics::default();
        m.netlink_messages.add(123_456_789_012);
        assert!(m
            .render()
            .contains("portsyncd_netlink_messages_total 123456789012\n"));
    }

    #[test]
    fn store_health_gauges_name_one_reason_at_a_time() {
        let m = Metrics::default();
        let text = m.render();
        assert!(text.contains("portsyncd_state_store_up 1\n"), "{text}");
        assert!(text.contains("portsyncd_state_store_degraded{reason=\"no_space\"} 0\n"));
        m.store_health.set_degraded(Degraded::NoSpace);
        let text = m.render();
        assert!(text.contains("portsyncd_state_store_up 0\n"), "{text}");
        assert!(text.contains("portsyncd_state_store_degraded{reason=\"no_space\"} 1\n"));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("portsyncd_state_store_degraded{"))
                .count(),
            Degraded::ALL.len()
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("portsyncd_state_store_degraded{") && l.ends_with(" 1"))
                .count(),
            1
        );
        m.store_health.set_up();
        assert!(m.render().contains("portsyncd_state_store_up 1\n"));
        // Gauges are not lifetime totals: nothing of them is saved.
        assert!(!m
            .to_saved()
            .keys()
            .any(|k| k.contains("store_up") || k.contains("store_degraded")));
    }
}
