//! Logs and counts what the core's read-backs and anti-entropy checks found.

use std::time::Instant;

use tracing::{debug, info, warn};

use crate::logging::RateLimit;
use crate::metrics::Metrics;

/// Ports named in one log line at most (the count is always complete).
const NAMED: usize = 16;

fn first(ports: &[String]) -> &[String] {
    &ports[..ports.len().min(NAMED)]
}

/// After a reconnect: how much of what Redis holds differed.
pub fn log_read_back(ports: usize, rewrite: &[String], app_missing: &[String]) {
    info!(
        ports,
        rewrite = rewrite.len(),
        first = ?first(rewrite),
        "redis read back after the reconnect: writing only what differs"
    );
    if !app_missing.is_empty() {
        warn!(
            count = app_missing.len(),
            first = ?first(app_missing),
            "APPL_DB PORT_TABLE lost ports orchagent knew (Redis restarted empty or flushed?); \
             STATE_DB is restored from the kernel, APPL_DB is not portsyncd's to restore"
        );
    }
}

/// An anti-entropy check ended: counted always, logged at warn when it repaired something.
pub fn account_check(
    metrics: &Metrics,
    log: &mut RateLimit,
    kernel: &[String],
    state_db: &[String],
) {
    metrics.resync_checks.inc();
    metrics.resync_repairs_kernel.add(kernel.len() as u64);
    metrics.resync_repairs_state_db.add(state_db.len() as u64);
    if kernel.is_empty() && state_db.is_empty() {
        debug!("anti-entropy check: kernel, STATE_DB and portsyncd agree");
        return;
    }
    if let Some(suppressed) = log.allow(Instant::now()) {
        warn!(
            kernel = kernel.len(),
            kernel_ports = ?first(kernel),
            state_db = state_db.len(),
            state_db_ports = ?first(state_db),
            suppressed,
            "anti-entropy repaired ports that differed from what portsyncd believed"
        );
    }
}
