//! What one `Work` batch does to Redis, in order: the APPL_DB checks, the read-back, the STATE_DB
//! writes, `PortInitDone`, the warm-restart state. The writer thread (`redis_writer.rs`) runs it.

use tracing::{debug, error, info};

use crate::core::{ReadBack, StateRow, Work};
use crate::metrics::Metrics;
use crate::sonic::{DbError, ErrorClass, SonicDb};

/// Reads what Redis holds for `names`: one pipelined round trip per database.
fn read_back(db: &mut SonicDb, names: &[String]) -> Result<ReadBack, DbError> {
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

/// The checks' answers, the read-back, and the ports whose STATE_DB write Redis refused.
pub type Answers = (Vec<(String, bool)>, Option<ReadBack>, Vec<String>);

/// Carries `work` out against Redis, stage by stage; an error of a stage ends the batch there.
pub fn execute(db: &mut SonicDb, work: &Work, metrics: &Metrics) -> Result<Answers, DbError> {
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
    let rejected = if work.writes.is_empty() {
        Vec::new()
    } else {
        write_state(db, work, metrics)?
    };
    if work.port_init_done {
        publish_port_init_done(db)?;
    }
    if work.reconciled {
        // A refused write (the key holds another type) was counted and logged by the table layer.
        if db.write_warm_state("reconciled")? {
            info!("warm restart reconciled");
        }
    }
    Ok((known, read_back, rejected))
}

/// Writes the batch's STATE_DB `PORT_TABLE` sets and deletes; returns the ports whose write Redis
/// refused (each once), counts and logs the others.
fn write_state(db: &mut SonicDb, work: &Work, metrics: &Metrics) -> Result<Vec<String>, DbError> {
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
    let mut rejected = Vec::new();
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
    Ok(rejected)
}

/// Publishes `PortInitDone`; a refusal of APPL_DB is logged and gone past.
fn publish_port_init_done(db: &mut SonicDb) -> Result<(), DbError> {
    match db.publish_port_init_done() {
        Ok(()) => info!("PortInitDone published: every configured port has a host interface"),
        // APPL_DB refuses the ProducerStateTable write itself (its key set or staging hash holds
        // another type): not portsyncd's to repair, and retrying would not help either.
        Err(e) if e.class() == ErrorClass::Command => {
            error!(error = %e, "APPL_DB refused PortInitDone; going on without it");
        }
        Err(e) => return Err(e),
    }
    Ok(())
}
