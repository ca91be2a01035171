//! The SONiC table operations portsyncd needs, over one [`Conn`] per database.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

use redis::{ConnectionLike, Value};

use super::conn::{Conn, ConnOptions};
use super::dbconfig::{DbEndpoint, DbLayout};
use super::error::{DbError, EntryErrorReason, EntryErrors};
use super::producer::ProducerStateTable;
use super::reply::{self, RawHash};

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

/// Ports with their fields, as read from CONFIG_DB (field order: sorted by field name). Fields and
/// values are bytes, copied to APPL_DB verbatim; only the port name must be text.
pub type PortConfig = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

/// Access to APPL_DB, CONFIG_DB and STATE_DB. Connects lazily; every method makes at most one
/// connect attempt per database and fails with a transient [`DbError`] while Redis is unreachable.
/// `Send`, so it can live on a dedicated writer thread.
pub struct SonicDb {
    pub(super) layout: DbLayout,
    pub(super) appl: Conn,
    pub(super) config: Conn,
    pub(super) state: Conn,
    port_producer: ProducerStateTable,
    /// Entries that could not be used, since the owner last took the counts.
    pub(super) entry_errors: EntryErrors,
    /// The last STATE_DB batch's encoded commands and each write's key (its bytes in the buffer)
    /// and kind (true: DEL), kept for the next batch.
    state_buf: Vec<u8>,
    state_keys: Vec<(std::ops::Range<usize>, bool)>,
}

/// `MULTI` and `EXEC`, encoded.
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
/// Largest STATE_DB batch buffer kept between batches (a storm's batches take a few KiB; a cold
/// start's first batch, one write per port, is let go).
const STATE_BUF_KEEP: usize = 64 << 10;

/// The STATE_DB `PORT_TABLE` writes of one MULTI/EXEC, encoded as they are put (see
/// [`SonicDb::apply_state_batch`]).
pub struct StateBatch<'a> {
    buf: &'a mut Vec<u8>,
    /// `PORT_TABLE<sep>`.
    prefix: &'a str,
    keys: &'a mut Vec<(std::ops::Range<usize>, bool)>,
    /// A `hset` without fields (the batch is refused).
    empty: Option<String>,
}

impl StateBatch<'_> {
    /// `HSET PORT_TABLE<sep><name> f v ...`: sets these fields, leaves every other field alone.
    pub fn hset<'f>(
        &mut self,
        name: &str,
        fields: impl ExactSizeIterator<Item = (&'f str, &'f str)>,
    ) {
        if fields.len() == 0 {
            self.empty.get_or_insert_with(|| name.to_string());
            return;
        }
        self.array(2 + 2 * fields.len());
        self.bulk(b"HSET");
        self.key(name, false);
        for (f, v) in fields {
            self.bulk(f.as_bytes());
            self.bulk(v.as_bytes());
        }
    }

    /// `DEL PORT_TABLE<sep><name>`.
    pub fn del(&mut self, name: &str) {
        self.array(2);
        self.bulk(b"DEL");
        self.key(name, true);
    }

    fn array(&mut self, n: usize) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(self.buf, "*{n}\r\n");
    }

    fn bulk(&mut self, b: &[u8]) {
        use std::io::Write as _;
        let _ = write!(self.buf, "${}\r\n", b.len());
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(b"\r\n");
    }

    fn key(&mut self, name: &str, del: bool) {
        use std::io::Write as _;
        let len = self.prefix.len() + name.len();
        let _ = write!(self.buf, "${len}\r\n");
        let start = self.buf.len();
        self.buf.extend_from_slice(self.prefix.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.keys.push((start..self.buf.len(), del));
        self.buf.extend_from_slice(b"\r\n");
    }
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
            entry_errors: EntryErrors::default(),
            state_buf: Vec::new(),
            state_keys: Vec::new(),
        }
    }

    /// The entries that could not be used since the last call (a key of another type, a name that
    /// is not UTF-8, ...), by database and reason: for `portsyncd_redis_entry_errors_total`. Each
    /// was logged (rate-limited) when seen.
    pub fn take_entry_errors(&mut self) -> Vec<(&'static str, EntryErrorReason, u64)> {
        self.entry_errors.take()
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

    /// Every CONFIG_DB `PORT|<name>` with all its fields, as bytes. A key whose name is not UTF-8
    /// or that is not a hash is skipped (counted, logged).
    pub fn read_config_ports(&mut self) -> Result<PortConfig, DbError> {
        let ep = self.layout.config.clone();
        read_table(
            &mut self.config,
            &mut self.entry_errors,
            &ep,
            CONFIG_PORT_TABLE,
            "read CONFIG_DB PORT table",
            |fields| fields.into_iter().collect(),
        )
    }

    /// Every STATE_DB `PORT_TABLE|<name>` with all its fields, as bytes. A key whose name is not
    /// UTF-8 or that is not a hash is skipped (counted, logged).
    pub fn read_state_ports(&mut self) -> Result<BTreeMap<String, RawHash>, DbError> {
        let ep = self.layout.state.clone();
        read_table(
            &mut self.state,
            &mut self.entry_errors,
            &ep,
            PORT_TABLE,
            "read STATE_DB PORT_TABLE",
            |fields| fields,
        )
    }

    /// Every field of STATE_DB `PORT_TABLE|<name>` for each of `names`, in order, in one pipelined
    /// round trip (an empty map: no such key; None: the key is not a hash, counted and logged).
    pub fn read_state_port_rows(
        &mut self,
        names: &[String],
    ) -> Result<Vec<Option<RawHash>>, DbError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let ep = self.layout.state.clone();
        let replies = self
            .state
            .run_decode("HGETALL STATE_DB PORT_TABLE (pipelined)", |con| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for n in names {
                    pipe.cmd("HGETALL").arg(db_key(&ep, PORT_TABLE, n));
                }
                Ok(reply::list(
                    reply::server_state(pipe.query::<Value>(con)?)?,
                    names.len(),
                ))
            })?;
        Ok(names
            .iter()
            .zip(replies)
            .map(|(n, v)| match reply::hash(v) {
                Ok(h) => Some(h),
                Err(reason) => {
                    let key = db_key(&ep, PORT_TABLE, n);
                    self.entry_errors
                        .record("STATE_DB", key.as_bytes(), reason, "HGETALL");
                    None
                }
            })
            .collect())
    }

    /// Publishes each port's fields verbatim (bytes) to APPL_DB `PORT_TABLE` (ProducerStateTable
    /// protocol). A port with no fields is refused (nothing is written). An entry Redis refuses (its
    /// staging hash holds another type, ...) is skipped, counted and logged; the others are
    /// published. Returns how many entries were refused.
    pub fn publish_app_ports<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        ports: &BTreeMap<String, Vec<(F, V)>>,
    ) -> Result<usize, DbError> {
        if let Some((name, _)) = ports.iter().find(|(_, f)| f.is_empty()) {
            return Err(DbError::Refused(format!(
                "port {name} has no fields; a ProducerStateTable set needs at least one"
            )));
        }
        let entries: Vec<(&str, &[(F, V)])> = ports
            .iter()
            .map(|(k, f)| (k.as_str(), f.as_slice()))
            .collect();
        let producer = &self.port_producer;
        let results = self.appl.run("publish APPL_DB PORT_TABLE ports", |con| {
            producer.set_many(con, &entries)
        })?;
        let mut published = 0;
        let mut refused = 0;
        for ((name, _), r) in entries.iter().zip(results) {
            match r {
                Ok(p) => published += usize::from(p),
                Err(reason) => {
                    refused += 1;
                    let key = producer.staging_key(name);
                    self.entry_errors.record(
                        "APPL_DB",
                        key.as_bytes(),
                        reason,
                        "ProducerStateTable set",
                    );
                }
            }
        }
        tracing::debug!(
            ports = ports.len(),
            published,
            refused,
            "published ports to APPL_DB"
        );
        Ok(refused)
    }

    fn producer_set(&mut self, key: &str, fields: &[(&str, &str)]) -> Result<(), DbError> {
        let producer = &self.port_producer;
        let op = format!("ProducerStateTable set {}", producer.table_key(key));
        self.appl.run(&op, |con| producer.set(con, key, fields))?;
        Ok(())
    }

    /// APPL_DB `PortConfigDone` with `count` = number of configured ports.
    pub fn publish_port_config_done(&mut self, count: usize) -> Result<(), DbError> {
        self.producer_set(PORT_CONFIG_DONE, &[("count", &count.to_string())])
    }

    /// APPL_DB `PortInitDone` with `lanes` = `0`.
    pub fn publish_port_init_done(&mut self) -> Result<(), DbError> {
        self.producer_set(PORT_INIT_DONE, &[("lanes", "0")])
    }

    /// Whether APPL_DB `PORT_TABLE:<name>` exists (the port was configured and orchagent consumed it).
    pub fn app_port_exists(&mut self, name: &str) -> Result<bool, DbError> {
        Ok(self
            .app_ports_matching(&[name.to_string()], "EXISTS", None)?
            .contains(name))
    }

    /// The subset of `names` whose APPL_DB `PORT_TABLE:<name>` exists, in one pipelined round trip.
    /// A key of any type exists (what it holds is orchagent's business).
    pub fn app_ports_existing(&mut self, names: &[String]) -> Result<BTreeSet<String>, DbError> {
        self.app_ports_matching(names, "EXISTS", None)
    }

    /// The subset of `names` whose APPL_DB `PORT_TABLE:<name>` has an `admin_status` field, in one
    /// pipelined round trip. A key that is not a hash has none (counted, logged).
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
        let answers = self
            .appl
            .run_decode(&format!("{cmd} PORT_TABLE (pipelined)"), |con| {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for n in names {
                    let c = pipe.cmd(cmd).arg(db_key(&ep, PORT_TABLE, n));
                    if let Some(f) = field {
                        c.arg(f);
                    }
                }
                Ok(reply::list(
                    reply::server_state(pipe.query::<Value>(con)?)?,
                    names.len(),
                ))
            })?;
        let mut out = BTreeSet::new();
        for (n, v) in names.iter().zip(answers) {
            match reply::int(v) {
                Ok(yes) if yes > 0 => {
                    out.insert(n.clone());
                }
                Ok(_) => {}
                Err(reason) => {
                    let key = db_key(&ep, PORT_TABLE, n);
                    self.entry_errors
                        .record("APPL_DB", key.as_bytes(), reason, cmd);
                }
            }
        }
        Ok(out)
    }

    /// Whether APPL_DB `PORT_TABLE:<name>` has an `admin_status` field.
    pub fn app_port_has_admin_status(&mut self, name: &str) -> Result<bool, DbError> {
        Ok(self
            .app_ports_with_admin_status(&[name.to_string()])?
            .contains(name))
    }

    /// Applies STATE_DB `PORT_TABLE` writes in one MULTI/EXEC pipeline (one round trip). A `Set`
    /// with no fields is refused before anything is sent. Redis runs every command of the
    /// transaction even if one fails: a write it refuses (the key holds another type, ...) is
    /// counted, logged and its port returned; every other write landed.
    pub fn apply_state_writes(&mut self, writes: &[StateWrite]) -> Result<Vec<String>, DbError> {
        let refused = self.apply_state_batch(|b| {
            for w in writes {
                match w {
                    StateWrite::Set { name, fields } => {
                        b.hset(name, fields.iter().map(|(f, v)| (f.as_str(), v.as_str())))
                    }
                    StateWrite::SetFields { name, fields } => {
                        b.hset(name, fields.iter().map(|(f, v)| (*f, v.as_ref())))
                    }
                    StateWrite::Del { name } => b.del(name),
                }
            }
        })?;
        let mut rejected: Vec<String> = Vec::new();
        for i in refused {
            if let Some(w) = writes.get(i) {
                let name = match w {
                    StateWrite::Set { name, .. }
                    | StateWrite::SetFields { name, .. }
                    | StateWrite::Del { name } => name,
                };
                if !rejected.contains(name) {
                    rejected.push(name.clone());
                }
            }
        }
        Ok(rejected)
    }

    /// Applies the STATE_DB `PORT_TABLE` writes `fill` puts into the batch, in one MULTI/EXEC (one
    /// round trip), and returns the positions (in the order they were put) of the writes Redis
    /// refused, each counted and logged. The commands are encoded straight into one buffer kept
    /// across batches: no command object, key string or field pair is allocated per write (in a
    /// storm, building a redis-rs `Cmd` per write was most of the writer's allocations). A `hset`
    /// with no fields refuses the whole batch before anything is sent.
    pub fn apply_state_batch(
        &mut self,
        fill: impl FnOnce(&mut StateBatch<'_>),
    ) -> Result<Vec<usize>, DbError> {
        let mut buf = std::mem::take(&mut self.state_buf);
        let mut keys = std::mem::take(&mut self.state_keys);
        buf.clear();
        keys.clear();
        buf.extend_from_slice(MULTI);
        let prefix = db_key(&self.layout.state, PORT_TABLE, "");
        let mut batch = StateBatch {
            buf: &mut buf,
            prefix: &prefix,
            keys: &mut keys,
            empty: None,
        };
        fill(&mut batch);
        let empty = batch.empty.take();
        let n = keys.len();
        let res = match empty {
            Some(name) => Err(refused_empty(&name)),
            None if n == 0 => Ok(Vec::new()),
            None => {
                buf.extend_from_slice(EXEC);
                let op = format!("apply {n} STATE_DB PORT_TABLE writes");
                self.state
                    .run_decode(&op, |con| {
                        // MULTI's OK and the QUEUEDs are read and skipped; the last reply is EXEC's.
                        let exec = match con.req_packed_commands(&buf, n + 1, 1)?.pop() {
                            Some(v @ (Value::Array(_) | Value::Nil)) => v,
                            _ => {
                                return Err(redis::RedisError::from((
                                    redis::ErrorKind::UnexpectedReturnType,
                                    "Invalid response when parsing multi response",
                                )))
                            }
                        };
                        Ok(reply::list(reply::server_state(exec)?, n))
                    })
                    .map(|replies| {
                        let mut refused = Vec::new();
                        for (i, v) in replies.iter().enumerate() {
                            let Some(reason) = reply::error_reason(v) else {
                                continue;
                            };
                            let (range, del) = keys[i].clone();
                            let key = buf.get(range).unwrap_or_default();
                            let what = if del { "DEL" } else { "HSET" };
                            self.entry_errors.record("STATE_DB", key, reason, what);
                            refused.push(i);
                        }
                        refused
                    })
            }
        };
        // The buffers are kept for the next batch, unless a large one (a cold start's) made them big.
        if buf.capacity() > STATE_BUF_KEEP {
            buf = Vec::new();
            keys = Vec::new();
        }
        self.state_buf = buf;
        self.state_keys = keys;
        res
    }

    /// CONFIG_DB `DEVICE_METADATA|localhost` `switch_type`, if set (raw bytes; a key that is not a
    /// hash reads as unset, counted and logged).
    pub fn switch_type(&mut self) -> Result<Option<Vec<u8>>, DbError> {
        let key = db_key(&self.layout.config, "DEVICE_METADATA", "localhost");
        hget(
            &mut self.config,
            &mut self.entry_errors,
            &key,
            "switch_type",
        )
    }
}

/// `HGET key field` on `conn`: the value's bytes, or None when unset. An error reply for the key
/// (it is not a hash, ...) or an odd reply is an entry error: counted, logged, and read as unset.
pub(super) fn hget(
    conn: &mut Conn,
    errors: &mut EntryErrors,
    key: &str,
    field: &str,
) -> Result<Option<Vec<u8>>, DbError> {
    let v = conn.run(&format!("HGET {key} {field}"), |con| {
        reply::server_state(con.req_command(redis::cmd("HGET").arg(key).arg(field))?)
    })?;
    match reply::opt_bytes(v) {
        Ok(v) => Ok(v),
        Err(reason) => {
            errors.record(conn.db(), key.as_bytes(), reason, field);
            Ok(None)
        }
    }
}

/// `HSET key field value` on `conn`. True if it landed; false if Redis refused it for this key
/// (another type, ...): counted and logged, the key left as it is (it is not portsyncd's to fix).
pub(super) fn hset(
    conn: &mut Conn,
    errors: &mut EntryErrors,
    key: &str,
    field: &str,
    value: &str,
) -> Result<bool, DbError> {
    let v = conn.run(&format!("HSET {key} {field}"), |con| {
        reply::server_state(con.req_command(redis::cmd("HSET").arg(key).arg(field).arg(value))?)
    })?;
    match reply::int(v) {
        Ok(_) => Ok(true),
        Err(reason) => {
            errors.record(conn.db(), key.as_bytes(), reason, field);
            Ok(false)
        }
    }
}

/// Keys read per pipelined round trip by [`read_table`]: bounds the replies held at once (at start-up
/// a whole CONFIG_DB port table as one pipeline's reply tree was the daemon's peak memory).
const READ_BATCH: usize = 256;

/// Reads every `<table><sep>*` hash: SCAN for the keys, then their HGETALLs in pipelines of
/// [`READ_BATCH`], each row turned into `T` by `keep` as its batch arrives. Keys are bytes until
/// here: a name that is not UTF-8, or a key that is not a hash, is an entry error (counted, logged,
/// skipped); the rest are read.
fn read_table<T>(
    conn: &mut Conn,
    errors: &mut EntryErrors,
    ep: &DbEndpoint,
    table: &str,
    op: &str,
    mut keep: impl FnMut(RawHash) -> T,
) -> Result<BTreeMap<String, T>, DbError> {
    let prefix = format!("{table}{}", ep.separator);
    let pattern = format!("{}*", glob_escape(&prefix));
    let db = conn.db();
    // Rebuilt from scratch on the one retry a dropped connection gets, so nothing is counted twice.
    let mut failed: Vec<(Vec<u8>, EntryErrorReason, &'static str)> = Vec::new();
    let out = conn.run_decode(op, |con| {
        failed.clear();
        let keys = match scan_keys(con, &pattern)? {
            Ok(k) => k,
            Err(detail) => return Ok(Err(detail)),
        };
        let mut out = BTreeMap::new();
        for chunk in keys.chunks(READ_BATCH) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for k in chunk {
                pipe.cmd("HGETALL").arg(k.as_slice());
            }
            let replies =
                match reply::list(reply::server_state(pipe.query::<Value>(con)?)?, chunk.len()) {
                    Ok(r) => r,
                    Err(detail) => return Ok(Err(detail)),
                };
            for (k, v) in chunk.iter().zip(replies) {
                let Some(name) = k.strip_prefix(prefix.as_bytes()) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(name) else {
                    failed.push((k.clone(), EntryErrorReason::NotUtf8, "port name"));
                    continue;
                };
                match reply::hash(v) {
                    // A key deleted between SCAN and HGETALL reads as an empty hash: it no longer
                    // exists.
                    Ok(h) if h.is_empty() => {}
                    Ok(h) => {
                        out.insert(name.to_string(), keep(h));
                    }
                    Err(reason) => failed.push((k.clone(), reason, "HGETALL")),
                }
            }
        }
        Ok(Ok(out))
    });
    if out.is_ok() {
        for (k, reason, what) in failed {
            errors.record(db, &k, reason, what);
        }
    }
    out
}

/// Every key matching `pattern`, by SCAN, sorted and without repeats (SCAN may return a key twice).
fn scan_keys(
    con: &mut redis::Connection,
    pattern: &str,
) -> redis::RedisResult<Result<Vec<Vec<u8>>, String>> {
    let mut keys = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let page = con.req_command(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000),
        )?;
        if let Value::ServerError(e) = page {
            return Err(e.into());
        }
        let (next, batch) = match reply::scan_page(page) {
            Ok(p) => p,
            Err(detail) => return Ok(Err(detail)),
        };
        keys.extend(batch);
        if next == 0 {
            return Ok(Ok(keys.into_iter().collect()));
        }
        cursor = next;
    }
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
