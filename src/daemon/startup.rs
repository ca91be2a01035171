//! Start-up step 3, restore against Redis: warm or cold by SONiC's rule, the cold-start APPL_DB
//! writes, and the baseline (what STATE_DB is believed to hold) for the reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::core::baseline::{self, Baseline, BaselineInputs};
use crate::core::{BaselineSource, CoreConfig, PortStatus, StartMode};
use crate::metrics::Metrics;
use crate::sonic::warm::next_restore_count;
use crate::sonic::{DbError, ErrorClass, PortConfig, SonicDb};
use crate::store::Recovered;

use super::error::DaemonError;

/// What start-up decided.
#[derive(Debug)]
pub struct Startup {
    pub core: CoreConfig,
    pub baseline_source: BaselineSource,
    /// STATE_DB rows of qualifying names that hold no valid entry (see
    /// [`baseline::state_db_unreadable`]): deleted or rewritten after the first dump.
    pub unreadable: BTreeSet<String>,
}

/// Waits between start-up attempts while Redis is away.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, retrying errors that may heal (Redis away or still loading) with
/// backoff; gives up on other errors (a command Redis refuses, a reply of an unexpected shape: the
/// same request would get the same answer) or when `stop` is set. Per-entry problems (a key of
/// another type, bytes that are not UTF-8) never get here: the table functions skip and count them.
pub fn retry<T>(
    stop: &AtomicBool,
    what: &str,
    mut op: impl FnMut() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut logged = false;
    loop {
        match op() {
            Ok(v) => {
                if logged {
                    info!(step = what, "redis reachable again, start-up continues");
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() && !stop.load(Ordering::Relaxed) => {
                if !logged {
                    warn!(step = what, error = %e, "redis not reachable during start-up; retrying with backoff");
                    logged = true;
                }
                std::thread::sleep(backoff.next_delay());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Cold or warm, by SONiC's rule; increments `restore_count` on a warm start.
fn decide_mode(db: &mut SonicDb, stop: &AtomicBool) -> Result<bool, DbError> {
    let enabled = retry(stop, "read WARM_RESTART_ENABLE_TABLE", || db.warm_enabled())?;
    let count = if enabled {
        retry(stop, "read restore_count", || db.read_restore_count())?
    } else {
        None
    };
    match count {
        Some(n) => {
            let next = next_restore_count(n).unwrap_or_else(|| {
                warn!(
                    restore_count = n,
                    "warm-restart restore_count cannot grow (a foreign or corrupted value): \
                     counting again from 1"
                );
                1
            });
            // A refused write (the key holds another type) was counted and logged: the warm-restart
            // table is other tools' bookkeeping, start-up goes on without it.
            retry(stop, "write restore_count", || db.write_restore_count(next))?;
            retry(stop, "write warm state", || {
                db.write_warm_state("initialized")
            })?;
            info!(restore_count = next, "warm start");
            Ok(true)
        }
        None => {
            if enabled {
                warn!("warm restart enabled but restore_count is missing (STATE_DB flushed?): cold start");
            }
            retry(stop, "write restore_count", || db.write_restore_count(0))?;
            retry(stop, "write warm state", || db.write_warm_state("disabled"))?;
            info!("cold start");
            Ok(false)
        }
    }
}

fn statuses_of(recovered: &Recovered) -> Option<BTreeMap<String, PortStatus>> {
    let snap = recovered.snapshot.as_ref()?;
    Some(
        super::saved_names::publishable_saved_ports(snap)
            .map(|(name, r)| {
                let status = PortStatus::from_fields(&r.published).unwrap_or(PortStatus {
                    admin_up: r.admin_up,
                    oper_up: r.oper_up,
                    mtu: r.mtu,
                });
                (name.clone(), status)
            })
            .collect(),
    )
}

/// A cold start's APPL_DB writes: the configured ports, then `PortConfigDone`. Returns the start's
/// mode (old netdevs are set admin-down, except on a DPU) and the ports APPL_DB already held with an
/// admin status.
fn cold_start(
    db: &mut SonicDb,
    stop: &AtomicBool,
    config_ports: &PortConfig,
    names: &[String],
) -> Result<(StartMode, BTreeSet<String>), DbError> {
    let already_initialised = retry(stop, "read APPL_DB admin_status", || {
        db.app_ports_with_admin_status(names)
    })?;
    let refused = retry(stop, "publish APPL_DB PORT_TABLE", || {
        db.publish_app_ports(config_ports)
    })?;
    let done = retry(stop, "publish PortConfigDone", || {
        db.publish_port_config_done(config_ports.len())
    });
    match done {
        Ok(()) => info!(
            ports = config_ports.len(),
            refused, "published CONFIG_DB ports to APPL_DB, PortConfigDone"
        ),
        // APPL_DB refuses the ProducerStateTable write itself (its key set or staging hash holds
        // another type): nothing portsyncd can repair, and a restart would not either. STATE_DB
        // is still served.
        Err(e) if e.class() == ErrorClass::Command => error!(
            error = %e,
            "APPL_DB refused PortConfigDone; going on without it"
        ),
        Err(e) => return Err(e),
    }
    let dpu =
        retry(stop, "read switch_type", || db.switch_type())?.as_deref() == Some(b"dpu".as_slice());
    Ok((StartMode::Cold { old_netdev: !dpu }, already_initialised))
}

/// The baseline (what STATE_DB is believed to hold): from the saved state, or from what STATE_DB
/// holds now, which also checks that the saved state did not lag; and the STATE_DB rows that hold no
/// valid entry.
fn decide_baseline(
    db: &mut SonicDb,
    stop: &AtomicBool,
    warm: bool,
    recovered: &Recovered,
) -> Result<(Baseline, BTreeSet<String>), DbError> {
    let state_rows = retry(stop, "read STATE_DB PORT_TABLE", || db.read_state_ports())?;
    let unreadable = baseline::state_db_unreadable(&state_rows);
    let b = baseline::decide(BaselineInputs {
        warm,
        saved: statuses_of(recovered),
        state_db: baseline::state_db_statuses(&state_rows),
    });
    match b.source {
        BaselineSource::Store => info!(
            ports = b.ports.len(),
            source = ?recovered.source,
            generation = recovered.generation,
            corrected_from_state_db = b.corrected,
            added_from_state_db = b.added,
            "warm-start baseline from the saved state"
        ),
        BaselineSource::StateDb => warn!(
            ports = b.ports.len(),
            stale = recovered.stale,
            "no usable saved state: warm-start baseline read from STATE_DB PORT_TABLE"
        ),
        BaselineSource::None => {}
    }
    Ok((b, unreadable))
}

/// Restores from the saved state and Redis ([`run`]) and counts the start's mode; None when `stop`
/// came first.
pub fn restore(
    db: &mut SonicDb,
    recovered: &Recovered,
    cfg: &Config,
    stop: &AtomicBool,
    metrics: &Metrics,
) -> Result<Option<Startup>, DaemonError> {
    let startup = match run(db, recovered, cfg.eoiu_timeout_secs, stop) {
        Ok(s) => s,
        Err(DbError::Stopped { .. }) => return Ok(None),
        Err(e) if stop.load(Ordering::Relaxed) => {
            info!(error = %e, "stopped during start-up");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if startup.core.mode == StartMode::Warm {
        metrics.starts_warm.inc();
    } else {
        metrics.starts_cold.inc();
    }
    Ok(Some(startup))
}

/// Everything up to (not including) the netlink loop.
pub fn run(
    db: &mut SonicDb,
    recovered: &Recovered,
    eoiu_timeout_opt: Option<u64>,
    stop: &AtomicBool,
) -> Result<Startup, DbError> {
    let warm = decide_mode(db, stop)?;
    let config_ports = retry(stop, "read CONFIG_DB PORT", || db.read_config_ports())?;
    let configured: BTreeSet<String> = config_ports.keys().cloned().collect();

    let timer = match eoiu_timeout_opt {
        Some(n) => n,
        None => retry(stop, "read portsyncd_timer", || db.read_warm_timer())?.unwrap_or(10),
    };
    let eoiu_timeout = Some(Duration::from_secs(timer));

    let names: Vec<String> = configured.iter().cloned().collect();
    let (mode, already_initialised) = if warm {
        (StartMode::Warm, BTreeSet::new())
    } else {
        cold_start(db, stop, &config_ports, &names)?
    };

    let app_known = retry(stop, "read APPL_DB PORT_TABLE", || {
        db.app_ports_existing(&names)
    })?;

    let (b, unreadable) = decide_baseline(db, stop, warm, recovered)?;
    if warm {
        retry(stop, "write warm state", || db.write_warm_state("restored"))?;
    }
    Ok(Startup {
        core: CoreConfig {
            mode,
            configured,
            already_initialised,
            app_known,
            baseline: b.ports,
            eoiu_timeout,
        },
        baseline_source: b.source,
        unreadable,
    })
}
