//! The pid lock: the daemon takes it ([`PidLock`]), a tool probes it ([`daemon_pid`]).
//!
//! `<state-dir>/portsyncd.pid`, held with `flock(LOCK_EX | LOCK_NB)` for as long as a
//! [`PidLock`] lives. It holds the owner's pid so a second opener (the daemon, or `portsyncd-state`
//! while the daemon runs) can say who holds the store. The kernel drops the lock when the owner dies, so
//! a stale file from a killed process never blocks anyone.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::layout::{LOCK_FILE, LOCK_MODE};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (`pid` as written in the file; 0 if unreadable).
    #[error("held by pid {pid}")]
    Held { pid: u32 },
    #[error("cannot lock {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

/// A held lock; released on drop (the file stays, with the last owner's pid).
#[derive(Debug)]
pub struct PidLock {
    _file: File,
    path: PathBuf,
}

impl PidLock {
    /// Take the lock in `dir` (which must exist) and write our pid into it.
    ///
    /// A held lock is retried for up to 2 s before being reported: the holder that wrote its pid may
    /// have released it already while a child it forked (from another thread) still pins the
    /// descriptor until its `exec`; that clears in moments. A real holder is still reported.
    pub fn acquire(dir: &Path) -> Result<PidLock, LockError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match PidLock::try_acquire(dir) {
                Err(LockError::Held { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn try_acquire(dir: &Path) -> Result<PidLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |err| LockError::Io {
            path: path.clone(),
            err,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_MODE)
            // A symlink planted at the pid file's path is refused (ELOOP), never truncated through.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err)?;
        // std's try_lock is flock(LOCK_EX | LOCK_NB) on Linux.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(LockError::Held {
                    pid: s.trim().parse().unwrap_or(0),
                });
            }
            Err(TryLockError::Error(err)) => return Err(io_err(err)),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(PidLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Is a process holding the store's pid lock (a running portsyncd)? Its pid, if so (0 if unreadable).
///
/// Tested with a shared `flock` on the lock file opened read-only: it conflicts with the daemon's
/// exclusive lock, and neither creates nor rewrites the file. (A daemon starting in that instant
/// retries its lock for 2 s, far longer than the test takes.)
pub fn daemon_pid(dir: &Path) -> Option<u32> {
    let path = dir.join(LOCK_FILE);
    let mut f = fs::File::open(path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => return None, // released when `f` is dropped
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(_)) => return None,
    }
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    Some(s.trim().parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_learns_the_pid_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let a = PidLock::acquire(dir.path()).unwrap();
        match PidLock::acquire(dir.path()) {
            Err(LockError::Held { pid }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(a);
        assert!(PidLock::acquire(dir.path()).is_ok());
    }
}
