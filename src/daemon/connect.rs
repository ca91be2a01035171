//! Start-up step 2, connect to Redis: wait for the database layout (the database container may still
//! be starting), follow CONFIG_DB `LOGGER|portsyncd`, and connect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sonic::logger::CountEntryError;
use crate::sonic::{DbConfigError, DbError, DbLayout, SonicDb};

use super::error::DaemonError;

/// Waits between reads of a database layout that is not there yet.
const LAYOUT_RETRY_MIN: Duration = Duration::from_millis(200);
const LAYOUT_RETRY_MAX: Duration = Duration::from_secs(5);

/// The connected databases; None when `stop` was set first.
pub fn connect(
    cfg: &Config,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<Metrics>,
) -> Result<Option<SonicDb>, DaemonError> {
    let Some(layout) = layout(cfg, stop)? else {
        return Ok(None);
    };
    // swss-common's Logger table: registered and followed on a thread of its own (never joined: it
    // holds no state and sees `stop` within half a second).
    let m = Arc::clone(metrics);
    let count: CountEntryError =
        Arc::new(move |db, reason| m.redis_entry_errors.add(db, reason, 1));
    if let Err(e) =
        crate::sonic::logger::spawn(layout.config.clone(), Arc::clone(stop), Some(count))
    {
        warn!(error = %e, "cannot follow CONFIG_DB LOGGER|portsyncd");
    }
    let mut db = SonicDb::new(layout);
    match db.wait_connected(stop) {
        Ok(()) => Ok(Some(db)),
        Err(DbError::Stopped { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The database layout; files that are missing or half-written are waited for (the database
/// container may still be starting), a value the options got wrong is an error.
fn layout(cfg: &Config, stop: &AtomicBool) -> Result<Option<DbLayout>, DaemonError> {
    let mut logged = false;
    let mut backoff = Backoff::new(LAYOUT_RETRY_MIN, LAYOUT_RETRY_MAX);
    loop {
        let res = match &cfg.redis_url {
            Some(url) => DbLayout::from_redis_url(url),
            None => DbLayout::from_config_file(&cfg.db_config, cfg.namespace.as_deref()),
        };
        match res {
            Ok(l) => return Ok(Some(l)),
            Err(e @ DbConfigError::NamespaceNotFound { .. }) => {
                let ns = cfg.namespace.clone().unwrap_or_default();
                let msg = format!("--namespace {ns}: {e}");
                return Err(DaemonError::InvalidOption(crate::config::printable(&msg)));
            }
            Err(e @ DbConfigError::BadUrl { .. }) => {
                return Err(DaemonError::InvalidOption(format!("--redis-url: {e}")));
            }
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if !logged {
                    warn!(error = %e, "database layout not available yet; retrying");
                    logged = true;
                }
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}
