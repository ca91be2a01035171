//! [`Store`]: an open store, what it holds (the generations, the verified port maps that commits
//! reuse, orphan records, whether it is poisoned) and what it answers. Opening is `open.rs`,
//! committing `commit.rs`, pruning `prune.rs`, the JSON export `export_writer.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::backend::Backend;
use super::config::StoreConfig;
use super::error::StoreError;
use super::export_writer::ExportWriter;
use super::generation::{self, Manifest};
use super::health::Degraded;
use super::info::{describe, GenerationInfo};
use super::lock::PidLock;
use super::record::Snapshot;

/// An open store. Holds the pid lock until dropped.
pub struct Store {
    pub(super) backend: Box<dyn Backend>,
    pub(super) cfg: StoreConfig,
    pub(super) next_gen: u64,
    /// Every generation with a manifest.
    pub(super) gens: BTreeSet<u64>,
    /// Port → record hash of every verified generation (records that commits may reuse).
    pub(super) refs: BTreeMap<u64, BTreeMap<String, u64>>,
    /// The generation this store committed last: a delta commit applies to its port map (in `refs`).
    /// None until the first commit after open, so a delta is never applied to a recovered base.
    pub(super) base: Option<u64>,
    /// The JSON export: `base`'s ports rendered, written after each commit.
    pub(super) export: ExportWriter,
    /// Record keys no readable manifest referred to at open (a commit interrupted between its record
    /// batches, or damage). A commit that writes one of these keys again takes it out: it now holds
    /// what the new generation references. The rest go with the next prune.
    pub(super) orphans: BTreeSet<Vec<u8>>,
    pub(super) poisoned: Option<(String, Degraded)>,
    pub(super) _lock: Option<PidLock>,
}

impl Store {
    pub(super) fn assemble(
        backend: Box<dyn Backend>,
        cfg: StoreConfig,
        lock: Option<PidLock>,
    ) -> Result<Store, StoreError> {
        let b = backend.as_ref();
        let listing = |source| StoreError::Backend {
            op: "listing generations",
            source,
        };
        let gens: BTreeSet<u64> = generation::list(b).map_err(listing)?.into_iter().collect();
        // Only records of fully verified generations are reused by later commits.
        let mut refs = BTreeMap::new();
        let mut referenced = BTreeSet::new();
        for &g in &gens {
            if let Ok(m) = generation::read_manifest(b, g) {
                referenced.extend(m.ports.iter().map(|(n, &h)| generation::record_key(n, h)));
            }
            if let Ok((m, _)) = generation::load(b, g) {
                refs.insert(g, m.ports);
            }
        }
        // Records no readable manifest refers to (left by damage) go with the next prune.
        let orphans = generation::record_keys(b)
            .map_err(listing)?
            .into_iter()
            .filter(|k| !referenced.contains(k))
            .collect();
        // `list` bounds generation numbers (limits::MAX_GENERATION): no overflow.
        let next_gen = gens.last().map_or(1, |g| g.saturating_add(1));
        let export = ExportWriter::new(cfg.json_export.clone());
        Ok(Store {
            backend,
            cfg,
            next_gen,
            gens,
            refs,
            base: None,
            export,
            orphans,
            poisoned: None,
            _lock: lock,
        })
    }

    /// Every stored generation, newest first, each verified.
    pub fn generations(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        describe(self.backend.as_ref())
    }

    /// Load and verify one stored generation.
    pub fn load(&self, gen: u64) -> Result<(Manifest, Snapshot), generation::Invalid> {
        generation::load(self.backend.as_ref(), gen)
    }

    /// The generation the next commit will get.
    pub fn next_generation(&self) -> u64 {
        self.next_gen
    }

    /// JSON export failures since open.
    pub fn export_failures(&self) -> u64 {
        self.export.failures()
    }

    /// When a failed JSON export is due to be written again (None: the export is current).
    pub fn export_retry_at(&self) -> Option<std::time::Instant> {
        self.export.retry_at()
    }

    /// Writes the JSON export of the last commit again if an earlier write failed and the retry is
    /// due at `now` (1 s doubling to 60 s). A commit rewrites it anyway; this is for a switch where
    /// nothing changes after the disk came back.
    pub fn retry_export(&mut self, now: std::time::Instant) {
        let current = self.base.filter(|_| self.poisoned.is_none());
        self.export.retry_due(now, current);
    }

    /// Why commits are refused, if they are.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_ref().map(|(why, _)| why.as_str())
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Bytes on disk, when the backend knows.
    pub fn size_on_disk(&self) -> Option<u64> {
        self.backend.size_on_disk()
    }
}
