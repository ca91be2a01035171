//! Start-up step 1, open the state store: the saved state and lifetime counters it recovered, or a
//! degraded cold start when it is unusable, and the metrics built from those counters.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Degraded, Recovered, RecoverySource, Store, StoreConfig, StoreError};

use super::error::DaemonError;

/// The store as start-up left it (the committer takes it over).
pub struct StoreStart {
    pub store: Option<Store>,
    /// Why `store` is None.
    pub degraded: Option<Degraded>,
}

/// What opening the store gave.
pub struct Opened {
    pub store: StoreStart,
    pub store_cfg: StoreConfig,
    /// The saved state (for the warm-start baseline) and the recovery ladder's report.
    pub recovered: Recovered,
    /// Built from the saved lifetime counters.
    pub metrics: Arc<Metrics>,
}

/// The store configuration the options describe.
pub fn store_config(cfg: &Config) -> StoreConfig {
    StoreConfig {
        dir: cfg.state_dir.clone(),
        generations: cfg.generations(),
        recovery: cfg.state_recovery,
        max_age: cfg.state_max_age(),
        json_export: cfg.json_export_path(),
        cache_capacity_bytes: 2 << 20,
    }
}

/// Opens the store. The only fatal store condition is another live portsyncd holding the lock;
/// anything else degrades to running without persistence (and the committer retries the open).
pub fn open(cfg: &Config) -> Result<Opened, DaemonError> {
    let store_cfg = store_config(cfg);
    let (store, recovered) = match Store::open(store_cfg.clone()) {
        Ok((s, r)) => (
            StoreStart {
                store: Some(s),
                degraded: None,
            },
            r,
        ),
        Err(e @ StoreError::InUse { .. }) => return Err(e.into()),
        Err(e) => degraded(&e),
    };
    let metrics = Arc::new(Metrics::from_saved(&recovered.counters));
    if store.store.is_none() {
        metrics.state_load_failures.inc();
        metrics.recoveries_cold_start.inc();
    }
    account_recovery(&recovered, &metrics);
    Ok(Opened {
        store,
        store_cfg,
        recovered,
        metrics,
    })
}

/// A store that cannot be opened: logged, and a cold start without it.
fn degraded(e: &StoreError) -> (StoreStart, Recovered) {
    let reason = e.degraded();
    if reason == Degraded::NewerSchema {
        error!(error = %e, "state store written by a newer portsyncd: left untouched; running without persistence");
    } else {
        error!(error = %e, reason = reason.label(), "state store unusable; running without persistence (cold start), reopen retried with backoff");
    }
    let cold = Recovered::cold(Vec::new());
    (
        StoreStart {
            store: None,
            degraded: Some(reason),
        },
        cold,
    )
}

/// Counts and logs the recovery ladder's steps.
fn account_recovery(rec: &Recovered, metrics: &Metrics) {
    // The store logs each step once, with its reason; here they are counted.
    metrics.state_load_failures.add(rec.steps.len() as u64);
    match rec.source {
        RecoverySource::Newest => {}
        RecoverySource::PreviousGeneration => metrics.recoveries_previous_generation.inc(),
        RecoverySource::JsonExport => metrics.recoveries_json_export.inc(),
        RecoverySource::ColdStart if !rec.steps.is_empty() || rec.stale => {
            metrics.recoveries_cold_start.inc()
        }
        RecoverySource::ColdStart => {}
    }
    if rec.stale {
        warn!(saved_at = ?rec.saved_at, "saved state is older than the maximum age: not used for a warm start");
    }
    info!(source = ?rec.source, generation = rec.generation, ports = rec.snapshot.as_ref().map_or(0, |s| s.ports.len()), "state store opened");
}
