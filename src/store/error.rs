//! [`StoreError`]: every way a store operation fails, and which of them are the environment's.

use std::path::PathBuf;

use super::backend::BackendError;
use super::health::{errno_in, Degraded};
use super::json_export::JsonError;
use super::layout::{SLED_CONF, SLED_DIR};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store's pid lock.
    #[error("state store is in use by pid {pid}")]
    InUse { pid: u32 },
    /// The store was written by a newer portsyncd; it is left untouched.
    #[error("state store has schema version {found}, this portsyncd supports up to {supported}; refusing to use or rewrite it")]
    NewerSchema { found: u32, supported: u32 },
    /// The directory holds no store (tools never create one, except `import`).
    #[error("{dir} is not a portsyncd state store (no {SLED_DIR}/{SLED_CONF} in it)")]
    NotAStore { dir: PathBuf },
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// sled would not open the store.
    #[error("cannot open the sled store in {dir}: {reason}")]
    Open { dir: PathBuf, reason: String },
    /// Stored data failed verification.
    #[error("corruption: {what}")]
    Corruption { what: String },
    /// The backend failed during a commit; the store now refuses commits until reopened.
    #[error("{op} failed: {source}")]
    Backend {
        op: &'static str,
        source: BackendError,
    },
    /// An earlier commit failed: the store no longer trusts its own state. Reopen it.
    #[error("store disabled after an earlier failure ({why}); reopen it")]
    Poisoned { why: String, reason: Degraded },
    /// A delta was committed to a store that has no base for it (nothing committed since it was
    /// opened): commit a full set.
    #[error("a delta needs the generation this store committed last (none since it was opened); commit a full set")]
    NoBase,
    /// No such generation, or it is not valid.
    #[error("generation {0} not found")]
    NoGeneration(u64),
    /// Input file rejected (import).
    #[error("{path}: {source}")]
    Input { path: PathBuf, source: JsonError },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
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
