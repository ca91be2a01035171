//! [`MemBackend`]: an in-memory backend with fault knobs, for tests (of the store and of programs
//! that use it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::backend::{Backend, BackendError, Pairs, WriteBatch};

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
    /// Fail every `begin_commit` from now on.
    pub fail_begin: bool,
}

#[derive(Default)]
struct MemInner {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    faults: Faults,
    applies: usize,
    syncs: usize,
    begins: usize,
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

    /// `begin_commit` calls so far.
    pub fn begins(&self) -> usize {
        self.lock().begins
    }
}

impl MemBackend {
    /// The store's state for a read, unless a read fault is armed: a panic (with the lock let go
    /// first, as a real backend's panic would not hold it) or an error.
    fn lock_for_read(&self) -> Result<MutexGuard<'_, MemInner>, BackendError> {
        let g = self.lock();
        if g.faults.panic_read {
            drop(g);
            panic!("injected read panic");
        }
        if g.faults.fail_read {
            return Err(injected("read"));
        }
        Ok(g)
    }
}

impl Backend for MemBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let g = self.lock_for_read()?;
        Ok(g.map.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError> {
        let g = self.lock_for_read()?;
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

    fn begin_commit(&self) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.faults.fail_begin {
            return Err(injected("begin commit"));
        }
        g.begins += 1;
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
