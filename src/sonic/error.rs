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
}

impl DbError {
    /// True if the error is about reachability (connection lost, not connected, timeout) rather than
    /// about the request itself, i.e. retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::NotConnected { .. } | DbError::Connect { .. } => true,
            DbError::Command { source, .. } => breaks_connection(source) || server_busy(source),
            DbError::Config(_) | DbError::Refused(_) | DbError::Stopped { .. } => false,
        }
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
    )
}

/// True if after this error the connection can no longer be trusted (I/O failure, timeout, a reply
/// that could not be parsed): the stream may be out of step with the server, so it must be replaced.
pub(crate) fn breaks_connection(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
        || err.kind() == redis::ErrorKind::Parse
}
