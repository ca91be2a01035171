//! Read-only access for tools (`portsyncd-state`), the defensive sled open, and generation listings.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::backend::{panic_message, Backend, SledBackend};
use super::generation::{self, Invalid, Manifest, SCHEMA_VERSION};
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

/// How long an open waits for sled's file lock on `db` to be released.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// True when sled could not take its file lock on `db`: it is held by the threads of a sled instance
/// of this process that is still being dropped (a reopen right after a close: sled's flusher lets go
/// of the database a moment after the last handle), or by another process. Either way the store is
/// not damaged, and it must never be quarantined for it. (Another portsyncd is kept out by the pid
/// lock before sled is opened.)
pub fn lock_busy(reason: &str) -> bool {
    reason.contains("could not acquire lock")
        || super::health::errno_in(reason) == Some(libc::EWOULDBLOCK)
}

/// [`try_open_once`], waiting up to [`LOCK_WAIT`] while sled's file lock is busy.
fn try_open(dir: &Path, cache: u64) -> Result<SledBackend, String> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match try_open_once(dir, cache) {
            Err(e) if lock_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn try_open_once(dir: &Path, cache: u64) -> Result<SledBackend, String> {
    match crate::unwind::catch(|| SledBackend::open(dir, cache)) {
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

/// Is a process holding the store's pid lock (a running portsyncd)? Its pid, if so (0 if unreadable).
///
/// Tested with a shared `flock` on the lock file opened read-only: it conflicts with the daemon's
/// exclusive lock, and neither creates nor rewrites the file. (A daemon starting in that instant
/// retries its lock for 2 s, far longer than the test takes.)
pub fn daemon_pid(dir: &Path) -> Option<u32> {
    use std::io::Read;
    let path = dir.join(super::lock::LOCK_FILE);
    let mut f = fs::File::open(path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => return None, // released when `f` is dropped
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(_)) => return None,
    }
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    Some(s.trim().parse().unwrap_or(0))
}

/// Size and modification time of every file under `dir` (recursively), to tell a torn copy.
fn fingerprint(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, (u64, i64, i64)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let md = e.metadata()?;
            if md.is_dir() {
                todo.push(e.path());
            } else {
                out.insert(e.path(), (md.len(), md.mtime(), md.mtime_nsec()));
            }
        }
    }
    Ok(out)
}

/// Copy the files of `from` into `to` (recursively).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            match fs::copy(e.path(), &dest) {
                Ok(_) => {}
                // Removed meanwhile (sled replaced a snapshot or a blob): the fingerprint differs too.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Copies of a store changing under the copy are retried this many times.
const COPY_ATTEMPTS: u32 = 20;

/// Copy `sled_dir` into a fresh temporary directory, again while a file changed during the copy (a
/// commit of the running daemon). Returns the copy and whether it is known to be whole.
fn snapshot_copy(sled_dir: &Path) -> Result<(tempfile::TempDir, bool), StoreError> {
    let tmp = tempfile::Builder::new()
        .prefix("portsyncd-state-")
        .tempdir()
        .map_err(StoreError::io(std::env::temp_dir()))?;
    for attempt in 1..=COPY_ATTEMPTS {
        let copy = tmp.path().join(SLED_DIR);
        if copy.exists() {
            fs::remove_dir_all(&copy).map_err(StoreError::io(&copy))?;
        }
        let before = fingerprint(sled_dir).map_err(StoreError::io(sled_dir))?;
        copy_tree(sled_dir, &copy).map_err(StoreError::io(sled_dir))?;
        let after = fingerprint(sled_dir).map_err(StoreError::io(sled_dir))?;
        if before == after {
            return Ok((tmp, true));
        }
        tracing::debug!(attempt, "store changed during the copy; copying again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok((tmp, false))
}

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
        if !sled_dir.join("conf").is_file() {
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
