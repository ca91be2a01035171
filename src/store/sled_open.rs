//! The defensive sled open: under `catch_unwind`, waiting while sled's file lock is busy, and moving a
//! half-written snapshot aside before one retry.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::backend::panic_message;
use super::clock::unix_now;
use super::health::errno_in;
use super::layout::{aside_name, is_generating};
use super::sled_backend::SledBackend;

/// How long an open waits for sled's file lock on `db` to be released.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// True when sled could not take its file lock on `db`: it is held by the threads of a sled instance
/// of this process that is still being dropped (a reopen right after a close: sled's flusher lets go
/// of the database a moment after the last handle), or by another process. Either way the store is
/// not damaged, and it must never be quarantined for it. (Another portsyncd is kept out by the pid
/// lock before sled is opened.)
pub fn lock_busy(reason: &str) -> bool {
    reason.contains("could not acquire lock") || errno_in(reason) == Some(libc::EWOULDBLOCK)
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
        if is_generating(&name) {
            let to = dir.join(aside_name(unix_now(), &name));
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
