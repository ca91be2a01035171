//! The narrow storage trait under the store, its sled implementation, and an in-memory backend with
//! fault knobs for tests.
//!
//! The store needs only: point reads, ordered prefix scans, one atomic multi-key write, and a durability
//! barrier. Everything above (framing, generations, the ladder) is backend-independent and unit-tested
//! on [`MemBackend`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A failure reported by a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The operating system refused an operation.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The backend detected damage in its own files.
    #[error("backend reports corruption: {0}")]
    Corruption(String),
    /// Anything else the backend reported.
    #[error("{0}")]
    Other(String),
}

/// Key-value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One atomic write: puts (`Some`) and removes (`None`), applied all or nothing.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }
    pub fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What the store needs from a key-value engine.
pub trait Backend: Send {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError>;
    /// Every key starting with `prefix`, in key order (values are not read).
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, BackendError>;
    /// Apply `batch` atomically: after a crash either all of it or none of it is visible.
    fn apply(&self, batch: WriteBatch) -> Result<(), BackendError>;
    /// Durability barrier: when this returns Ok, every applied batch survives a power cut.
    fn sync(&self) -> Result<(), BackendError>;
    /// Bytes used on disk, when known.
    fn size_on_disk(&self) -> Option<u64> {
        None
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Run one backend call under `catch_unwind`: a panic (sled can panic on a damaged db, on reads as
/// well as on open) becomes [`BackendError::Corruption`], which steps down the ladder or poisons
/// the store, instead of unwinding into the daemon.
pub fn guard<T>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    match crate::unwind::catch(f) {
        Ok(r) => r,
        Err(p) => {
            let msg = panic_message(p.as_ref());
            tracing::error!(op, panic = %msg, "the storage engine panicked; treated as corruption");
            Err(BackendError::Corruption(format!("{op} panicked: {msg}")))
        }
    }
}

/// Any backend with every call under [`guard`] (what [`Store::with_backend`](super::Store::with_backend)
/// runs over; [`SledBackend`] guards its own calls).
pub struct Guarded(pub Box<dyn Backend>);

impl Backend for Guarded {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        guard("get", || self.0.get(key))
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError> {
        guard("scan", || self.0.scan_prefix(prefix))
    }
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
        guard("key scan", || self.0.keys_with_prefix(prefix))
    }
    fn apply(&self, batch: WriteBatch) -> Result<(), BackendError> {
        guard("apply", || self.0.apply(batch))
    }
    fn sync(&self) -> Result<(), BackendError> {
        guard("sync", || self.0.sync())
    }
    fn size_on_disk(&self) -> Option<u64> {
        guard("size", || Ok(self.0.size_on_disk())).ok().flatten()
    }
}

/// sled 0.34.7, made power-safe: `flush()` then `fsync` of the `db` file (sled's own flush only calls
/// `sync_file_range` on Linux; see docs/durability.md).
pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
    /// Blob files already fsynced (sled never rewrites a blob in place: a new value is a new file).
    synced_blobs: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
    /// The first `apply` of a commit fsyncs sled's directory first (see `apply_unguarded`).
    dir_sync_due: std::sync::atomic::AtomicBool,
}

fn sled_err(e: sled::Error) -> BackendError {
    match e {
        sled::Error::Io(io) => BackendError::Io(io),
        sled::Error::Corruption { at, bt: _ } => BackendError::Corruption(format!("at {at:?}")),
        other => BackendError::Other(other.to_string()),
    }
}

impl SledBackend {
    /// Open (or create) a sled database in `dir`. sled may panic on some damaged files; the caller
    /// (`Store::open`) runs this under `catch_unwind`.
    ///
    /// sled's default mode (`LowSpace`) is used: see `tools/bench_store.rs` for the comparison with
    /// `HighThroughput`. `flush_every_ms` stays at sled's default (500 ms); never `None`.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<SledBackend, BackendError> {
        SledBackend::open_with_mode(dir, cache_capacity_bytes, sled::Mode::LowSpace)
    }

    /// [`SledBackend::open`] with an explicit sled mode.
    pub fn open_with_mode(
        dir: &Path,
        cache_capacity_bytes: u64,
        mode: sled::Mode,
    ) -> Result<SledBackend, BackendError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            .mode(mode)
            .open()
            .map_err(sled_err)?;
        Ok(SledBackend {
            db,
            dir: dir.to_path_buf(),
            synced_blobs: Default::default(),
            dir_sync_due: std::sync::atomic::AtomicBool::new(true),
        })
    }
}

/// `fsync` every file in sled's `blobs/` directory not in `done` (and record it there), then the
/// directory if any was new. A blob removed by sled meanwhile is skipped (and forgotten); a missing
/// directory (no blob yet) is fine.
fn sync_blobs(
    dir: &Path,
    done: &mut std::collections::HashSet<std::ffi::OsString>,
) -> Result<(), BackendError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut present = std::collections::HashSet::new();
    let mut new = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !done.contains(&name) {
            match File::open(entry.path()) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            new = true;
        }
        present.insert(name);
    }
    if new {
        File::open(dir)?.sync_all()?;
    }
    *done = present;
    Ok(())
}

/// Rounds of [`collect_garbage`]: each frees up to 8 bags of 64 deferred objects once their epoch
/// has passed; 64 rounds cover the garbage of a batch rewriting several thousand records.
const GC_ROUNDS: usize = 64;

/// Free the tree-node copies an `apply_batch` left behind, now rather than eventually.
///
/// sled copies a whole tree node for every key it writes and hands the old copy to crossbeam-epoch,
/// which frees it only after every thread has moved on, a few bags at a time, every 128th pin of a
/// thread. A commit rewriting 2048 records leaves several MiB of such copies, and they stayed alive
/// through the next commits (peak RSS). Pinning and flushing here advances the epoch (no other thread
/// holds a pin at rest) and frees them; each round is a few atomic operations when there is nothing left.
fn collect_garbage() {
    for _ in 0..GC_ROUNDS {
        crossbeam_epoch::pin().flush();
    }
}

/// Every sled call runs under [`guard`]: a damaged db can make reads panic, not only the open.
impl Backend for SledBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        guard("sled get", || {
            Ok(self.db.get(key).map_err(sled_err)?.map(|v| v.to_vec()))
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError> {
        guard("sled scan", || {
            self.db
                .scan_prefix(prefix)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_err))
                .collect()
        })
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
        guard("sled key scan", || {
            self.db
                .scan_prefix(prefix)
                .keys()
                .map(|r| r.map(|k| k.to_vec()).map_err(sled_err))
                .collect()
        })
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), BackendError> {
        guard("sled apply", || self.apply_unguarded(batch))
    }

    fn sync(&self) -> Result<(), BackendError> {
        guard("sled sync", || self.sync_unguarded())
    }

    fn size_on_disk(&self) -> Option<u64> {
        guard("sled size", || Ok(self.db.size_on_disk().ok()))
            .ok()
            .flatten()
    }
}

impl SledBackend {
    fn apply_unguarded(&self, batch: WriteBatch) -> Result<(), BackendError> {
        // A snapshot sled renamed in since the last commit must be durable before this commit's
        // writes may reuse log segments that only the old snapshot still pointed at.
        if self
            .dir_sync_due
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            File::open(&self.dir)?.sync_all()?;
        }
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        let applied = self.db.apply_batch(b).map_err(sled_err);
        collect_garbage();
        applied
    }

    fn sync_unguarded(&self) -> Result<(), BackendError> {
        self.db.flush().map_err(sled_err)?;
        super::fault::crash_point(super::fault::CrashPoint::AfterFlush);
        // Items larger than a quarter segment (128 KiB) — at 2048 ports the tree node holding the
        // manifests — live in files under `blobs/` that the log refers to; sled never fsyncs them.
        let mut done = self
            .synced_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sync_blobs(&self.dir.join("blobs"), &mut done)?;
        // sled's flush() ends in sync_file_range: neither the disk cache nor the file size reach the
        // platter. A real fsync of the log file makes the flushed batches power-safe.
        File::open(self.dir.join("db"))?.sync_all()?;
        // sled renames its snapshot files (`snap.*`) into this directory and removes older ones
        // without fsyncing it; after a power cut an old directory listing came back next to a log
        // that had moved on, and sled opened empty (seen in the chaos soak). A directory fsync per
        // commit makes the listing as durable as the log it describes.
        File::open(&self.dir)?.sync_all()?;
        self.dir_sync_due
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Fault knobs of [`MemBackend`].
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Fail every `apply` from now on.
    pub fail_apply: bool,
    /// Fail every `sync` from now on.
    pub fail_sync: bool,
    /// Fail every read from now on.
    pub fail_read: bool,
    /// Panic in every read from now on (what a damaged sled can do).
    pub panic_read: bool,
    /// Panic in every `apply` from now on.
    pub panic_apply: bool,
}

#[derive(Default)]
struct MemInner {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    faults: Faults,
    applies: usize,
    syncs: usize,
    /// Puts applied, and the ops of each applied batch in order.
    puts: usize,
    batch_ops: Vec<usize>,
}

/// An in-memory backend for tests. Clones share the same map, so a test keeps a handle to damage the
/// data or inject faults after handing a clone to the store.
#[derive(Clone, Default)]
pub struct MemBackend {
    inner: Arc<Mutex<MemInner>>,
}

fn injected(what: &str) -> BackendError {
    BackendError::Io(std::io::Error::other(format!("injected {what} failure")))
}

impl MemBackend {
    pub fn new() -> MemBackend {
        MemBackend::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemInner> {
        // A panic while holding the lock only happens in a failing test; keep going with the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the fault knobs.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Rewrite the raw value under `key` (test damage). Returns false when the key is absent.
    pub fn tamper(&self, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.lock().map.get_mut(key) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }

    /// Put or remove a raw value (test setup).
    pub fn raw_set(&self, key: &[u8], value: Option<Vec<u8>>) {
        let mut g = self.lock();
        match value {
            Some(v) => g.map.insert(key.to_vec(), v),
            None => g.map.remove(key),
        };
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.lock().map.keys().cloned().collect()
    }

    /// Puts applied so far, and the number of ops of every batch applied, in order.
    pub fn put_counts(&self) -> (usize, Vec<usize>) {
        let g = self.lock();
        (g.puts, g.batch_ops.clone())
    }

    /// (applies, syncs) so far.
    pub fn op_counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.applies, g.syncs)
    }
}

impl Backend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let g = self.lock();
        if g.faults.panic_read {
            drop(g);
            panic!("injected read panic");
        }
        if g.faults.fail_read {
            return Err(injected("read"));
        }
        Ok(g.map.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError> {
        let g = self.lock();
        if g.faults.panic_read {
            drop(g);
            panic!("injected read panic");
        }
        if g.faults.fail_read {
            return Err(injected("read"));
        }
        Ok(g.map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
        Ok(self
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.faults.panic_apply {
            drop(g);
            panic!("injected apply panic");
        }
        if g.faults.fail_apply {
            return Err(injected("apply"));
        }
        g.applies += 1;
        g.batch_ops.push(batch.ops.len());
        for (k, v) in batch.ops {
            match v {
                Some(v) => {
                    g.puts += 1;
                    g.map.insert(k, v)
                }
                None => g.map.remove(&k),
            };
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.faults.fail_sync {
            return Err(injected("sync"));
        }
        g.syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_go_to_blob_files_which_sync_covers() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("sled");
        let b = SledBackend::open(&sled_dir, 1 << 20).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(b"big".to_vec(), vec![7u8; 200 * 1024]);
        b.apply(batch).unwrap();
        b.sync().unwrap();
        // The premise of `sync_blobs`: sled keeps such a value outside its log, in `blobs/`.
        let blobs = std::fs::read_dir(sled_dir.join("blobs")).unwrap().count();
        assert!(blobs > 0, "no blob file for a 200 KiB value");
        assert_eq!(b.get(b"big").unwrap().map(|v| v.len()), Some(200 * 1024));
    }

    #[test]
    fn sync_blobs_accepts_a_missing_directory_and_syncs_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut done = Default::default();
        assert!(sync_blobs(&dir.path().join("absent"), &mut done).is_ok());
        std::fs::write(dir.path().join("1234"), b"blob").unwrap();
        assert!(sync_blobs(dir.path(), &mut done).is_ok());
        assert!(
            done.contains(std::ffi::OsStr::new("1234")),
            "remembered once synced"
        );
        std::fs::remove_file(dir.path().join("1234")).unwrap();
        assert!(sync_blobs(dir.path(), &mut done).is_ok());
        assert!(done.is_empty(), "a removed blob is forgotten");
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(
            sync_blobs(&dir.path().join("file"), &mut done).is_err(),
            "a file is not a directory"
        );
    }
}
