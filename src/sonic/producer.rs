//! SONiC's ProducerStateTable protocol for APPL_DB tables (what orchagent's ConsumerStateTable reads).
//!
//! A `set(key, fields)` is one Lua script, run with EVALSHA: `SADD <T>_KEY_SET key`, `HSET
//! _<T><sep>key f v ...`, and `PUBLISH <T>_CHANNEL@<db> G` only if the key was not already pending.
//! A `del(key)` adds the key to both `<T>_KEY_SET` and `<T>_DEL_SET` and deletes the staging hash.
//! The consumer later pops the key set and moves the staging hash into `<T><sep>key`.

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};

use super::error::EntryErrorReason;
use super::reply;

/// The message SONiC publishes on the table channel (`SWSS_TABLE_UPDATE_NOTIFICATION`).
pub const UPDATE_NOTIFICATION: &str = "G";

/// KEYS: channel, key set, staging hash. ARGV: message, key, then field/value pairs.
const SET_LUA: &str = r"
local added = redis.call('SADD', KEYS[2], ARGV[2])
for i = 3, #ARGV - 1, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
if added > 0 then
    redis.call('PUBLISH', KEYS[1], ARGV[1])
end
return added
";

/// KEYS: channel, key set, staging hash, delete set. ARGV: message, key.
const DEL_LUA: &str = r"
local added = redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('DEL', KEYS[3])
if added > 0 then
    redis.call('PUBLISH', KEYS[1], ARGV[1])
end
return added
";

/// Entries sent per pipelined round trip by [`ProducerStateTable::set_many`].
const BATCH: usize = 256;

/// A producer for one APPL_DB table.
pub struct ProducerStateTable {
    table: String,
    separator: String,
    db_id: i64,
    set_script: Script,
    del_script: Script,
}

impl ProducerStateTable {
    /// A producer for `table` in the database with id `db_id` whose key separator is `separator`.
    pub fn new(table: &str, separator: &str, db_id: i64) -> Self {
        ProducerStateTable {
            table: table.to_string(),
            separator: separator.to_string(),
            db_id,
            set_script: Script::new(SET_LUA),
            del_script: Script::new(DEL_LUA),
        }
    }

    /// `<T>_KEY_SET`: keys with pending changes.
    pub fn key_set(&self) -> String {
        format!("{}_KEY_SET", self.table)
    }

    /// `<T>_DEL_SET`: keys whose pending change starts with a delete.
    pub fn del_set(&self) -> String {
        format!("{}_DEL_SET", self.table)
    }

    /// `<T>_CHANNEL@<db>`: where the consumer is woken.
    pub fn channel(&self) -> String {
        format!("{}_CHANNEL@{}", self.table, self.db_id)
    }

    /// `<T><sep><key>`: the consumed entry.
    pub fn table_key(&self, key: &str) -> String {
        format!("{}{}{}", self.table, self.separator, key)
    }

    /// `_<T><sep><key>`: the staging hash of a pending set.
    pub fn staging_key(&self, key: &str) -> String {
        format!("_{}", self.table_key(key))
    }

    fn set_invocation<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        key: &str,
        fields: &[(F, V)],
    ) -> RedisResult<redis::Cmd> {
        if fields.is_empty() {
            // The consumer would read an empty staging hash as a delete.
            return Err(RedisError::from((
                ErrorKind::Client,
                "refusing ProducerStateTable set with zero fields",
                self.table_key(key),
            )));
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.set_script.get_hash())
            .arg(3)
            .arg(self.channel())
            .arg(self.key_set())
            .arg(self.staging_key(key))
            .arg(UPDATE_NOTIFICATION)
            .arg(key);
        for (f, v) in fields {
            // Bytes, verbatim: what CONFIG_DB holds is what APPL_DB gets, as in swss-common.
            cmd.arg(f.as_ref()).arg(v.as_ref());
        }
        Ok(cmd)
    }

    /// Stages `fields` for `key` (merged into any pending fields) and wakes the consumer if the key
    /// was not pending yet. Returns whether a notification was published. Zero fields are refused;
    /// an error reply (the script failed: a key of another type, ...) is an `Err` of the server's
    /// kind.
    pub fn set<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        con: &mut dyn ConnectionLike,
        key: &str,
        fields: &[(F, V)],
    ) -> RedisResult<bool> {
        let cmd = self.set_invocation(key, fields)?;
        let v = with_script_reload(con, SET_LUA, |con| con.req_command(&cmd))?;
        added(v)
    }

    /// Like [`set`](Self::set) for many keys, pipelined [`BATCH`] at a time. Returns each entry's
    /// outcome, in order: whether a notification was published, or why Redis refused that entry
    /// (one refused entry does not stop the others). Refuses the whole batch if any entry has zero
    /// fields.
    pub fn set_many<F: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        con: &mut dyn ConnectionLike,
        entries: &[(&str, &[(F, V)])],
    ) -> RedisResult<Vec<Result<bool, EntryErrorReason>>> {
        if let Some((k, f)) = entries.iter().find(|(_, f)| f.is_empty()) {
            // The same refusal as one `set` (zero fields), before anything is sent.
            self.set_invocation(k, f)?;
        }
        let mut out = Vec::with_capacity(entries.len());
        // Each batch's commands are built when it is sent, not all up front: at start-up this is every
        // configured port, and holding all their commands at once set the daemon's peak memory.
        for chunk in entries.chunks(BATCH) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (k, f) in chunk {
                pipe.add_command(self.set_invocation(k, f)?);
            }
            let v = with_script_reload(con, SET_LUA, |con| pipe.query::<Value>(con))?;
            let items = reply::list(v, chunk.len()).map_err(unexpected)?;
            out.extend(
                items
                    .into_iter()
                    .map(|i| reply::int(i).map(|added| added > 0)),
            );
        }
        Ok(out)
    }

    /// Requests deletion of `key`. Returns whether a notification was published.
    pub fn del(&self, con: &mut dyn ConnectionLike, key: &str) -> RedisResult<bool> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.del_script.get_hash())
            .arg(4)
            .arg(self.channel())
            .arg(self.key_set())
            .arg(self.staging_key(key))
            .arg(self.del_set())
            .arg(UPDATE_NOTIFICATION)
            .arg(key);
        let v = with_script_reload(con, DEL_LUA, |con| con.req_command(&cmd))?;
        added(v)
    }
}

/// A reply of a shape the script never gives, as a client error (not a connection loss).
fn unexpected(detail: String) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected ProducerStateTable reply",
        detail,
    ))
}

/// The script's `added` count, or the error reply as an error.
fn added(v: Value) -> RedisResult<bool> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        other => reply::int(other)
            .map(|n| n > 0)
            .map_err(|r| unexpected(format!("script reply: {}", r.label()))),
    }
}

/// True if `v` (or one reply of a pipeline) says the server does not know the script.
fn no_script(v: &Value) -> bool {
    match v {
        Value::ServerError(e) => e.kind() == Some(ServerErrorKind::NoScript),
        Value::Array(items) => items.iter().any(no_script),
        _ => false,
    }
}

/// Runs `f` (which uses EVALSHA of the script `code`); if the server no longer knows the script
/// (restart, `SCRIPT FLUSH`), loads it and runs `f` once more. The scripts are idempotent, so a
/// partly applied pipeline is safe to repeat.
fn with_script_reload(
    con: &mut dyn ConnectionLike,
    code: &str,
    mut f: impl FnMut(&mut dyn ConnectionLike) -> RedisResult<Value>,
) -> RedisResult<Value> {
    let v = f(con)?;
    if !no_script(&v) {
        return reply::server_state(v);
    }
    tracing::debug!("lua script not cached on the server; loading it");
    match con.req_command(redis::cmd("SCRIPT").arg("LOAD").arg(code))? {
        Value::ServerError(e) => Err(e.into()),
        _ => reply::server_state(f(con)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_sonic() {
        let p = ProducerStateTable::new("PORT_TABLE", ":", 0);
        assert_eq!(p.key_set(), "PORT_TABLE_KEY_SET");
        assert_eq!(p.del_set(), "PORT_TABLE_DEL_SET");
        assert_eq!(p.channel(), "PORT_TABLE_CHANNEL@0");
        assert_eq!(p.table_key("Ethernet0"), "PORT_TABLE:Ethernet0");
        assert_eq!(p.staging_key("Ethernet0"), "_PORT_TABLE:Ethernet0");
        assert_eq!(
            ProducerStateTable::new("X", "|", 3).channel(),
            "X_CHANNEL@3"
        );
    }

    #[test]
    fn zero_fields_refused_before_io() {
        let p = ProducerStateTable::new("PORT_TABLE", ":", 0);
        let none: &[(String, String)] = &[];
        let err = p.set_invocation("Ethernet0", none).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Client);
        let cmd = p.set_invocation("Ethernet0", &[("mtu", "9100")]).unwrap();
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8(b.to_vec()).unwrap(),
                _ => "<other>".into(),
            })
            .collect();
        assert_eq!(args[0], "EVALSHA");
        assert_eq!(
            &args[2..],
            [
                "3",
                "PORT_TABLE_CHANNEL@0",
                "PORT_TABLE_KEY_SET",
                "_PORT_TABLE:Ethernet0",
                "G",
                "Ethernet0",
                "mtu",
                "9100"
            ]
        );
    }
}
