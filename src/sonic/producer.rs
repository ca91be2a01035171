//! SONiC's ProducerStateTable protocol for APPL_DB tables (what orchagent's ConsumerStateTable reads).
//!
//! A `set(key, fields)` is one Lua script, run with EVALSHA: `SADD <T>_KEY_SET key`, `HSET
//! _<T><sep>key f v ...`, and `PUBLISH <T>_CHANNEL@<db> G` only if the key was not already pending.
//! A `del(key)` adds the key to both `<T>_KEY_SET` and `<T>_DEL_SET` and deletes the staging hash.
//! The consumer later pops the key set and moves the staging hash into `<T><sep>key`.

use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};

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

    fn set_invocation(&self, key: &str, fields: &[(String, String)]) -> RedisResult<redis::Cmd> {
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
            cmd.arg(f).arg(v);
        }
        Ok(cmd)
    }

    /// Stages `fields` for `key` (merged into any pending fields) and wakes the consumer if the key
    /// was not pending yet. Returns whether a notification was published. Zero fields are refused.
    pub fn set(
        &self,
        con: &mut dyn ConnectionLike,
        key: &str,
        fields: &[(String, String)],
    ) -> RedisResult<bool> {
        let cmd = self.set_invocation(key, fields)?;
        let added: i64 = with_script_reload(con, &self.set_script, |con| cmd.query(con))?;
        Ok(added > 0)
    }

    /// Like [`set`](Self::set) for many keys, pipelined [`BATCH`] at a time. Returns how many
    /// notifications were published. Refuses the whole batch if any entry has zero fields.
    pub fn set_many(
        &self,
        con: &mut dyn ConnectionLike,
        entries: &[(&str, &[(String, String)])],
    ) -> RedisResult<usize> {
        let cmds = entries
            .iter()
            .map(|(k, f)| self.set_invocation(k, f))
            .collect::<RedisResult<Vec<_>>>()?;
        let mut published = 0;
        for chunk in cmds.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for c in chunk {
                pipe.add_command(c.clone());
            }
            let added: Vec<i64> = with_script_reload(con, &self.set_script, |con| pipe.query(con))?;
            published += added.iter().filter(|a| **a > 0).count();
        }
        Ok(published)
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
        let added: i64 = with_script_reload(con, &self.del_script, |con| cmd.query(con))?;
        Ok(added > 0)
    }
}

/// Runs `f` (which uses EVALSHA of `script`); if the server no longer knows the script (restart,
/// `SCRIPT FLUSH`), loads it and runs `f` once more. The scripts are idempotent, so a partly applied
/// pipeline is safe to repeat.
fn with_script_reload<T>(
    con: &mut dyn ConnectionLike,
    script: &Script,
    mut f: impl FnMut(&mut dyn ConnectionLike) -> RedisResult<T>,
) -> RedisResult<T> {
    match f(con) {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            tracing::debug!("lua script not cached on the server; loading it");
            script.load(con)?;
            f(con)
        }
        other => other,
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
        let err = p.set_invocation("Ethernet0", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Client);
        let cmd = p
            .set_invocation("Ethernet0", &[("mtu".into(), "9100".into())])
            .unwrap();
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
