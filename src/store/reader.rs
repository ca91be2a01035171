//! [`StoreReader`]: read-only access for tools (`portsyncd-state`), from a copy of the store, never
//! created, migrated, quarantined or locked.

use std::path::{Path, PathBuf};

use super::backend::Backend;
use super::copy::snapshot_copy;
use super::error::StoreError;
use super::generation::{self, Invalid, Manifest, SCHEMA_VERSION};
use super::info::{describe, GenerationInfo};
use super::layout::{SLED_CONF, SLED_DIR};
use super::lock::daemon_pid;
use super::record::Snapshot;
use super::schema::check_schema_marker;
use super::sled_backend::SledBackend;
use super::sled_open::open_sled;

/// A store opened for reading by a tool: never created, never migrated, never quarantined, and never
/// locked. sled holds an exclusive lock on its files while open (and writes on every open), so the
/// tool opens a **copy** of `sled/` in a temporary directory: the daemon's store is never touched,
/// and a daemon started meanwhile starts normally.
pub struct StoreReader {
    backend: SledBackend,
    dir: PathBuf,
    schema: Option<u32>,
    daemon_pid: Option<u32>,
    whole: bool,
    _copy: tempfile::TempDir,
}

impl StoreReader {
    /// Open (a copy of) the store in `dir` (the state directory). Fails with `NotAStore` when
    /// `dir/sled/conf` is missing, `Open` when sled refuses it, `NewerSchema` when it is newer.
    /// A store whose creation was interrupted (no schema yet, no generation) opens as empty.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<StoreReader, StoreError> {
        let sled_dir = dir.join(SLED_DIR);
        if !sled_dir.join(SLED_CONF).is_file() {
            return Err(StoreError::NotAStore {
                dir: dir.to_path_buf(),
            });
        }
        check_schema_marker(&sled_dir)?;
        let daemon_pid = daemon_pid(dir);
        let (copy, whole) = snapshot_copy(&sled_dir)?;
        let copy_dir = copy.path().join(SLED_DIR);
        let backend = open_sled(&copy_dir, cache_capacity_bytes, true).map_err(|reason| {
            StoreError::Open {
                dir: sled_dir.clone(),
                reason,
            }
        })?;
        let schema = match generation::read_schema(&backend) {
            Ok(Some(v)) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Ok(Some(v)) => Some(v),
            // Created by portsyncd, interrupted before the schema landed (e.g. a full disk): empty.
            Ok(None) if generation::list(&backend).is_ok_and(|g| g.is_empty()) => None,
            Ok(None) => {
                return Err(StoreError::Corruption {
                    what: "schema version missing (meta/schema) although generations exist".into(),
                })
            }
            Err(e) => {
                return Err(StoreError::Open {
                    dir: sled_dir,
                    reason: e.to_string(),
                })
            }
        };
        Ok(StoreReader {
            backend,
            dir: dir.to_path_buf(),
            schema,
            daemon_pid,
            whole,
            _copy: copy,
        })
    }

    /// The pid of the portsyncd holding the store when it was opened (it was read from a copy).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon_pid
    }

    /// False when the store kept changing during every copy attempt (the copy may miss the newest
    /// commit; sled's recovery makes it consistent either way).
    pub fn copy_is_whole(&self) -> bool {
        self.whole
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored schema version (None: an empty store whose creation was interrupted).
    pub fn schema(&self) -> Option<u32> {
        self.schema
    }

    /// Every generation, newest first, each verified.
    pub fn generations(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        describe(&self.backend)
    }

    /// Load and verify one generation.
    pub fn load(&self, gen: u64) -> Result<(Manifest, Snapshot), Invalid> {
        generation::load(&self.backend, gen)
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> Option<u64> {
        self.backend.size_on_disk()
    }
}
