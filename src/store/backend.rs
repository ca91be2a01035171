//! The narrow storage trait under the store ([`Backend`]), its errors, and the panic guard every call
//! runs under. Its implementations: sled (`sled_backend.rs`) and in memory for tests (`mem_backend.rs`).
//!
//! The store needs only: point reads, ordered prefix scans, one atomic multi-key write, and a durability
//! barrier. Everything above (framing, generations, the ladder) is backend-independent and unit-tested
//! on [`MemBackend`](super::mem_backend::MemBackend).

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
    /// Called once before the first batch of each commit: whatever the engine did on its own since
    /// the last commit (sled renames snapshot files in) is made durable before the commit's writes.
    fn begin_commit(&self) -> Result<(), BackendError> {
        Ok(())
    }
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
/// runs over; [`SledBackend`](super::sled_backend::SledBackend) guards its own calls).
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
    fn begin_commit(&self) -> Result<(), BackendError> {
        guard("begin commit", || self.0.begin_commit())
    }
    fn sync(&self) -> Result<(), BackendError> {
        guard("sync", || self.0.sync())
    }
    fn size_on_disk(&self) -> Option<u64> {
        guard("size", || Ok(self.0.size_on_disk())).ok().flatten()
    }
}
