//! Read-only access for tools (`portsyncd-state`), the defensive sled open, and generation listings.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use super::backend::{Backend, SledBackend};
use super::generation::{self, Invalid, Manifest, SCHEMA_VERSION};
use super::lock::{LockError, PidLock};
use super::record::Snapshot;
use super::{unix_now, StoreError, SLED_DIR};

/// One generation as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationInfo {
    pub number: u64,
    /// From the manifest, when it is readable.
    pub saved_at: Option<u64>,
    /// From the manifest, when it is readable.
    pub port_count: Option<u32>,
    /// Lifetime counters of the manifest, when readable.
    pub counters: Option<BTreeMap<String, u64>>,
    /// None when every record verified; otherwise why not.
    pub problem: Option<String>,
}

impl GenerationInfo {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Every generation of `b`, newest first, each fully verified.
pub fn describe(b: &dyn Backend) -> Result<Vec<GenerationInfo>, StoreError> {
    let gens = generation::list(b).map_err(|source| StoreError::Backend {
        op: "listing generations",
        source,
    })?;
    Ok(gens
        .into_iter()
        .rev()
        .map(|g| {
            let manifest = generation::read_manifest(b, g).ok();
            let problem = generation::load(b, g).err().map(|e| e.to_string());
            GenerationInfo {
                number: g,
                saved_at: manifest.as_ref().map(|m| m.saved_at),
                port_count: manifest.as_ref().map(|m| m.record_count),
                counters: manifest.map(|m| m.counters),
                problem,
            }
        })
        .collect())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn try_open(dir: &Path, cache: u64) -> Result<SledBackend, String> {
    match catch_unwind(AssertUnwindSafe(|| SledBackend::open(dir, cache))) {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!(
            "sled panicked while opening: {}",
            panic_message(p.as_ref())
        )),
    }
}

/// Open sled in `dir` with its open under `catch_unwind`. With `move_generating`, a failed open moves
/// leftover `snap.*.generating` files aside (`aside-<unix>.<name>`, a half-written snapshot from a power
/// cut, which makes sled 0.34.7 refuse to open) and retries once.
pub fn open_sled(dir: &Path, cache: u64, move_generating: bool) -> Result<SledBackend, String> {
    let first = match try_open(dir, cache) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    if !move_generating {
        return Err(first);
    }
    let mut moved = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            // The new name must not start with "snap.": sled reads every file with that prefix.
            let to = dir.join(format!("aside-{}.{name}", unix_now()));
            if fs::rename(e.path(), &to).is_ok() {
                moved.push(name);
            }
        }
    }
    if moved.is_empty() {
        return Err(first);
    }
    tracing::warn!(dir = %dir.display(), moved = ?moved, error = %first, "moved half-written sled snapshots aside");
    try_open(dir, cache).map_err(|e| format!("{first}; after moving {moved:?} aside: {e}"))
}

/// File inside `sled/` holding the schema version as text, so a newer store is refused before sled
/// even opens it (sled writes a fresh snapshot on every open; a refused store must not change at all).
pub const SCHEMA_MARKER: &str = "portsyncd-schema";

/// Refuse a store whose schema marker names a newer schema.
pub fn check_schema_marker(sled_dir: &Path) -> Result<(), StoreError> {
    match fs::read_to_string(sled_dir.join(SCHEMA_MARKER)) {
        Ok(s) => match s.trim().parse::<u32>() {
            Ok(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                found: v,
                supported: SCHEMA_VERSION,
            }),
            // An unreadable marker is not trusted either way; `meta/schema` inside sled decides.
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Write the schema marker (fsynced, then the directory).
pub fn write_schema_marker(sled_dir: &Path) -> Result<(), StoreError> {
    // sled never fsyncs its `conf`; a power cut could leave it torn and the store unopenable.
    let conf = sled_dir.join("conf");
    fs::File::open(&conf)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(&conf))?;
    let path = sled_dir.join(SCHEMA_MARKER);
    super::json_export::write_atomic(&path, format!("{SCHEMA_VERSION}\n").as_bytes())
        .map_err(StoreError::io(&path))
}

/// A store opened for reading by a tool: never created, never migrated, never quarantined.
pub struct StoreReader {
    backend: SledBackend,
    dir: PathBuf,
    schema: u32,
    _lock: PidLock,
}

impl StoreReader {
    /// Open the store in `dir` (the state directory). Fails with `NotAStore` when `dir/sled/conf` is
    /// missing, `InUse` when a daemon holds it, `Open` when sled refuses it, `NewerSchema` when it is newer.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<StoreReader, StoreError> {
        let sled_dir = dir.join(SLED_DIR);
        if !sled_dir.join("conf").is_file() {
            return Err(StoreError::NotAStore {
                dir: dir.to_path_buf(),
            });
        }
        check_schema_marker(&sled_dir)?;
        let lock = PidLock::acquire(dir).map_err(|e| match e {
            LockError::Held { pid } => StoreError::InUse { pid },
            LockError::Io { path, err } => StoreError::Io { path, source: err },
        })?;
        let backend = open_sled(&sled_dir, cache_capacity_bytes, false).map_err(|reason| {
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
            Ok(Some(v)) => v,
            Ok(None) => {
                return Err(StoreError::Corruption {
                    what: "schema version missing (meta/schema)".into(),
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
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored schema version.
    pub fn schema(&self) -> u32 {
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
