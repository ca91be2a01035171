//! A consistent copy of a live `sled/` directory for the tools: copied again while a file changed
//! during the copy (a commit of the running daemon).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::layout::{COPY_PREFIX, SLED_DIR};

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
pub fn snapshot_copy(sled_dir: &Path) -> Result<(tempfile::TempDir, bool), StoreError> {
    let tmp = tempfile::Builder::new()
        .prefix(COPY_PREFIX)
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
