//! Error types of the SONiC database layer.

use std::path::PathBuf;
use std::time::Duration;

/// Why a SONiC database layout could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum DbConfigError {
    /// The file could not be read.
    #[error("cannot read SONiC DB config {path}: {source}")]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("invalid SONiC DB config {path}: {source}")]
    Json {
        /// The file that was parsed.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A database portsyncd needs is not listed under `DATABASES`.
    #[error("SONiC DB config {path}: database {db} is not defined under DATABASES")]
    MissingDatabase {
        /// The file that was parsed.
        path: PathBuf,
        /// The database name, e.g. `STATE_DB`.
        db: &'static str,
    },
    /// A database names an instance that is not listed under `INSTANCES`.
    #[error("SONiC DB config {path}: database {db} uses instance {instance:?}, which is not defined under INSTANCES")]
    MissingInstance {
        /// The file that was parsed.
        path: PathBuf,
        /// The database name.
        db: &'static str,
        /// The instance name it refers to.
        instance: String,
    },
    /// An instance has neither a unix socket nor a usable hostname and port.
    #[error("SONiC DB config {path}: instance {instance:?} has neither unix_socket_path nor hostname+port")]
    NoAddress {
        /// The file that was parsed.
        path: PathBuf,
        /// The instance name.
        instance: String,
    },
    /// `database_global.json` has no `INCLUDES` entry for the namespace.
    #[error("SONiC global DB config {path}: no INCLUDES entry for namespace {namespace:?}")]
    NamespaceNotFound {
        /// The global file.
        path: PathBuf,
        /// The namespace asked for.
        namespace: String,
    },
    /// A `--redis-url` value that is not `unix:///path` or `redis://host[:port]`.
    #[error("invalid redis URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The layout could not be determined.
    #[error(transparent)]
    Config(#[from] DbConfigError),
    /// The database is not connected and the next reconnect attempt is not yet due.
    #[error("{db} is not connected; next reconnect attempt in {retry_in:?}")]
    NotConnected {
        /// The database, e.g. `APPL_DB`.
        db: &'static str,
        /// Time until the next attempt is allowed.
        retry_in: Duration,
    },
    /// Connecting (socket, SELECT) failed.
    #[error("cannot connect to {db} at {addr}: {source}")]
    Connect {
        /// The database.
        db: &'static str,
        /// The address tried.
        addr: String,
        /// The client error.
        source: redis::RedisError,
    },
    /// A command failed (I/O error, timeout or server error).
    #[error("{db}: {op} failed: {source}")]
    Command {
        /// The database.
        db: &'static str,
        /// What was being done, e.g. `HSET PORT_TABLE|Ethernet0`.
        op: String,
        /// The client error.
        source: redis::RedisError,
    },
    /// A request the protocol forbids, refused before reaching Redis.
    #[error("refused: {0}")]
    Refused(String),
    /// A blocking wait was ended by the stop flag.
    #[error("stopped while waiting for {db}")]
    Stopped {
        /// The database waited for.
        db: &'static str,
    },
    /// A reply of a shape the command never gives (e.g. a SCAN reply that is not a cursor and a
    /// list). The connection stays: the stream itself was parsed fine.
    #[error("{db}: {op}: unexpected reply: {detail}")]
    Decode {
        /// The database.
        db: &'static str,
        /// What was being done.
        op: String,
        /// What was wrong with the reply.
        detail: String,
    },
}

/// What kind of failure a [`DbError`] is: it decides between reconnecting, retrying later and
/// giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection is gone or cannot be trusted (I/O error, timeout, dropped, an unparsable
    /// stream), or was never made: reconnect, retry later.
    ConnectionLost,
    /// The server answers but cannot serve now (loading its dataset, a failover, read-only, out of
    /// memory, ...: [`server_state_code`]): retry later on the same connection.
    Busy,
    /// The server refused this command for what it names (WRONGTYPE, a script error, ...): the
    /// connection is fine; retrying the same command soon is unlikely to help.
    Command,
    /// The reply had an unexpected shape: the connection is fine.
    Decode,
    /// Refused before reaching Redis, a configuration error or a stop request.
    Local,
}

impl DbError {
    /// The class of this error (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            DbError::NotConnected { .. } | DbError::Connect { .. } => ErrorClass::ConnectionLost,
            DbError::Command { source, .. } if breaks_connection(source) => {
                ErrorClass::ConnectionLost
            }
            DbError::Command { source, .. } if server_busy(source) => ErrorClass::Busy,
            DbError::Command { .. } => ErrorClass::Command,
            DbError::Decode { .. } => ErrorClass::Decode,
            DbError::Config(_) | DbError::Refused(_) | DbError::Stopped { .. } => ErrorClass::Local,
        }
    }
}

impl DbError {
    /// True if the error is about reachability (connection lost, not connected, timeout) rather than
    /// about the request itself, i.e. retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.class(), ErrorClass::ConnectionLost | ErrorClass::Busy)
    }
}

/// True for a server that answers but cannot serve yet (loading its dataset at boot, a failover in
/// progress): retrying later succeeds; it must not end the daemon.
fn server_busy(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        err.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain | ServerErrorKind::MasterDown
        )
    ) || err.code().is_some_and(server_state_code)
}

/// True for the code of an error reply about the server's state rather than about the entry the
/// command named: loading, busy with a script, a failover, read-only, out of memory, no permission,
/// a failed save, an aborted transaction. Such a reply concerns every command alike, so it fails the
/// whole batch (retried later) and is never an entry error of the key it happened to name; only
/// the other codes (WRONGTYPE, a script's ERR about its data, ...) are.
pub fn server_state_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING"
            | "BUSY"
            | "MASTERDOWN"
            | "TRYAGAIN"
            | "READONLY"
            | "OOM"
            | "NOPERM"
            | "NOAUTH"
            | "MISCONF"
            | "NOREPLICAS"
            | "CLUSTERDOWN"
            | "EXECABORT"
    )
}

/// True if after this error the connection can no longer be trusted (I/O failure, timeout, a
/// stream that could not be parsed): the stream may be out of step with the server, so it must be
/// replaced.
///
/// The client library reports two different things as `ErrorKind::Parse`: a protocol stream it
/// could not parse (the connection is lost) and a reply it could not convert into the type asked
/// for (the connection is fine; the data is just not what was expected). portsyncd never asks the
/// library for a conversion: every reply is taken as a [`redis::Value`] (which cannot fail) and
/// decoded by `super::reply`, whose failures are per-entry errors or [`DbError::Decode`]. So here a
/// `Parse` can only be an unparsable stream. What this function does *not* count: server error
/// replies (WRONGTYPE, script errors, OOM, READONLY, NOPERM, ...), which say nothing about the
/// connection (the library's `is_unrecoverable_error` would count AUTH failures, harmless here).
pub(crate) fn breaks_connection(err: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    if matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
        return false;
    }
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
        || err.kind() == ErrorKind::Parse
}

/// Why one Redis entry (a key, or a field of one) could not be used: the `reason` label of
/// `portsyncd_redis_entry_errors_total`. Such an entry is skipped for now and looked at again later;
/// it is never a reason to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryErrorReason {
    /// The key holds another type than portsyncd reads or writes there (WRONGTYPE).
    WrongType,
    /// Text is required there (a port name, a number, a flag) and the bytes are not UTF-8.
    NotUtf8,
    /// Text, but not a value the field allows (an unparsable or absurd number).
    BadValue,
    /// Another error reply of the server for this entry's command (a script error, OOM, ...).
    ServerError,
    /// A reply of a shape the command never gives for one entry.
    BadReply,
}

impl EntryErrorReason {
    /// Every reason, in export order.
    pub const ALL: [EntryErrorReason; 5] = [
        EntryErrorReason::WrongType,
        EntryErrorReason::NotUtf8,
        EntryErrorReason::BadValue,
        EntryErrorReason::ServerError,
        EntryErrorReason::BadReply,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            EntryErrorReason::WrongType => "wrong_type",
            EntryErrorReason::NotUtf8 => "not_utf8",
            EntryErrorReason::BadValue => "bad_value",
            EntryErrorReason::ServerError => "server_error",
            EntryErrorReason::BadReply => "bad_reply",
        }
    }

    /// The reason for a server error reply to one entry's command.
    pub fn of_server_error(code: &str) -> Self {
        if code == "WRONGTYPE" {
            EntryErrorReason::WrongType
        } else {
            EntryErrorReason::ServerError
        }
    }
}

/// The databases whose entries are counted, in export order (the `db` label).
pub const ENTRY_DBS: [&str; 3] = ["CONFIG_DB", "STATE_DB", "APPL_DB"];

/// Longest part of a key shown in a log line.
const LOG_KEY_MAX: usize = 96;

/// How long entry errors are logged at most once (the rest are counted in the next line).
const ENTRY_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Entry errors seen since the owner last took them: counted here, logged rate-limited.
#[derive(Debug)]
pub struct EntryErrors {
    counts: std::collections::BTreeMap<(&'static str, EntryErrorReason), u64>,
    log: crate::logging::RateLimit,
}

impl Default for EntryErrors {
    fn default() -> Self {
        EntryErrors {
            counts: std::collections::BTreeMap::new(),
            log: crate::logging::RateLimit::new(ENTRY_LOG_INTERVAL),
        }
    }
}

/// `key` for a log line: printable ASCII, other bytes escaped, long keys cut.
pub fn printable_key(key: &[u8]) -> String {
    let cut = &key[..key.len().min(LOG_KEY_MAX)];
    let mut s = cut.escape_ascii().to_string();
    if key.len() > LOG_KEY_MAX {
        s.push_str(&format!("... ({} bytes)", key.len()));
    }
    s
}

impl EntryErrors {
    /// Counts one unusable entry of `db` and logs it (at most one line per interval).
    pub fn record(&mut self, db: &'static str, key: &[u8], reason: EntryErrorReason, what: &str) {
        let n = self.counts.entry((db, reason)).or_insert(0);
        *n = n.saturating_add(1);
        if let Some(suppressed) = self.log.allow(std::time::Instant::now()) {
            tracing::warn!(
                db,
                key = %printable_key(key),
                reason = reason.label(),
                what,
                suppressed,
                "redis entry unusable: skipped, looked at again later"
            );
        }
    }

    /// The counts since the last call, by database and reason.
    pub fn take(&mut self) -> Vec<(&'static str, EntryErrorReason, u64)> {
        std::mem::take(&mut self.counts)
            .into_iter()
            .map(|((db, r), n)| (db, r, n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(source: redis::RedisError) -> DbError {
        DbError::Command {
            db: "STATE_DB",
            op: "test".into(),
            source,
        }
    }

    fn server(reply: &[u8]) -> redis::RedisError {
        match redis::parse_redis_value(reply) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn only_connection_loss_breaks_the_connection() {
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(command(io).class(), ErrorClass::ConnectionLost);
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(command(timeout).class(), ErrorClass::ConnectionLost);
        // An unparsable stream: the library's parser fails, the connection is out of step.
        let garbage = match redis::parse_redis_value(b"?what\r\n") {
            Err(e) => e,
            Ok(v) => panic!("parsed {v:?}"),
        };
        assert_eq!(command(garbage).class(), ErrorClass::ConnectionLost);
        for reply in [
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".as_slice(),
            b"-ERR Error running script (call to f_x): @user_script:3: oops\r\n",
        ] {
            let e = command(server(reply));
            assert_eq!(e.class(), ErrorClass::Command, "{e}");
            assert!(!e.is_transient(), "{e}");
        }
        // The server's state, not the command's: retried later, never a reconnect.
        for reply in [
            b"-OOM command not allowed when used memory > 'maxmemory'.\r\n".as_slice(),
            b"-READONLY You can't write against a read only replica.\r\n",
            b"-NOPERM this user has no permissions\r\n",
        ] {
            let e = command(server(reply));
            assert_eq!(e.class(), ErrorClass::Busy, "{e}");
            assert!(e.is_transient(), "{e}");
        }
        let loading = command(server(
            b"-LOADING Redis is loading the dataset in memory\r\n",
        ));
        assert_eq!(loading.class(), ErrorClass::Busy);
        assert!(loading.is_transient());
        let decode = DbError::Decode {
            db: "CONFIG_DB",
            op: "SCAN".into(),
            detail: "odd".into(),
        };
        assert_eq!(decode.class(), ErrorClass::Decode);
        assert!(!decode.is_transient());
    }

    #[test]
    fn entry_errors_are_counted_per_db_and_reason() {
        let mut e = EntryErrors::default();
        e.record(
            "STATE_DB",
            b"PORT_TABLE|\xff",
            EntryErrorReason::NotUtf8,
            "port name",
        );
        e.record(
            "STATE_DB",
            b"PORT_TABLE|x",
            EntryErrorReason::NotUtf8,
            "port name",
        );
        e.record("APPL_DB", b"k", EntryErrorReason::WrongType, "HEXISTS");
        assert_eq!(
            e.take(),
            vec![
                ("APPL_DB", EntryErrorReason::WrongType, 1),
                ("STATE_DB", EntryErrorReason::NotUtf8, 2)
            ]
        );
        assert!(e.take().is_empty());
        assert_eq!(printable_key(b"PORT|\xe9\n"), "PORT|\\xe9\\n");
        assert!(printable_key(&[b'a'; 500]).ends_with("(500 bytes)"));
    }
}
