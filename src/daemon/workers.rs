//! The Redis writer, on a thread of its own, talking to the loop through its control channel (the
//! netlink reader is in `reader.rs`, the store committer in `committer.rs`).

use crossbeam_channel::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, info, warn};

use crate::core::{ReadBack, Work, WorkResult};
use crate::metrics::Metrics;
use crate::sonic::{SonicDb, StateWrite};

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
        // Reconnects during start-up were counted by the caller.
        let mut reconnects_seen = db.reconnects();
        let mut pending_reconnect = false;
        let mut was_ok = true;
        for work in rx {
            faults::panic_point("redis");
            let result = execute(&mut db, &work, &metrics);
            let now = db.reconnects();
            let new_reconnects = now.saturating_sub(reconnects_seen);
            metrics.redis_reconnects.add(new_reconnects);
            reconnects_seen = now;
            // Reported with the first batch that succeeds after the reconnect.
            pending_reconnect |= new_reconnects > 0;
            let res = match result {
                Ok((known, read_back)) => {
                    if !was_ok {
                        info!("redis writes succeed again; outstanding writes re-sent");
                    }
                    was_ok = true;
                    WorkResult::Done { known, read_back }
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
            let reconnected = matches!(res, WorkResult::Done { .. }) && pending_reconnect;
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
        state: names.iter().cloned().zip(rows).collect(),
        app_known,
    })
}

type Answers = (Vec<(String, bool)>, Option<ReadBack>);

fn execute(
    db: &mut SonicDb,
    work: &Work,
    metrics: &Metrics,
) -> Result<Answers, crate::sonic::DbError> {
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
    if !work.writes.is_empty() {
        let writes: Vec<StateWrite> = work
            .writes
            .iter()
            .map(|(name, v)| match v {
                Some(s) => StateWrite::SetFields {
                    name: name.clone(),
                    fields: s.field_values(),
                },
                None => StateWrite::Del { name: name.clone() },
            })
            .collect();
        db.apply_state_writes(&writes)?;
        let dels = work.writes.iter().filter(|(_, v)| v.is_none()).count() as u64;
        metrics.state_writes_del.add(dels);
        metrics
            .state_writes_set
            .add(work.writes.len() as u64 - dels);
        for (name, v) in &work.writes {
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
        db.publish_port_init_done()?;
        info!("PortInitDone published: every configured port has a host interface");
    }
    if work.reconciled {
        db.write_warm_state("reconciled")?;
        info!("warm restart reconciled");
    }
    Ok((known, read_back))
}
