//! Committing a generation: its new records in batches, the manifest last, flush, fsync, then
//! acknowledged; pruning and the JSON export after. Any backend failure poisons the store.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use super::backend::{Backend, BackendError, WriteBatch};
use super::clock::unix_now;
use super::delta::{self, Built};
use super::error::StoreError;
use super::fault::{crash_point, CrashPoint};
use super::handle::Store;
use super::health::Degraded;
use super::limits;
use super::record::{PortRecord, Snapshot};

impl Store {
    /// Commit `snap` as a new generation, stamped now. Durable when `Ok`.
    pub fn commit(&mut self, snap: &Snapshot) -> Result<u64, StoreError> {
        self.commit_at(snap, unix_now())
    }

    /// Commit `snap` with an explicit `saved_at` (unix seconds; the legacy import keeps the file's time).
    /// A full set: see [`Store::commit_changes_at`].
    pub fn commit_at(&mut self, snap: &Snapshot, saved_at: u64) -> Result<u64, StoreError> {
        let ports = snap.ports.iter().map(|(n, r)| (n.as_str(), Some(r)));
        self.commit_changes_at(true, ports, &snap.counters, saved_at)
    }

    /// True when [`Store::commit_changes`] takes a delta: this store committed before (since it was
    /// opened) and has not failed since. Otherwise only a full set is accepted.
    pub fn takes_delta(&self) -> bool {
        self.base.is_some() && self.poisoned.is_none()
    }

    /// Commit a new generation, stamped now: a full set of ports (`full`), or the changes since this
    /// store's last commit (a changed port with its record, a removed one with `None`).
    pub fn commit_changes<I, N, R>(
        &mut self,
        full: bool,
        ports: I,
        counters: &BTreeMap<String, u64>,
    ) -> Result<u64, StoreError>
    where
        I: IntoIterator<Item = (N, Option<R>)>,
        N: Into<String>,
        R: Borrow<PortRecord>,
    {
        self.commit_changes_at(full, ports, counters, unix_now())
    }

    /// [`Store::commit_changes`] with an explicit `saved_at`.
    ///
    /// Protocol: the new or changed records in batches of at most [`delta::RECORDS_PER_BATCH`], the
    /// manifest in the last batch → sled `flush()` → `fsync(db)` → acknowledged; then prune
    /// generations beyond the configured count; then rewrite the JSON export (a failure there is logged
    /// and counted in [`Store::export_failures`], the commit stands). After any backend failure the store
    /// is poisoned: every later commit fails fast with [`StoreError::Poisoned`] until reopened, because
    /// it can no longer tell what reached the disk. A delta without a base ([`Store::takes_delta`]
    /// false) is refused with [`StoreError::NoBase`], nothing written.
    pub fn commit_changes_at<I, N, R>(
        &mut self,
        full: bool,
        ports: I,
        counters: &BTreeMap<String, u64>,
        saved_at: u64,
    ) -> Result<u64, StoreError>
    where
        I: IntoIterator<Item = (N, Option<R>)>,
        N: Into<String>,
        R: Borrow<PortRecord>,
    {
        self.refuse_if_poisoned()?;
        let (gen, built) = self.write_generation(full, ports, counters, saved_at)?;
        crash_point(CrashPoint::AfterSync);
        self.next_gen = gen.saturating_add(1);
        self.gens.insert(gen);
        self.base = Some(gen);
        let port_count = built.manifest.ports.len();
        self.refs.insert(gen, built.manifest.ports);
        self.prune(gen)?;
        crash_point(CrashPoint::AfterPrune);
        self.export.forget_retry();
        self.export.write(counters, saved_at, gen);
        crash_point(CrashPoint::AfterExport);
        tracing::debug!(
            generation = gen,
            ports = port_count,
            records_written = built.records_written,
            full,
            "state committed"
        );
        Ok(gen)
    }

    /// [`StoreError::Poisoned`] once an earlier commit failed.
    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some((why, reason)) => Err(StoreError::Poisoned {
                why: why.clone(),
                reason: *reason,
            }),
            None => Ok(()),
        }
    }

    /// Writes the next generation (its new records in batches, the manifest last) and makes it
    /// durable (`sync`): the commit up to its acknowledgement. A backend failure poisons the store.
    fn write_generation<I, N, R>(
        &mut self,
        full: bool,
        ports: I,
        counters: &BTreeMap<String, u64>,
        saved_at: u64,
    ) -> Result<(u64, Built), StoreError>
    where
        I: IntoIterator<Item = (N, Option<R>)>,
        N: Into<String>,
        R: Borrow<PortRecord>,
    {
        let base = if full {
            None
        } else {
            match self.base.and_then(|g| self.refs.get(&g)) {
                Some(b) => Some(b),
                None => return Err(StoreError::NoBase),
            }
        };
        let gen = self.next_gen;
        if gen > limits::MAX_GENERATION {
            return Err(StoreError::Corruption {
                what: format!(
                    "generation numbers exhausted (next would be {gen}, at most {})",
                    limits::MAX_GENERATION
                ),
            });
        }
        let refs = &self.refs;
        let stored = |name: &str, hash: u64| refs.values().any(|p| p.get(name) == Some(&hash));
        let backend = self.backend.as_ref();
        let orphans = &mut self.orphans;
        let mut first = true;
        let mut sink =
            |batch: WriteBatch, last: bool| apply_batch(backend, orphans, &mut first, batch, last);
        let export = self.export.cache_mut();
        let built = delta::build(
            gen, base, ports, counters, saved_at, &stored, export, &mut sink,
        )
        .and_then(|built| {
            crash_point(CrashPoint::AfterApply);
            backend.sync().map(|()| built)
        });
        match built {
            Ok(b) => Ok((gen, b)),
            Err(source) => Err(self.poison("commit", source)),
        }
    }

    pub(super) fn poison(&mut self, op: &'static str, source: BackendError) -> StoreError {
        let why = format!("{op} failed: {source}");
        tracing::error!(error = %why, "state store disabled until reopened");
        self.poisoned = Some((why, Degraded::of_backend(&source)));
        StoreError::Backend { op, source }
    }
}

/// Applies one batch of a commit: a record key written again is no longer an orphan (it now holds
/// what the new generation references). The crash points of the commit protocol are here.
fn apply_batch(
    backend: &dyn Backend,
    orphans: &mut BTreeSet<Vec<u8>>,
    first: &mut bool,
    batch: WriteBatch,
    last: bool,
) -> Result<(), BackendError> {
    if *first {
        crash_point(CrashPoint::BeforeApply);
        *first = false;
        backend.begin_commit()?;
    }
    if !orphans.is_empty() {
        // Rewritten now: referenced by this generation, no longer an orphan.
        for (key, _) in &batch.ops {
            orphans.remove(key);
        }
    }
    backend.apply(batch)?;
    if !last {
        crash_point(CrashPoint::BetweenBatches);
    }
    Ok(())
}
