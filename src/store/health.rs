//! Why the store is not taking commits ([`Degraded`]), and which failures are the environment's (a full,
//! read-only or failing disk: keep the store, retry) rather than the store's own (corruption:
//! quarantine), told from errnos and sled's messages.

use std::io;

use super::backend::BackendError;

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
        use crate::store::StoreError;
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
}
