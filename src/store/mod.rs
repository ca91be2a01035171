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

// The files of the store, each with one job (its first line says which). None imports another in a
// circle (`layout_tests` checks it); `layout.rs`, the on-disk names and modes, imports nothing.
pub mod backend;
pub mod clock;
mod commit;
mod config;
mod copy;
#[cfg(test)]
mod crash_tests;
mod create;
pub mod delta;
#[cfg(test)]
mod delta_tests;
pub mod durable;
mod error;
pub mod export_cache;
mod export_writer;
pub mod fault;
pub mod generation;
#[cfg(test)]
mod golden_tests;
mod handle;
pub mod health;
mod info;
pub mod json_export;
pub mod layout;
#[cfg(test)]
mod layout_tests;
pub mod limits;
pub mod lock;
pub mod mem_backend;
pub mod migrate;
mod open;
pub mod private;
mod prune;
mod quarantine;
pub mod reader;
pub mod record;
pub mod recovery;
mod schema;
pub mod sled_backend;
mod sled_open;

pub use backend::{Backend, BackendError, WriteBatch};
pub use clock::format_utc;
pub use config::StoreConfig;
pub use error::StoreError;
pub use generation::{Manifest, SCHEMA_VERSION};
pub use handle::Store;
pub use health::Degraded;
pub use info::GenerationInfo;
pub use layout::SLED_DIR;
pub use mem_backend::MemBackend;
pub use reader::StoreReader;
pub use record::{PortRecord, Snapshot};
pub use recovery::{LadderStep, Recovered, RecoverySource};
pub use sled_backend::SledBackend;

#[cfg(test)]
mod tests;
