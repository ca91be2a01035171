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
pub mod clock;
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
pub mod limits;
pub mod lock;
pub mod migrate;
pub mod private;
pub mod reader;
pub mod record;
pub mod recovery;

pub use backend::{Backend, BackendError, MemBackend, SledBackend, WriteBatch};
pub use clock::format_utc;
pub(crate) use clock::unix_now;
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

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

#[cfg(test)]
mod tests;
