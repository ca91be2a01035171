//! The Redis writer, on a thread of its own, talking to the loop through its control channel (the
//! netlink reader is in `reader.rs`, the store committer in `committer.rs`).

use crossbeam_channel::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, error, info, warn};

use crate::core::{ReadBack, StateRow, Work, WorkResult};
use crate::metrics::Metrics;
use crate::sonic::{DbError, ErrorClass, SonicDb};

use super::faults;
use super::input::Input;
use super::supervise::Supervisor;

/// Executes `Work` against Redis, one batch at a time, and reports each result.
pub fn redis_writer(
    sup: &Supervisor,
    mut db: SonicDb,
    rx: super::handoff::Taker<Work>,
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
            let res = match result {
                Ok((known, read_back, rejected)) => {
                    if !was_ok {
                        info!("redis writes succeed again; outstanding writes re-sent");
                    }
                    was_ok = true;
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
                    if was_ok {
                        warn!(error = %e, "redis write failed; will retry with backoff");
                    } else {
                        debug!(error = %e, "redis write failed again");
                    }
                    was_ok = false;
                    WorkResult::Failed
                }
            };
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

/// Reads what Redis holds for `names`: one pipelined round trip per database.
fn read_back(db: &mut SonicDb, names: &[String]) -> Result<ReadBack, crate::sonic::DbError> {
    let rows = db.read_state_port_rows(names)?;
    let app_known = db.app_ports_existing(names)?;
    debug!(
        ports = names.len(),
        "read back STATE_DB and APPL_DB PORT_TABLE"
    );
    Ok(ReadBack {
        state: names
            .iter()
            .cloned()
            .zip(rows)
            .map(|(n, row)| (n, row.map_or(StateRow::Unreadable, StateRow::Fields)))
            .collect(),
        app_known,
    })
}

/// Counts the entries the table layer could not use since the last call.
fn count_entry_errors(db: &mut SonicDb, metrics: &Metrics) {
    for (name, reason, n) in db.take_entry_errors() {
        metrics.redis_entry_errors.add(name, reason, n);
    }
}

/// The checks' answers, the read-back, and the ports whose STATE_DB write Redis refused.
type Answers = (Vec<(String, bool)>, Option<ReadBack>, Vec<String>);

fn execute(db: &mut SonicDb, work: &Work, metrics: &Metrics) -> Result<Answers, DbError> {
    let existing = db.app_ports_existing(&work.checks)?;
    let known = work
        .checks
        .iter()
        .map(|n| (n.clone(), existing.contains(n)))
        .collect();
    let read_back = match &work.read_back {
        Some(names) => Some(read_back(db, names)?),
        None => None,
    };
    let mut rejected = Vec::new();
    if !work.writes.is_empty() {
        // Encoded straight from the batch (no per-write command, key or field strings).
        let refused = db.apply_state_batch(|b| {
            for (name, v) in &work.writes {
                match v {
                    Some(s) => {
                        let mut mtu = [0u8; 10];
                        b.hset(name, s.field_strs(&mut mtu).into_iter());
                    }
                    None => b.del(name),
                }
            }
        })?;
        for i in refused {
            if let Some((name, _)) = work.writes.get(i) {
                if !rejected.contains(name) {
                    rejected.push(name.clone());
                }
            }
        }
        let landed = || work.writes.iter().filter(|(n, _)| !rejected.contains(n));
        let dels = landed().filter(|(_, v)| v.is_none()).count();
        let sets = landed().count().saturating_sub(dels);
        metrics.state_writes_del.add(dels as u64);
        metrics.state_writes_set.add(sets as u64);
        for (name, v) in landed() {
            match v {
                Some(s) => {
                    debug!(ifname = %name, admin = s.admin_up, oper = s.oper_up, mtu = s.mtu, "STATE_DB PORT_TABLE set");
                }
                None => {
                    info!(ifname = %name, "STATE_DB PORT_TABLE entry deleted");
                }
            }
        }
    }
    if work.port_init_done {
        match db.publish_port_init_done() {
            Ok(()) => info!("PortInitDone published: every configured port has a host interface"),
            // APPL_DB refuses the ProducerStateTable write itself (its key set or staging hash holds
            // another type): not portsyncd's to repair, and retrying would not help either.
            Err(e) if e.class() == ErrorClass::Command => {
                error!(error = %e, "APPL_DB refused PortInitDone; going on without it");
            }
            Err(e) => return Err(e),
        }
    }
    if work.reconciled {
        // A refused write (the key holds another type) was counted and logged by the table layer.
        if db.write_warm_state("reconciled")? {
            info!("warm restart reconciled");
        }
    }
    Ok((known, read_back, rejected))
}
