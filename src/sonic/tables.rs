//! The SONiC table operations portsyncd needs, over one [`Conn`] per database.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use redis::RedisResult;

use super::conn::{Conn, ConnOptions};
use super::dbconfig::{DbEndpoint, DbLayout};
use super::error::DbError;
use super::producer::ProducerStateTable;

/// CONFIG_DB port configuration table.
pub const CONFIG_PORT_TABLE: &str = "PORT";
/// APPL_DB and STATE_DB port table.
pub const PORT_TABLE: &str = "PORT_TABLE";
/// APPL_DB key announcing that every configured port was published.
pub const PORT_CONFIG_DONE: &str = "PortConfigDone";
/// APPL_DB key announcing that every host interface exists.
pub const PORT_INIT_DONE: &str = "PortInitDone";

/// One write to STATE_DB `PORT_TABLE|<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// `HSET PORT_TABLE|<name> f v ...`: sets these fields, leaves every other field alone.
    Set {
        /// Port name.
        name: String,
        /// Fields to set (at least one).
        fields: Vec<(String, String)>,
    },
    /// The same as `Set` for fields whose names are known in advance and whose values are mostly
    /// constants (`up`, `down`, `ok`): a write costs no allocation per field. The daemon's port
    /// writes take this form (in a storm, building four `String` pairs per write was a fifth of the
    /// Redis writer's CPU).
    SetFields {
        /// Port name.
        name: String,
        /// Fields to set (at least one).
        fields: Vec<(&'static str, Cow<'static, str>)>,
    },
    /// `DEL PORT_TABLE|<name>`.
    Del {
        /// Port name.
        name: String,
    },
}

fn refused_empty(name: &str) -> DbError {
    DbError::Refused(format!("STATE_DB write for {name} has no fields"))
}

/// Ports with their fields, as read from CONFIG_DB (field order: sorted by field name).
pub type PortConfig = BTreeMap<String, Vec<(String, String)>>;

/// Access to APPL_DB, CONFIG_DB and STATE_DB. Connects lazily; every method makes at most one
/// connect attempt per database and fails with a transient [`DbError`] while Redis is unreachable.
/// `Send`, so it can live on a dedicated writer thread.
pub struct SonicDb {
    pub(super) layout: DbLayout,
    pub(super) appl: Conn,
    pub(super) config: Conn,
    pub(super) state: Conn,
    port_producer: ProducerStateTable,
}

/// `<table><sep><key>` in the given database.
pub(super) fn db_key(ep: &DbEndpoint, table: &str, key: &str) -> String {
    format!("{table}{}{key}", ep.separator)
}

impl SonicDb {
    /// A handle with default timeouts (2 s) and backoff (100 ms doubling to 5 s). Does not connect.
    pub fn new(layout: DbLayout) -> Self {
        Self::with_options(layout, ConnOptions::default())
    }

    /// A handle with explicit connection options. Does not connect.
    pub fn with_options(layout: DbLayout, opts: ConnOptions) -> Self {
        SonicDb {
            appl: Conn::new("APPL_DB", layout.appl.clone(), opts.clone()),
            config: Conn::new("CONFIG_DB", layout.config.clone(), opts.clone()),
            state: Conn::new("STATE_DB", layout.state.clone(), opts),
            port_producer: ProducerStateTable::new(
                PORT_TABLE,
                &layout.appl.separator,
                layout.appl.id,
            ),
            layout,
        }
    }

    /// The layout in use.
    pub fn layout(&self) -> &DbLayout {
        &self.layout
    }

    /// Blocks until all three databases are connected, or `stop` is set ([`DbError::Stopped`]).
    pub fn wait_connected(&mut self, stop: &AtomicBool) -> Result<(), DbError> {
        self.appl.connect_blocking(stop)?;
        self.config.connect_blocking(stop)?;
        self.state.connect_blocking(stop)
    }

    /// Total reconnects over all databases (exported as `portsyncd_redis_reconnects_total`).
    pub fn reconnects(&self) -> u64 {
        self.appl.reconnects() + self.config.reconnects() + self.state.reconnects()
    }

    /// True if all three connections are currently held.
    pub fn is_connected(&self) -> bool {
        self.appl.is_connected() && self.config.is_connected() && self.state.is_connected()
    }

    /// PINGs all three databases (connecting if due): a cheap health check.
    pub fn ping(&mut self) -> Result<(), DbError> {
        for c in [&mut self.appl, &mut self.config, &mut self.state] {
            c.run("PING", |con| redis::cmd("PING").exec(con))?;
        }
        Ok(())
    }

    /// Every CONFIG_DB `PORT|<name>` with all its fields.
    pub fn read_config_ports(&mut self) -> Result<PortConfig, DbError> {
        let ep = self.layout.config.clone();
        let rows = self.config.run("read CONFIG_DB PORT table", |con| {
            read_table(con, &ep, CONFIG_PORT_TABLE)
        })?;
        Ok(rows
            .into_iter()
            .map(|(k, f)| (k, f.into_iter().collect()))
            .collect())
    }

    /// Every STATE_DB `PORT_TABLE|<name>` with all its fields.
    pub fn read_state_ports(
        &mut self,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, DbError> {
        let ep = self.layout.state.clone();
        self.state.run("read STATE_DB PORT_TABLE", |con| {
            read_table(con, &ep, PORT_TABLE)
        })
    }

    /// Every field of STATE_DB `PORT_TABLE|<name>` for each of `names`, in order, in one pipelined
    /// round trip (an empty map: no such key).
    pub fn read_state_port_rows(
        &mut self,
        names: &[String],
    ) -> Result<Vec<BTreeMap<String, String>>, DbError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let ep = self.layout.state.clone();
        self.state
            .run("HGETALL STATE_DB PORT_TABLE (pipelined)", |con| {
                let mut pipe = redis::pipe();
                for n in names {
                    pipe.cmd("HGETALL").arg(db_key(&ep, PORT_TABLE, n));
                }
                pipe.query(con)
            })
    }

    /// Publishes each port's fields verbatim to APPL_DB `PORT_TABLE` (ProducerStateTable protocol).
    /// A port with no fields is refused (nothing is written).
    pub fn publish_app_ports(&mut self, ports: &PortConfig) -> Result<(), DbError> {
        if let Some((name, _)) = ports.iter().find(|(_, f)| f.is_empty()) {
            return Err(DbError::Refused(format!(
                "port {name} has no fields; a ProducerStateTable set needs at least one"
            )));
        }
        let entries: Vec<(&str, &[(String, String)])> = ports
            .iter()
            .map(|(k, f)| (k.as_str(), f.as_slice()))
            .collect();
        let producer = &self.port_producer;
        let published = self.appl.run("publish APPL_DB PORT_TABLE ports", |con| {
            producer.set_many(con, &entries)
        })?;
        tracing::debug!(ports = ports.len(), published, "published ports to APPL_DB");
        Ok(())
    }

    fn producer_set(&mut self, key: &str, fields: &[(String, String)]) -> Result<(), DbError> {
        let producer = &self.port_producer;
        let op = format!("ProducerStateTable set {}", producer.table_key(key));
        self.appl.run(&op, |con| producer.set(con, key, fields))?;
        Ok(())
    }

    /// APPL_DB `PortConfigDone` with `count` = number of configured ports.
    pub fn publish_port_config_done(&mut self, count: usize) -> Result<(), DbError> {
        self.producer_set(PORT_CONFIG_DONE, &[("count".into(), count.to_string())])
    }

    /// APPL_DB `PortInitDone` with `lanes` = `0`.
    pub fn publish_port_init_done(&mut self) -> Result<(), DbError> {
        self.producer_set(PORT_INIT_DONE, &[("lanes".into(), "0".into())])
    }

    /// Whether APPL_DB `PORT_TABLE:<name>` exists (the port was configured and orchagent consumed it).
    pub fn app_port_exists(&mut self, name: &str) -> Result<bool, DbError> {
        let key = db_key(&self.layout.appl, PORT_TABLE, name);
        self.appl.run(&format!("EXISTS {key}"), |con| {
            redis::cmd("EXISTS").arg(&key).query(con)
        })
    }

    /// The subset of `names` whose APPL_DB `PORT_TABLE:<name>` exists, in one pipelined round trip.
    pub fn app_ports_existing(&mut self, names: &[String]) -> Result<BTreeSet<String>, DbError> {
        self.app_ports_matching(names, "EXISTS", None)
    }

    /// The subset of `names` whose APPL_DB `PORT_TABLE:<name>` has an `admin_status` field, in one
    /// pipelined round trip.
    pub fn app_ports_with_admin_status(
        &mut self,
        names: &[String],
    ) -> Result<BTreeSet<String>, DbError> {
        self.app_ports_matching(names, "HEXISTS", Some("admin_status"))
    }

    fn app_ports_matching(
        &mut self,
        names: &[String],
        cmd: &str,
        field: Option<&str>,
    ) -> Result<BTreeSet<String>, DbError> {
        if names.is_empty() {
            return Ok(BTreeSet::new());
        }
        let ep = self.layout.appl.clone();
        let answers: Vec<bool> =
            self.appl
                .run(&format!("{cmd} PORT_TABLE (pipelined)"), |con| {
                    let mut pipe = redis::pipe();
                    for n in names {
                        let c = pipe.cmd(cmd).arg(db_key(&ep, PORT_TABLE, n));
                        if let Some(f) = field {
                            c.arg(f);
                        }
                    }
                    pipe.query(con)
                })?;
        Ok(names
            .iter()
            .zip(answers)
            .filter(|(_, yes)| *yes)
            .map(|(n, _)| n.clone())
            .collect())
    }

    /// Whether APPL_DB `PORT_TABLE:<name>` has an `admin_status` field.
    pub fn app_port_has_admin_status(&mut self, name: &str) -> Result<bool, DbError> {
        let key = db_key(&self.layout.appl, PORT_TABLE, name);
        self.appl
            .run(&format!("HEXISTS {key} admin_status"), |con| {
                redis::cmd("HEXISTS")
                    .arg(&key)
                    .arg("admin_status")
                    .query(con)
            })
    }

    /// Applies STATE_DB `PORT_TABLE` writes in one MULTI/EXEC pipeline (one round trip). A `Set`
    /// with no fields is refused before anything is sent.
    pub fn apply_state_writes(&mut self, writes: &[StateWrite]) -> Result<(), DbError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for w in writes {
            match w {
                StateWrite::Set { name, fields } => {
                    let pairs = fields.iter().map(|(f, v)| (f.as_str(), v.as_str()));
                    self.queue_hset(&mut pipe, name, pairs)?;
                }
                StateWrite::SetFields { name, fields } => {
                    let pairs = fields.iter().map(|(f, v)| (*f, v.as_ref()));
                    self.queue_hset(&mut pipe, name, pairs)?;
                }
                StateWrite::Del { name } => {
                    pipe.cmd("DEL")
                        .arg(db_key(&self.layout.state, PORT_TABLE, name))
                        .ignore();
                }
            }
        }
        let op = format!("apply {} STATE_DB PORT_TABLE writes", writes.len());
        self.state.run(&op, |con| pipe.exec(con))
    }

    /// Adds `HSET PORT_TABLE|<name> f v ...` to `pipe`; refuses a write without fields.
    fn queue_hset<'a>(
        &self,
        pipe: &mut redis::Pipeline,
        name: &str,
        fields: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), DbError> {
        if fields.len() == 0 {
            return Err(refused_empty(name));
        }
        let cmd = pipe
            .cmd("HSET")
            .arg(db_key(&self.layout.state, PORT_TABLE, name));
        for (f, v) in fields {
            cmd.arg(f).arg(v);
        }
        cmd.ignore();
        Ok(())
    }

    /// CONFIG_DB `DEVICE_METADATA|localhost` `switch_type`, if set.
    pub fn switch_type(&mut self) -> Result<Option<String>, DbError> {
        let key = db_key(&self.layout.config, "DEVICE_METADATA", "localhost");
        self.config.run(&format!("HGET {key} switch_type"), |con| {
            redis::cmd("HGET").arg(&key).arg("switch_type").query(con)
        })
    }
}

/// Reads every `<table><sep>*` hash: SCAN for the keys, then all HGETALLs in one pipeline.
fn read_table(
    con: &mut redis::Connection,
    ep: &DbEndpoint,
    table: &str,
) -> RedisResult<BTreeMap<String, BTreeMap<String, String>>> {
    let prefix = format!("{table}{}", ep.separator);
    let pattern = format!("{}*", glob_escape(&prefix));
    let mut keys = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let keys: Vec<String> = keys.into_iter().collect();
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("HGETALL").arg(k);
    }
    let hashes: Vec<BTreeMap<String, String>> = pipe.query(con)?;
    Ok(keys
        .into_iter()
        .zip(hashes)
        .filter_map(|(k, h)| {
            // A key deleted between SCAN and HGETALL reads as an empty hash: it no longer exists.
            let name = k.strip_prefix(&prefix)?.to_string();
            (!name.is_empty() && !h.is_empty()).then_some((name, h))
        })
        .collect())
}

/// Escapes Redis glob metacharacters so `s` matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_escaping() {
        assert_eq!(glob_escape("PORT|"), "PORT|");
        assert_eq!(glob_escape("A*[b]?\\"), "A\\*\\[b\\]\\?\\\\");
    }

    #[test]
    fn sonicdb_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<SonicDb>();
    }
}
