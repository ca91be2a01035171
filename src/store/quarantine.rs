//! Quarantine: a damaged sled directory is renamed aside (never deleted), and only on a disk that
//! proves it takes writes; a full, read-only or failing disk never moves the store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::clock::unix_now;
use super::durable::sync_dir;
use super::error::StoreError;
use super::layout::{quarantine_name, PROBE_FILE, SLED_DIR};
use super::recovery::LadderStep;

/// Bytes the probe writes: room for sled to open and write a little.
const PROBE_BYTES: usize = 64 << 10;

/// Can `dir` take writes right now? Writes, fsyncs and removes a small file. Run before anything is
/// quarantined: a store that sled cannot open on a full, read-only or failing disk is not corrupt, and
/// moving it aside would only lose it.
pub fn probe_writable(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(PROBE_FILE);
    let res = fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = fs::remove_file(&path);
    res.map_err(StoreError::io(path))
}

/// Rename `<dir>/sled` to `<dir>/sled.quarantine-<unix>[-n]` (never deleted) and fsync `dir`.
pub fn quarantine(dir: &Path) -> Result<PathBuf, StoreError> {
    let from = dir.join(SLED_DIR);
    let now = unix_now();
    let mut n = 0;
    let mut to = dir.join(quarantine_name(now, n));
    while to.exists() {
        n += 1;
        to = dir.join(quarantine_name(now, n));
    }
    fs::rename(&from, &to).map_err(StoreError::io(&from))?;
    sync_dir(dir).map_err(StoreError::io(dir))?;
    tracing::error!(from = %from.display(), to = %to.display(), "state store quarantined");
    Ok(to)
}

/// Quarantine a sled directory that is damaged (`reason`), on a disk that takes writes, and note the
/// step (`sled store`) for the ladder.
pub fn give_up_on_sled(
    dir: &Path,
    reason: String,
    steps: &mut Vec<LadderStep>,
) -> Result<(), StoreError> {
    // Only damage on a healthy disk is quarantined: where the disk itself fails, moving the store
    // aside (on the same disk) would lose it for nothing.
    probe_writable(dir)?;
    let to = quarantine(dir)?;
    let from = "sled store".to_string();
    let reason = format!("{reason}; quarantined to {}", to.display());
    tracing::warn!(from = %from, reason = %reason, "state recovery: stepping down");
    steps.push(LadderStep { from, reason });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reports_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_writable(dir.path()).is_ok());
        assert!(!dir.path().join(PROBE_FILE).exists());
        assert!(probe_writable(&dir.path().join("absent")).is_err());
    }
}
