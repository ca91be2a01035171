//! A model of the three SONiC databases portsyncd touches, holding typed keys, with the faults of
//! the failure model: a stall (SIGSTOP), a dropped connection, a restart that loses everything, and
//! per-key command errors (a key of another type: WRONGTYPE). An orchagent stand-in consumes the
//! ProducerStateTable writes into `PORT_TABLE:<name>`.
//!
//! Key spelling follows SONiC: APPL_DB `PORT_TABLE:<name>` (separator `:`), STATE_DB
//! `PORT_TABLE|<name>`, `WARM_RESTART_TABLE|portsyncd`, `WARM_RESTART_ENABLE_TABLE|system`,
//! CONFIG_DB `PORT|<name>`.

use std::collections::{BTreeMap, BTreeSet};

use portsyncd::core::{PortStatus, ReadBack, StateRow, Work};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Str(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
}

pub type Db = BTreeMap<String, Val>;

/// One STATE_DB `PORT_TABLE` write that landed (what MONITOR would show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// When the daemon sent it.
    pub sent_ms: u64,
    /// The daemon incarnation that sent it.
    pub incarnation: u64,
    pub name: String,
    /// `Some`: HSET of portsyncd's four fields; `None`: DEL.
    pub set: Option<PortStatus>,
}

#[derive(Debug, Default)]
pub struct Redis {
    pub appl: Db,
    pub config: Db,
    pub state: Db,
    /// Bumped whenever every connection is cut (a drop, a restart).
    pub epoch: u64,
    /// Stalled (SIGSTOP) until this instant (ms).
    pub stalled_until: Option<u64>,
    /// Down (restarting) until this instant (ms).
    pub down_until: Option<u64>,
    /// STATE_DB `PORT_TABLE` writes of the daemon that landed since the last drain.
    pub landed: Vec<Landed>,
}

pub fn state_port_key(name: &str) -> String {
    format!("PORT_TABLE|{name}")
}
pub fn app_port_key(name: &str) -> String {
    format!("PORT_TABLE:{name}")
}
pub const WARM_KEY: &str = "WARM_RESTART_TABLE|portsyncd";
pub const WARM_ENABLE_KEY: &str = "WARM_RESTART_ENABLE_TABLE|system";
const KEY_SET: &str = "PORT_TABLE_KEY_SET";

fn hset(db: &mut Db, key: &str, fields: &[(&str, String)]) -> bool {
    let v = db
        .entry(key.to_string())
        .or_insert_with(|| Val::Hash(BTreeMap::new()));
    match v {
        Val::Hash(h) => {
            for (f, x) in fields {
                h.insert(f.as_bytes().to_vec(), x.as_bytes().to_vec());
            }
            true
        }
        _ => false, // WRONGTYPE
    }
}

fn hget(db: &Db, key: &str, field: &str) -> Option<Vec<u8>> {
    match db.get(key) {
        Some(Val::Hash(h)) => h.get(field.as_bytes()).cloned(),
        _ => None,
    }
}

/// A value, readable (bytes shown lossily).
pub fn show(v: &Val) -> String {
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match v {
        Val::Hash(h) => format!(
            "{{{}}}",
            h.iter()
                .map(|(f, x)| format!("{}={:?}", t(f), t(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Val::Str(s) => format!("string {:?}", t(s)),
        Val::Set(s) => format!("set of {}", s.len()),
    }
}

/// What the STATE_DB entry of `name` holds, as portsyncd's four fields.
pub fn state_status(r: &Redis, name: &str) -> Option<Result<PortStatus, String>> {
    match r.state.get(&state_port_key(name))? {
        Val::Hash(h) => Some(PortStatus::from_raw(h).ok_or_else(|| format!("{h:?}"))),
        other => Some(Err(format!("{other:?}"))),
    }
}

impl Redis {
    pub fn up(&self, t: u64) -> bool {
        self.down_until.is_none_or(|d| t >= d) && self.stalled_until.is_none_or(|s| t >= s)
    }

    /// ProducerStateTable `set`: the staging hash, the key set (orchagent consumes both).
    pub fn producer_set(&mut self, key: &str, fields: &[(&str, String)]) -> bool {
        if !hset(&mut self.appl, &format!("_PORT_TABLE:{key}"), fields) {
            return false;
        }
        match self
            .appl
            .entry(KEY_SET.to_string())
            .or_insert_with(|| Val::Set(BTreeSet::new()))
        {
            Val::Set(s) => {
                s.insert(key.as_bytes().to_vec());
                true
            }
            _ => false,
        }
    }

    /// orchagent: moves every staged entry into `PORT_TABLE:<key>`.
    pub fn orchagent_consume(&mut self) {
        let Some(Val::Set(keys)) = self.appl.remove(KEY_SET) else {
            return;
        };
        for k in keys {
            let k = String::from_utf8_lossy(&k).into_owned();
            if let Some(Val::Hash(staged)) = self.appl.remove(&format!("_PORT_TABLE:{k}")) {
                let dst = self
                    .appl
                    .entry(app_port_key(&k))
                    .or_insert_with(|| Val::Hash(BTreeMap::new()));
                if let Val::Hash(h) = dst {
                    h.extend(staged);
                }
            }
        }
    }

    pub fn orchagent_pending(&self) -> bool {
        self.appl.contains_key(KEY_SET)
    }

    pub fn app_exists(&self, name: &str) -> bool {
        self.appl.contains_key(&app_port_key(name))
    }

    /// The restart that loses everything: APPL_DB and STATE_DB empty (CONFIG_DB is loaded from
    /// config_db.json again by the database container's start), every connection cut.
    pub fn restart_empty(&mut self, t: u64, down_ms: u64) {
        self.appl.clear();
        self.state.clear();
        self.epoch += 1;
        self.stalled_until = None;
        self.down_until = Some(t + down_ms);
    }

    pub fn drop_connections(&mut self) {
        self.epoch += 1;
    }

    // ----- warm-restart tables (sonic/warm.rs semantics) ------------------------------------------

    pub fn warm_enabled(&self) -> bool {
        hget(&self.state, WARM_ENABLE_KEY, "enable").as_deref() == Some(b"true".as_slice())
    }

    pub fn set_warm_enabled(&mut self, on: bool) {
        let v = if on { "true" } else { "false" };
        hset(
            &mut self.state,
            WARM_ENABLE_KEY,
            &[("enable", v.to_string())],
        );
    }

    pub fn restore_count(&self) -> Option<u64> {
        let v = hget(&self.state, WARM_KEY, "restore_count")?;
        std::str::from_utf8(&v).ok()?.parse().ok()
    }

    pub fn warm_state(&self) -> Option<String> {
        hget(&self.state, WARM_KEY, "state").map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn write_warm(&mut self, field: &str, v: String) {
        hset(&mut self.state, WARM_KEY, &[(field, v)]);
    }
}

/// Planted bugs of the Redis edge (test-only switches: each must make an invariant fail).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeBugs {
    /// An HSET whose MTU is 1500 is not sent, yet reported landed (a skipped write).
    pub skip_write: bool,
    /// Every HSET is preceded by a DEL of the key (a port "re-created" on every change).
    pub del_before_set: bool,
}

/// The answers of one batch that ran: checks, read-back, rejected ports.
pub type Answers = (Vec<(String, bool)>, Option<ReadBack>, Vec<String>);

/// Runs the stages of `work` against the model, in the order of `daemon::redis_work::execute`:
/// checks, read-back, the STATE_DB writes (one MULTI/EXEC: all or nothing), PortInitDone,
/// the warm state. `stages` < 3 cuts the batch after that many write stages (a dropped connection:
/// what was sent before the cut landed).
pub fn execute(
    r: &mut Redis,
    work: &Work,
    stages: usize,
    bugs: EdgeBugs,
    sent_ms: u64,
    incarnation: u64,
) -> Answers {
    let known = work
        .checks
        .iter()
        .map(|n| (n.clone(), r.app_exists(n)))
        .collect();
    let read_back = work.read_back.as_ref().map(|names| ReadBack {
        state: names
            .iter()
            .map(|n| {
                let row = match r.state.get(&state_port_key(n)) {
                    None => StateRow::default(),
                    Some(Val::Hash(h)) => StateRow::Fields(h.clone()),
                    Some(_) => StateRow::Unreadable,
                };
                (n.clone(), row)
            })
            .collect(),
        app_known: names.iter().filter(|n| r.app_exists(n)).cloned().collect(),
    });
    let mut rejected = Vec::new();
    if stages >= 1 {
        for (name, v) in &work.writes {
            let key = state_port_key(name);
            match v {
                Some(s) => {
                    if bugs.skip_write && s.mtu == 1500 {
                        continue;
                    }
                    if bugs.del_before_set {
                        r.state.remove(&key);
                        r.landed.push(Landed {
                            sent_ms,
                            incarnation,
                            name: name.clone(),
                            set: None,
                        });
                    }
                    let fields: Vec<(&str, String)> = s
                        .field_values()
                        .into_iter()
                        .map(|(f, v)| (f, v.into_owned()))
                        .collect();
                    if hset(&mut r.state, &key, &fields) {
                        r.landed.push(Landed {
                            sent_ms,
                            incarnation,
                            name: name.clone(),
                            set: Some(*s),
                        });
                    } else if !rejected.contains(name) {
                        rejected.push(name.clone());
                    }
                }
                None => {
                    r.state.remove(&key);
                    r.landed.push(Landed {
                        sent_ms,
                        incarnation,
                        name: name.clone(),
                        set: None,
                    });
                }
            }
        }
    }
    if stages >= 2 && work.port_init_done {
        r.producer_set("PortInitDone", &[("lanes", "0".to_string())]);
    }
    if stages >= 3 && work.reconciled {
        r.write_warm("state", "reconciled".to_string());
    }
    (known, read_back, rejected)
}
