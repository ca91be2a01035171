//! The crash-safe state store: checksummed generations in sled, a recovery ladder, and the JSON export.
//!
//! portsyncd records what it last published so a restart neither churns nor lies. The store is
//! independent of the daemon: any program that needs a few thousand records to survive process kills and
//! power cuts can use it.
//!
//! - A **commit** writes a new generation — a full [`Snapshot`], or the ports changed since this
//!   store's last commit ([`Store::commit_changes`]) — as its new records in sled batches and its
//!   manifest last, then `flush()`, then `fsync` of sled's `db` file; only then does it return `Ok`. Older
//!   generations beyond [`StoreConfig::generations`] are pruned afterwards, and the compatibility JSON
//!   export is rewritten atomically.
//! - **Every value is checksummed** (CRC32 over key and payload) and each generation's manifest counts
//!   and checksums its records, so damage is detected, never applied.
//! - [`Store::open`] runs the **recovery ladder**: newest valid generation → older generations → the
//!   JSON export → cold start, each step down reported in [`Recovered::steps`].
//!
//! The contract as built is in `docs/durability.md`; the on-disk layouts are in `migrations/README.md`.
//!
//! ```
//! use std::time::Duration;
//! use portsyncd::store::{PortRecord, RecoverySource, Snapshot, Store, StoreConfig};
//!
//! # fn main() -> Result<(), portsyncd::store::StoreError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let cfg = StoreConfig {
//!     dir: dir.path().join("state"),
//!     generations: 3,
//!     recovery: true,
//!     max_age: Duration::from_secs(7 * 86_400),
//!     json_export: Some(dir.path().join("state/port_state.json")),
//!     cache_capacity_bytes: 2 << 20,
//! };
//!
//! // First start: nothing stored, a cold start.
//! let (mut store, recovered) = Store::open(cfg.clone())?;
//! assert_eq!(recovered.source, RecoverySource::ColdStart);
//!
//! let mut snap = Snapshot::default();
//! snap.ports.insert("Ethernet0".into(), PortRecord {
//!     name: "Ethernet0".into(), ifindex: 3, admin_up: true, oper_up: true,
//!     flags: 0x11043, mtu: 9100, published: Default::default(),
//! });
//! snap.counters.insert("starts_total{mode=\"cold\"}".into(), 1);
//! let generation = store.commit(&snap)?; // durable once Ok
//! drop(store); // releases the pid lock
//!
//! // Next start: the newest generation comes back, verified.
//! let (_store, recovered) = Store::open(cfg)?;
//! assert_eq!(recovered.source, RecoverySource::Newest);
//! assert_eq!(recovered.generation, Some(generation));
//! assert_eq!(recovered.snapshot, Some(snap));
//! # Ok(()) }
//! ```

pub mod backend;
#[cfg(test)]
mod crash_tests;
pub mod delta;
#[cfg(test)]
mod delta_tests;
pub mod export_cache;
pub mod fault;
pub mod generation;
#[cfg(test)]
mod golden_tests;
mod handle;
pub mod health;
pub mod json_export;
pub mod lock;
pub mod migrate;
pub mod private;
pub mod reader;
pub mod record;
pub mod recovery;

pub use backend::{Backend, BackendError, MemBackend, SledBackend, WriteBatch};
pub use generation::{Manifest, SCHEMA_VERSION};
pub use handle::{Store, StoreConfig, SLED_DIR};
pub use health::Degraded;
pub use reader::{GenerationInfo, StoreReader};
pub use record::{PortRecord, Snapshot};
pub use recovery::{LadderStep, Recovered, RecoverySource};

use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store's pid lock.
    #[error("state store is in use by pid {pid}")]
    InUse { pid: u32 },
    /// The store was written by a newer portsyncd; it is left untouched.
    #[error("state store has schema version {found}, this portsyncd supports up to {supported}; refusing to use or rewrite it")]
    NewerSchema { found: u32, supported: u32 },
    /// The directory holds no store (tools never create one, except `import`).
    #[error("{dir} is not a portsyncd state store (no {SLED_DIR}/conf in it)")]
    NotAStore { dir: PathBuf },
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// sled would not open the store.
    #[error("cannot open the sled store in {dir}: {reason}")]
    Open { dir: PathBuf, reason: String },
    /// Stored data failed verification.
    #[error("corruption: {what}")]
    Corruption { what: String },
    /// The backend failed during a commit; the store now refuses commits until reopened.
    #[error("{op} failed: {source}")]
    Backend {
        op: &'static str,
        source: BackendError,
    },
    /// An earlier commit failed: the store no longer trusts its own state. Reopen it.
    #[error("store disabled after an earlier failure ({why}); reopen it")]
    Poisoned { why: String, reason: Degraded },
    /// A delta was committed to a store that has no base for it (nothing committed since it was
    /// opened): commit a full set.
    #[error("a delta needs the generation this store committed last (none since it was opened); commit a full set")]
    NoBase,
    /// No such generation, or it is not valid.
    #[error("generation {0} not found")]
    NoGeneration(u64),
    /// Input file rejected (import).
    #[error("{path}: {source}")]
    Input {
        path: PathBuf,
        source: json_export::JsonError,
    },
}

/// Bounds on numbers read from files (the legacy JSON, its backups, the export, sled's manifests). A
/// value beyond one makes that file or generation unusable: it is damage or hostile input, never a
/// panic, an overflow, or a generation number that can no longer grow.
pub mod limits {
    /// Highest generation number a commit may take (2^53: a commit every microsecond for 285 years).
    pub const MAX_GENERATION: u64 = 1 << 53;
    /// Highest generation number accepted from a file (the export, a legacy file or its backups):
    /// half of [`MAX_GENERATION`], so that the store's numbers, which continue from a file's, keep
    /// 2^52 commits of room (a file at the limit must not stop every later commit).
    pub const MAX_FILE_GENERATION: u64 = MAX_GENERATION / 2;
    /// Latest `saved_at` accepted: 9999-12-31T23:59:59Z.
    pub const MAX_SAVED_AT: u64 = 253_402_300_799;
    /// Highest lifetime counter value accepted (2^53, exact in a Prometheus float).
    pub const MAX_COUNTER: u64 = 1 << 53;
    /// Most ports in one state.
    pub const MAX_PORTS: usize = 1 << 16;
    /// Most lifetime counters in one state.
    pub const MAX_COUNTERS: usize = 4096;
    /// Longest port name, counter name or published field (name or value), in bytes.
    pub const MAX_TEXT: usize = 4096;
    /// Largest JSON state file read (a 2048-port export is about 600 KiB).
    pub const MAX_FILE_BYTES: u64 = 64 << 20;

    /// `Err(why)` when `v` exceeds `max`.
    pub fn check(v: u64, max: u64) -> Result<u64, String> {
        if v <= max {
            Ok(v)
        } else {
            Err(format!("{v} out of range (at most {max})"))
        }
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// Now as unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (UTC), for logs and the tool.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
