//! [`SledBackend`]: sled 0.34.7 made power-safe (flush, then fsync of `db`, of new blob files and of
//! the directory), every call under the panic guard.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::backend::{guard, Backend, BackendError, Pairs, WriteBatch};
use super::durable::sync_dir;
use super::fault::{crash_point, CrashPoint};
use super::layout::{SLED_BLOBS, SLED_DB};

/// sled 0.34.7, made power-safe: `flush()` then `fsync` of the `db` file (sled's own flush only calls
/// `sync_file_range` on Linux; see docs/durability.md).
pub struct SledBackend {
    db: sled::Db,
    dir: PathBuf,
    /// Blob files already fsynced (sled never rewrites a blob in place: a new value is a new file).
    synced_blobs: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
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
        sync_dir(dir)?;
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

    /// A snapshot sled renamed in since the last commit must be durable before this commit's
    /// writes may reuse log segments that only the old snapshot still pointed at.
    fn begin_commit(&self) -> Result<(), BackendError> {
        guard("sled begin commit", || Ok(sync_dir(&self.dir)?))
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
        crash_point(CrashPoint::AfterFlush);
        // Items larger than a quarter segment (128 KiB) — at 2048 ports the tree node holding the
        // manifests — live in files under `blobs/` that the log refers to; sled never fsyncs them.
        let mut done = self
            .synced_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sync_blobs(&self.dir.join(SLED_BLOBS), &mut done)?;
        // sled's flush() ends in sync_file_range: neither the disk cache nor the file size reach the
        // platter. A real fsync of the log file makes the flushed batches power-safe.
        File::open(self.dir.join(SLED_DB))?.sync_all()?;
        // sled renames its snapshot files (`snap.*`) into this directory and removes older ones
        // without fsyncing it; after a power cut an old directory listing came back next to a log
        // that had moved on, and sled opened empty (seen in the chaos soak). A directory fsync per
        // commit makes the listing as durable as the log it describes.
        sync_dir(&self.dir)?;
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
