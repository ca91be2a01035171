//! A store backend that models what `fsync` promises: batches applied since the last `sync` live in
//! the page cache / sled's log buffer and are lost at a crash, except for a prefix of them (sled's
//! log is replayed in order up to the first batch that did not reach the disk). A crash can be
//! armed at any backend operation of a commit (the store's crash points, in memory).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use portsyncd::store::backend::Pairs;
use portsyncd::store::{Backend, BackendError, WriteBatch};

/// What happens at the armed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArmedCrash {
    /// Backend operations (apply or sync) left before the crash (0: this one).
    pub after_ops: u32,
    /// The operation at the crash completes first (an applied batch, a finished fsync).
    pub completes: bool,
}

#[derive(Default)]
struct Inner {
    /// What survives a crash.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches applied since the last sync, in order.
    unsynced: Vec<WriteBatch>,
    /// What the process reads: `durable` with `unsynced` applied.
    current: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Planted bug: `sync` answers Ok without making anything durable (a commit acked before its sync).
    ack_before_sync: bool,
    /// Commits fail (a full or read-only disk): every apply and sync errs.
    failing: bool,
    armed: Option<ArmedCrash>,
    /// The armed crash fired: every later call errs until [`SimDisk::crash`].
    crashed: bool,
}

impl Inner {
    fn push(&mut self, b: WriteBatch) {
        apply_to(&mut self.current, &b);
        self.unsynced.push(b);
    }

    fn make_durable(&mut self) {
        for b in std::mem::take(&mut self.unsynced) {
            apply_to(&mut self.durable, &b);
        }
    }
}

fn apply_to(m: &mut BTreeMap<Vec<u8>, Vec<u8>>, b: &WriteBatch) {
    for (k, v) in &b.ops {
        match v {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
}

/// The simulated disk; clones share it (the store gets one, the simulation keeps one).
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

fn err(what: &str) -> BackendError {
    BackendError::Io(std::io::Error::other(what.to_string()))
}

impl SimDisk {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_ack_before_sync(&self, on: bool) {
        self.lock().ack_before_sync = on;
    }

    pub fn set_failing(&self, on: bool) {
        self.lock().failing = on;
    }

    pub fn arm(&self, c: ArmedCrash) {
        self.lock().armed = Some(c);
    }

    pub fn disarm(&self) {
        self.lock().armed = None;
    }

    /// The armed crash fired during the last operations.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The process died (or the power went): keep what was synced and the first `keep` of the
    /// batches applied since (at most all of them).
    pub fn crash(&self, keep: usize) {
        let mut g = self.lock();
        let unsynced = std::mem::take(&mut g.unsynced);
        for b in unsynced.iter().take(keep) {
            apply_to(&mut g.durable, b);
        }
        g.current = g.durable.clone();
        g.armed = None;
        g.crashed = false;
    }

    /// A disk holding only what is durable now (what a crash that loses every unsynced batch leaves).
    pub fn durable_copy(&self) -> SimDisk {
        let g = self.lock();
        let copy = SimDisk::default();
        {
            let mut c = copy.lock();
            c.durable = g.durable.clone();
            c.current = g.durable.clone();
        }
        copy
    }

    /// Number of batches a crash now may lose.
    pub fn unsynced(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Counts one operation against the armed crash: `Some(completes)` when it fires now.
    fn tick(g: &mut Inner) -> Option<bool> {
        let a = g.armed.as_mut()?;
        if a.after_ops > 0 {
            a.after_ops -= 1;
            return None;
        }
        let completes = a.completes;
        g.armed = None;
        g.crashed = true;
        Some(completes)
    }
}

impl Backend for SimDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let g = self.lock();
        if g.crashed {
            return Err(err("process crashed"));
        }
        Ok(g.current.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, BackendError> {
        let g = self.lock();
        if g.crashed {
            return Err(err("process crashed"));
        }
        Ok(g.current
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
        if g.crashed {
            return Err(err("process crashed"));
        }
        if let Some(completes) = Self::tick(&mut g) {
            if completes {
                g.push(batch);
            }
            return Err(err("process crashed"));
        }
        if g.failing {
            return Err(err("injected: no space left on device"));
        }
        g.push(batch);
        Ok(())
    }

    fn sync(&self) -> Result<(), BackendError> {
        let mut g = self.lock();
        if g.crashed {
            return Err(err("process crashed"));
        }
        if let Some(completes) = Self::tick(&mut g) {
            if completes && !g.ack_before_sync {
                g.make_durable();
            }
            return Err(err("process crashed"));
        }
        if g.failing {
            return Err(err("injected: fsync failed (EIO)"));
        }
        if g.ack_before_sync {
            return Ok(()); // planted bug: nothing was made durable
        }
        g.make_durable();
        Ok(())
    }
}
