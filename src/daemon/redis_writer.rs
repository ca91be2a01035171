//! The Redis writer thread: takes the loop's `Work` batches one at a time, has them carried out
//! (`redis_work.rs`) and reports each result to the loop, with what Redis reconnects it saw.

use crossbeam_channel::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, info, warn};

use crate::core::{Work, WorkResult};
use crate::metrics::Metrics;
use crate::sonic::{DbError, SonicDb};

use super::handoff::Taker;
use super::input::Input;
use super::redis_work::{execute, Answers};
use crate::faults;
use crate::supervise::Supervisor;

/// Executes `Work` against Redis, one batch at a time, and reports each result.
pub fn redis_writer(
    sup: &Supervisor,
    mut db: SonicDb,
    rx: Taker<Work>,
    tx: Sender<Input>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    sup.spawn("redis", move || {
        // Reconnects during start-up were counted by the caller; its entry errors are counted here.
        let mut reconnects_seen = db.reconnects();
        count_entry_errors(&mut db, &metrics);
        let mut pending_reconnect = false;
        let mut was_ok = true;
        for work in rx {
            faults::panic_point("redis");
            let result = execute(&mut db, &work, &metrics);
            count_entry_errors(&mut db, &metrics);
            let now = db.reconnects();
            let new_reconnects = now.saturating_sub(reconnects_seen);
            metrics.redis_reconnects.add(new_reconnects);
            reconnects_seen = now;
            // Reported with the first batch that succeeds after the reconnect.
            pending_reconnect |= new_reconnects > 0;
            let res = outcome(result, &mut was_ok);
            let reconnected = !matches!(res, WorkResult::Failed) && pending_reconnect;
            if reconnected {
                pending_reconnect = false;
            }
            if tx
                .send(Input::WorkDone {
                    result: res,
                    reconnected,
                })
                .is_err()
            {
                break;
            }
        }
    })
}

/// Counts the entries the table layer could not use since the last call.
fn count_entry_errors(db: &mut SonicDb, metrics: &Metrics) {
    for (name, reason, n) in db.take_entry_errors() {
        metrics.redis_entry_errors.add(name, reason, n);
    }
}

/// The loop's view of a batch's answers; `was_ok` tracks whether the previous batch succeeded, so
/// that a failure and a recovery are logged once each.
fn outcome(result: Result<Answers, DbError>, was_ok: &mut bool) -> WorkResult {
    match result {
        Ok((known, read_back, rejected)) => {
            if !*was_ok {
                info!("redis writes succeed again; outstanding writes re-sent");
            }
            *was_ok = true;
            if rejected.is_empty() {
                WorkResult::Done { known, read_back }
            } else {
                // Logged and counted per key by the table layer; retried by the core.
                debug!(ports = ?rejected, "redis refused some STATE_DB writes");
                WorkResult::Partial {
                    known,
                    read_back,
                    rejected,
                }
            }
        }
        Err(e) => {
            if *was_ok {
                warn!(error = %e, "redis write failed; will retry with backoff");
            } else {
                debug!(error = %e, "redis write failed again");
            }
            *was_ok = false;
            WorkResult::Failed
        }
    }
}
