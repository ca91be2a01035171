//! Why the store is not taking commits, and which failures are the environment's (a full, read-only or
//! failing disk: keep the store, retry) rather than the store's own (corruption: quarantine).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::backend::BackendError;
use super::StoreError;

/// Why the daemon runs without persistence: the `reason` label of `portsyncd_state_store_degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Degraded {
    /// ENOSPC or EDQUOT.
    NoSpace,
    /// EROFS.
    ReadOnly,
    /// EACCES or EPERM.
    Permission,
    /// EIO or any other I/O error.
    IoError,
    /// The store was written by a newer portsyncd; it is left untouched.
    NewerSchema,
    /// Stored data failed verification (the store was quarantined).
    Corrupt,
    /// Anything else.
    Other,
}

impl Degraded {
    /// Every reason, in metric order.
    pub const ALL: [Degraded; 7] = [
        Degraded::NoSpace,
        Degraded::ReadOnly,
        Degraded::Permission,
        Degraded::IoError,
        Degraded::NewerSchema,
        Degraded::Corrupt,
        Degraded::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Degraded::NoSpace => "no_space",
            Degraded::ReadOnly => "read_only",
            Degraded::Permission => "permission",
            Degraded::IoError => "io_error",
            Degraded::NewerSchema => "newer_schema",
            Degraded::Corrupt => "corrupt",
            Degraded::Other => "other",
        }
    }

    /// A problem of the disk, not of the data: the store is kept and the operation retried.
    pub fn is_environmental(self) -> bool {
        matches!(
            self,
            Degraded::NoSpace | Degraded::ReadOnly | Degraded::Permission | Degraded::IoError
        )
    }

    /// The class of an errno.
    pub fn of_errno(errno: i32) -> Degraded {
        match errno {
            libc::ENOSPC | libc::EDQUOT => Degraded::NoSpace,
            libc::EROFS => Degraded::ReadOnly,
            libc::EACCES | libc::EPERM => Degraded::Permission,
            _ => Degraded::IoError,
        }
    }

    /// The class of an I/O error: always environmental.
    pub fn of_io(e: &io::Error) -> Degraded {
        e.raw_os_error()
            .map_or(Degraded::IoError, Degraded::of_errno)
    }

    /// The class of a backend error.
    pub fn of_backend(e: &BackendError) -> Degraded {
        match e {
            BackendError::Io(io) => Degraded::of_io(io),
            BackendError::Corruption(_) => Degraded::Corrupt,
            BackendError::Other(msg) => errno_in(msg).map_or(Degraded::Other, Degraded::of_errno),
        }
    }
}

/// ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO: the errors of a disk, never of the data on it.
pub fn environmental_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EACCES | libc::EPERM | libc::EIO
    )
}

/// The errno a message of sled (an error or a panic it raised) names, if any: `(os error 28)` as
/// `io::Error` displays it, or `code: 28` as its `Debug` shows it.
pub fn errno_in(msg: &str) -> Option<i32> {
    let after = |pat: &str| {
        let start = msg.find(pat)? + pat.len();
        let digits: String = msg[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    after("(os error ").or_else(|| after("code: "))
}

impl StoreError {
    /// Why this error leaves the daemon without persistence.
    pub fn degraded(&self) -> Degraded {
        match self {
            StoreError::Io { source, .. } => Degraded::of_io(source),
            StoreError::Backend { source, .. } => Degraded::of_backend(source),
            StoreError::Poisoned { reason, .. } => *reason,
            StoreError::Open { reason, .. } => {
                errno_in(reason).map_or(Degraded::Corrupt, Degraded::of_errno)
            }
            StoreError::NewerSchema { .. } => Degraded::NewerSchema,
            StoreError::Corruption { .. } | StoreError::NoGeneration(_) => Degraded::Corrupt,
            StoreError::InUse { .. }
            | StoreError::NotAStore { .. }
            | StoreError::Input { .. }
            | StoreError::NoBase => Degraded::Other,
        }
    }

    /// A failure of the disk, not of the data: keep the store, retry later, never quarantine.
    pub fn is_environmental(&self) -> bool {
        self.degraded().is_environmental()
    }
}

/// Name of the probe file [`probe_writable`] writes (and removes) in the state directory.
pub const PROBE_FILE: &str = ".portsyncd-probe";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(Degraded::of_io(&e(libc::ENOSPC)), Degraded::NoSpace);
        assert_eq!(Degraded::of_io(&e(libc::EDQUOT)), Degraded::NoSpace);
        assert_eq!(Degraded::of_io(&e(libc::EROFS)), Degraded::ReadOnly);
        assert_eq!(Degraded::of_io(&e(libc::EACCES)), Degraded::Permission);
        assert_eq!(Degraded::of_io(&e(libc::EPERM)), Degraded::Permission);
        assert_eq!(Degraded::of_io(&e(libc::EIO)), Degraded::IoError);
        assert!(Degraded::ALL[..4].iter().all(|d| d.is_environmental()));
        assert!(!Degraded::Corrupt.is_environmental());
        assert!(!Degraded::NewerSchema.is_environmental());
    }

    #[test]
    fn errno_found_in_sled_messages() {
        let io = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(errno_in(&format!("IO error: {io}")), Some(libc::ENOSPC));
        assert_eq!(errno_in(&format!("{io:?}")), Some(libc::ENOSPC));
        assert_eq!(errno_in("corrupted config"), None);
        let open = StoreError::Open {
            dir: "/x".into(),
            reason: format!("sled panicked while opening: {io:?}"),
        };
        assert_eq!(open.degraded(), Degraded::NoSpace);
        let bad = StoreError::Open {
            dir: "/x".into(),
            reason: "Corruption { at: None }".into(),
        };
        assert_eq!(bad.degraded(), Degraded::Corrupt);
    }

    #[test]
    fn the_probe_reports_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_writable(dir.path()).is_ok());
        assert!(!dir.path().join(PROBE_FILE).exists());
        assert!(probe_writable(&dir.path().join("absent")).is_err());
    }
}
