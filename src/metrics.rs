//! Lifetime metrics: a typed set of monotonic counters (and one histogram), persisted in the store
//! with every commit so they survive restarts, and served in Prometheus text format.
//!
//! Counters are never reset on read. At start-up the daemon loads the totals the store saved and
//! keeps counting from there; each commit saves the current totals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
    fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
}

/// Upper bounds (seconds) of the initial-sync histogram buckets.
pub const SYNC_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A Prometheus histogram with fixed buckets; the sum is kept in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; SYNC_BUCKETS.len()],
    count: Counter,
    sum_us: Counter,
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

/// Every metric portsyncd exports.
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
}

/// `(series name, help, type)` of every plain counter, in export order, with its accessor.
type Entry = (&'static str, &'static str, fn(&Metrics) -> &Counter);

const COUNTERS: &[Entry] = &[
    (
        "portsyncd_starts_total{mode=\"cold\"}",
        "Daemon starts by mode (lifetime).",
        |m| &m.starts_cold,
    ),
    ("portsyncd_starts_total{mode=\"warm\"}", "", |m| {
        &m.starts_warm
    }),
    (
        "portsyncd_initial_sync_total{outcome=\"eoiu\"}",
        "How initial syncs ended (lifetime).",
        |m| &m.initial_sync_eoiu,
    ),
    (
        "portsyncd_initial_sync_total{outcome=\"timeout\"}",
        "",
        |m| &m.initial_sync_timeout,
    ),
    (
        "portsyncd_state_recoveries_total{source=\"previous_generation\"}",
        "Steps down the state recovery ladder (lifetime).",
        |m| &m.recoveries_previous_generation,
    ),
    (
        "portsyncd_state_recoveries_total{source=\"json_export\"}",
        "",
        |m| &m.recoveries_json_export,
    ),
    (
        "portsyncd_state_recoveries_total{source=\"cold_start\"}",
        "",
        |m| &m.recoveries_cold_start,
    ),
    (
        "portsyncd_state_save_failures_total",
        "State commits that failed (lifetime).",
        |m| &m.state_save_failures,
    ),
    (
        "portsyncd_state_load_failures_total",
        "Saved states that could not be loaded (lifetime).",
        |m| &m.state_load_failures,
    ),
    (
        "portsyncd_state_commits_total",
        "State generations committed (lifetime).",
        |m| &m.state_commits,
    ),
    (
        "portsyncd_netlink_overruns_total",
        "Netlink receive overruns (ENOBUFS) (lifetime).",
        |m| &m.netlink_overruns,
    ),
    (
        "portsyncd_netlink_resyncs_total",
        "Fresh link dumps after an overrun or inconsistent dump (lifetime).",
        |m| &m.netlink_resyncs,
    ),
    (
        "portsyncd_netlink_messages_total",
        "Link messages received (lifetime).",
        |m| &m.netlink_messages,
    ),
    (
        "portsyncd_redis_reconnects_total",
        "Redis reconnections (lifetime).",
        |m| &m.redis_reconnects,
    ),
    (
        "portsyncd_state_db_writes_total{op=\"set\"}",
        "STATE_DB PORT_TABLE writes (lifetime).",
        |m| &m.state_writes_set,
    ),
    ("portsyncd_state_db_writes_total{op=\"del\"}", "", |m| {
        &m.state_writes_del
    }),
    (
        "portsyncd_warm_restarts_total{result=\"reconciled_saved_state_eoiu\"}",
        "Warm restarts by how they reconciled (lifetime).",
        |m| &m.warm_reconciled_saved_eoiu,
    ),
    (
        "portsyncd_warm_restarts_total{result=\"reconciled_degraded\"}",
        "",
        |m| &m.warm_reconciled_degraded,
    ),
    (
        "portsyncd_warm_restart_timeouts_total",
        "Warm restarts whose initial sync did not complete within the timer (lifetime).",
        |m| &m.warm_timeouts,
    ),
];

const HIST: &str = "portsyncd_initial_sync_seconds";

fn family(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

fn bucket_key(bound: f64) -> String {
    format!("{HIST}_bucket{{le=\"{bound}\"}}")
}

impl Metrics {
    /// Metrics continuing from the totals a previous run saved (unknown keys are ignored).
    pub fn from_saved(saved: &BTreeMap<String, u64>) -> Self {
        let m = Metrics::default();
        for (key, _, get) in COUNTERS {
            if let Some(v) = saved.get(*key) {
                get(&m).set(*v);
            }
        }
        let h = &m.initial_sync_seconds;
        for (bound, c) in SYNC_BUCKETS.iter().zip(&h.buckets) {
            if let Some(v) = saved.get(&bucket_key(*bound)) {
                c.set(*v);
            }
        }
        if let Some(v) = saved.get(&format!("{HIST}_count")) {
            h.count.set(*v);
        }
        if let Some(v) = saved.get(&format!("{HIST}_sum_us")) {
            h.sum_us.set(*v);
        }
        m
    }

    /// The totals to persist.
    pub fn to_saved(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = COUNTERS
            .iter()
            .map(|(k, _, get)| (k.to_string(), get(self).get()))
            .collect();
        let h = &self.initial_sync_seconds;
        for (bound, c) in SYNC_BUCKETS.iter().zip(&h.buckets) {
            out.insert(bucket_key(*bound), c.get());
        }
        out.insert(format!("{HIST}_count"), h.count.get());
        out.insert(format!("{HIST}_sum_us"), h.sum_us.get());
        out
    }

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

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut last_family = "";
        for (series, help, get) in COUNTERS {
            let fam = family(series);
            if fam != last_family {
                let _ = writeln!(out, "# HELP {fam} {help}\n# TYPE {fam} counter");
                last_family = fam;
            }
            let _ = writeln!(out, "{series} {}", get(self).get());
        }
        let h = &self.initial_sync_seconds;
        let _ = writeln!(
            out,
            "# HELP {HIST} Time from start-up to the end of the initial sync (lifetime).\n# TYPE {HIST} histogram"
        );
        for (bound, c) in SYNC_BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(out, "{HIST}_bucket{{le=\"{bound}\"}} {}", c.get());
        }
        let _ = writeln!(out, "{HIST}_bucket{{le=\"+Inf\"}} {}", h.count.get());
        let _ = writeln!(out, "{HIST}_sum {}", h.sum_us.get() as f64 / 1e6);
        let _ = writeln!(out, "{HIST}_count {}", h.count.get());
        let _ = writeln!(
            out,
            "# HELP portsyncd_warm_restart_success_ratio Share of warm restarts that reconciled from a valid saved state at EOIU.\n# TYPE portsyncd_warm_restart_success_ratio gauge\nportsyncd_warm_restart_success_ratio {}",
            self.warm_success_ratio()
        );
        out
    }
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen for metrics on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// The HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Serves `GET /metrics` on `addr` from a thread of its own.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let srv = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for req in srv.incoming_requests() {
                    let resp = if req.method() == &tiny_http::Method::Get
                        && req.url().split('?').next() == Some("/metrics")
                    {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        )
                        .ok();
                        let mut r = tiny_http::Response::from_string(metrics.render());
                        if let Some(h) = header {
                            r.add_header(h);
                        }
                        r
                    } else {
                        tiny_http::Response::from_string("not found\n").with_status_code(404)
                    };
                    if let Err(e) = req.respond(resp) {
                        tracing::debug!(error = %e, "metrics response failed");
                    }
                }
            })
            .map_err(|e| MetricsError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(m2.to_saved()[&bucket_key(0.05)], 1);
        assert_eq!(m2.to_saved()[&bucket_key(0.025)], 0);
    }

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
            "portsyncd_initial_sync_seconds_count 1",
            "portsyncd_initial_sync_seconds_sum 2",
            "portsyncd_netlink_overruns_total 0",
            "portsyncd_netlink_resyncs_total 0",
            "portsyncd_redis_reconnects_total 0",
            "# TYPE portsyncd_initial_sync_seconds histogram",
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
    fn success_ratio() {
        let m = Metrics::default();
        assert_eq!(m.warm_success_ratio(), 1.0);
        m.warm_reconciled_saved_eoiu.add(3);
        m.warm_reconciled_degraded.inc();
        assert_eq!(m.warm_success_ratio(), 0.75);
    }

    #[test]
    fn endpoint_serves_metrics_and_404s_elsewhere() {
        use std::io::{Read, Write};
        let m = Arc::new(Metrics::default());
        m.starts_cold.inc();
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        let body = get("/metrics");
        assert!(
            body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"),
            "{body}"
        );
        assert!(body.contains("portsyncd_starts_total{mode=\"cold\"} 1"));
        assert!(get("/other").contains(" 404 "));
    }
}
