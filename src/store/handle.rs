//! [`Store`]: open (defensively, with the recovery ladder) and commit.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{Backend, SledBackend, WriteBatch};
use super::delta;
use super::export_cache::ExportCache;
use super::fault::{crash_point, CrashPoint};
use super::generation::{self, SCHEMA_KEY, SCHEMA_VERSION};
use super::json_export;
use super::lock::{LockError, PidLock};
use super::migrate;
use super::reader::{self, GenerationInfo};
use super::record::{PortRecord, Snapshot};
use super::recovery::{self, LadderInput, LadderStep, Recovered};
use super::{unix_now, StoreError};

/// Name of sled's directory inside the state directory.
pub const SLED_DIR: &str = "sled";

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The state directory: holds `sled/`, the pid lock and (by default) the JSON export.
    pub dir: PathBuf,
    /// Generations kept (1 when rotation is off).
    pub generations: usize,
    /// Fall back to older generations and the JSON export when the newest fails (false: cold start).
    pub recovery: bool,
    /// A state older than this (by its stored timestamp) is not offered for a warm start.
    pub max_age: Duration,
    /// Where the compatibility JSON is written after each commit (None: off).
    pub json_export: Option<PathBuf>,
    /// sled's page cache.
    pub cache_capacity_bytes: u64,
}

impl StoreConfig {
    /// The daemon's defaults for `dir`: 3 generations, recovery on, 7 days, `dir/port_state.json`, a 2 MiB
    /// sled cache (sled's real memory use is several times its cache setting under churn; see docs/durability.md).
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        let dir = dir.into();
        StoreConfig {
            json_export: Some(dir.join(migrate::LEGACY_FILE)),
            dir,
            generations: 3,
            recovery: true,
            max_age: Duration::from_secs(7 * 86_400),
            cache_capacity_bytes: 2 << 20,
        }
    }
}

/// An open store. Holds the pid lock until dropped.
pub struct Store {
    backend: Box<dyn Backend>,
    cfg: StoreConfig,
    next_gen: u64,
    /// Every generation with a manifest.
    gens: BTreeSet<u64>,
    /// Port → record hash of every verified generation (records that commits may reuse).
    refs: BTreeMap<u64, BTreeMap<String, u64>>,
    /// The generation this store committed last: a delta commit applies to its port map (in `refs`).
    /// None until the first commit after open, so a delta is never applied to a recovered base.
    base: Option<u64>,
    /// The JSON export's rendered fragments of `base`'s ports (when the export is on).
    export: ExportCache,
    /// Record keys no readable manifest referred to at open (a commit interrupted between its record
    /// batches, or damage). A commit that writes one of these keys again takes it out: it now holds
    /// what the new generation references. The rest go with the next prune.
    orphans: BTreeSet<Vec<u8>>,
    poisoned: Option<(String, super::Degraded)>,
    export_failures: u64,
    /// JSON export failures repeat with every commit on a full disk: logged at most once a minute.
    export_log: crate::logging::RateLimit,
    /// The last commit's JSON export failed: it is written again when due (see [`Store::retry_export`]),
    /// so that the file does not stay behind the store on a switch where nothing changes any more.
    export_retry: Option<ExportRetry>,
    _lock: Option<PidLock>,
}

/// A JSON export to write again: what the failed one would have held, and when to try.
struct ExportRetry {
    counters: BTreeMap<String, u64>,
    saved_at: u64,
    generation: u64,
    due: std::time::Instant,
    backoff: crate::backoff::Backoff,
}

/// First delay before a failed JSON export is written again; it doubles up to [`EXPORT_RETRY_MAX`].
const EXPORT_RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const EXPORT_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

fn lock_err(e: LockError) -> StoreError {
    match e {
        LockError::Held { pid } => StoreError::InUse { pid },
        LockError::Io { path, err } => StoreError::Io { path, source: err },
    }
}

/// Rename `<dir>/sled` to `<dir>/sled.quarantine-<unix>[-n]` (never deleted) and fsync `dir`.
fn quarantine(dir: &Path) -> Result<PathBuf, StoreError> {
    let from = dir.join(SLED_DIR);
    let now = unix_now();
    let mut to = dir.join(format!("{SLED_DIR}.quarantine-{now}"));
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{SLED_DIR}.quarantine-{now}-{n}"));
        n += 1;
    }
    fs::rename(&from, &to).map_err(StoreError::io(&from))?;
    json_export::sync_dir(dir).map_err(StoreError::io(dir))?;
    tracing::error!(from = %from.display(), to = %to.display(), "state store quarantined");
    Ok(to)
}

/// What the schema check found.
enum SchemaState {
    Current,
    /// No schema and no generations: a new store (or one whose creation was interrupted).
    Fresh,
    Damaged(String),
}

/// Check the schema of an opened backend; a newer one is an error (nothing is written).
fn check_schema(b: &dyn Backend) -> Result<SchemaState, StoreError> {
    Ok(match generation::read_schema(b) {
        Ok(Some(v)) if v > SCHEMA_VERSION => {
            return Err(StoreError::NewerSchema {
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        Ok(Some(v)) if v == SCHEMA_VERSION => SchemaState::Current,
        Ok(Some(v)) => SchemaState::Damaged(format!("unknown schema version {v}")),
        Ok(None) => match generation::list(b) {
            Ok(g) if g.is_empty() => SchemaState::Fresh,
            Ok(_) => SchemaState::Damaged("schema version missing".into()),
            Err(e) => SchemaState::Damaged(format!("cannot read: {e}")),
        },
        Err(e) => SchemaState::Damaged(format!("cannot read the schema version: {e}")),
    })
}

/// Initialise a fresh store: the schema version, and (step 0001, when `migrate`) the newest valid legacy
/// JSON file as the first generation — in one atomic batch, so an interrupted creation leaves either a
/// fresh store or a migrated one.
///
/// Returns a ladder step for every legacy file rejected (each names the file and why, e.g. the field).
fn initialise(
    b: &dyn Backend,
    cfg: &StoreConfig,
    migrate: bool,
) -> Result<Vec<LadderStep>, StoreError> {
    let mut batch = WriteBatch::default();
    let mut steps = Vec::new();
    if migrate {
        let mut candidates = migrate::legacy_candidates(&cfg.dir.join(migrate::LEGACY_FILE));
        if let Some(p) = &cfg.json_export {
            for c in migrate::legacy_candidates(p) {
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
        }
        let legacy = migrate::read_legacy(&candidates);
        // Each rejection is already logged by `read_legacy`.
        steps.extend(legacy.rejected.iter().map(|(path, e)| LadderStep {
            from: format!("legacy file {}", path.display()),
            reason: e.to_string(),
        }));
        if let Some((path, st)) = legacy.chosen {
            // The parser bounds a file's generation (limits::MAX_FILE_GENERATION): this cannot saturate,
            // and the store's numbers have room to grow from it.
            let gen = st.generation.unwrap_or(0).saturating_add(1);
            batch = generation::build(gen, &st.snapshot, st.saved_at, &generation::NothingStored).0;
            tracing::info!(file = %path.display(), generation = gen, ports = st.snapshot.ports.len(), "importing legacy state");
        }
    }
    batch.put(SCHEMA_KEY.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec());
    b.apply(batch).map_err(|source| StoreError::Backend {
        op: "initialising the store",
        source,
    })?;
    b.sync().map_err(|source| StoreError::Backend {
        op: "initialising the store",
        source,
    })?;
    Ok(steps)
}

impl Store {
    /// Open the store in `cfg.dir` (created if missing), take the pid lock, and run the recovery ladder.
    ///
    /// sled's open runs under `catch_unwind`; if it fails, leftover `snap.*.generating` files are moved
    /// aside and the open retried; if it still fails, `sled/` is quarantined (renamed, never deleted), the
    /// ladder continues with the JSON export, and a fresh store is created so commits work. A brand-new
    /// store imports the legacy `port_state.json` (migration 0001).
    pub fn open(cfg: StoreConfig) -> Result<(Store, Recovered), StoreError> {
        Store::open_inner(cfg, true)
    }

    /// Like [`Store::open`] without the automatic legacy import (used by `portsyncd-state import`).
    pub fn open_without_migration(cfg: StoreConfig) -> Result<(Store, Recovered), StoreError> {
        Store::open_inner(cfg, false)
    }

    fn open_inner(cfg: StoreConfig, migrate: bool) -> Result<(Store, Recovered), StoreError> {
        if !cfg.dir.exists() {
            super::private::create_dir(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
            if let Some(parent) = cfg.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                json_export::sync_dir(parent).map_err(StoreError::io(parent))?;
            }
        }
        let lock = PidLock::acquire(&cfg.dir).map_err(lock_err)?;
        super::private::tighten(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
        let sled_dir = cfg.dir.join(SLED_DIR);
        reader::check_schema_marker(&sled_dir)?;
        let mut steps = Vec::new();
        let mut backend = match reader::open_sled(&sled_dir, cfg.cache_capacity_bytes, true) {
            Ok(b) => Some(b),
            Err(reason) => {
                // sled failed on a full, read-only or failing disk, or its file lock stayed busy:
                // the store is kept, the caller retries. (Any other failure is quarantined, if the
                // disk takes writes.)
                if super::health::errno_in(&reason).is_some_and(super::health::environmental_errno)
                    || reader::lock_busy(&reason)
                {
                    return Err(StoreError::Open {
                        dir: sled_dir.clone(),
                        reason,
                    });
                }
                Store::give_up_on_sled(&cfg.dir, reason, &mut steps)?;
                None
            }
        };
        if let Some(b) = &backend {
            match check_schema(b)? {
                SchemaState::Current => {
                    // A creation interrupted between sled's first batch and the marker: finish it.
                    if !sled_dir.join(reader::SCHEMA_MARKER).exists() {
                        reader::write_schema_marker(&sled_dir)?;
                    }
                }
                SchemaState::Fresh if sled_dir.join(reader::SCHEMA_MARKER).exists() => {
                    // The marker is written after the schema key is durable: sled lost its data
                    // (e.g. a destroyed `db` that sled reopens as empty). Not a new store.
                    backend = None;
                    let why = "sled opened empty although the store was created (schema marker \
                               present): its log was lost"
                        .to_string();
                    Store::give_up_on_sled(&cfg.dir, why, &mut steps)?;
                }
                SchemaState::Fresh => {
                    steps.extend(initialise(b, &cfg, migrate)?);
                    reader::write_schema_marker(&sled_dir)?;
                    json_export::sync_dir(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
                }
                SchemaState::Damaged(why) => {
                    backend = None;
                    Store::give_up_on_sled(&cfg.dir, why, &mut steps)?;
                }
            }
        }
        let outcome = recovery::run(LadderInput {
            backend: backend.as_ref().map(|b| b as &dyn Backend),
            json_export: cfg.json_export.as_deref(),
            recovery: cfg.recovery,
            max_age: cfg.max_age,
            now: unix_now(),
            steps,
        });
        if outcome.unreadable {
            backend = None;
            super::health::probe_writable(&cfg.dir)?;
            quarantine(&cfg.dir)?;
        }
        let backend = match backend {
            Some(b) => b,
            None => Store::fresh_sled(&cfg)?,
        };
        let mut store = Store::assemble(Box::new(backend), cfg, Some(lock))?;
        store.next_gen = store.next_gen.max(outcome.max_generation.saturating_add(1));
        Ok((store, outcome.recovered))
    }

    fn give_up_on_sled(
        dir: &Path,
        reason: String,
        steps: &mut Vec<LadderStep>,
    ) -> Result<(), StoreError> {
        // Only damage on a healthy disk is quarantined: where the disk itself fails, moving the store
        // aside (on the same disk) would lose it for nothing.
        super::health::probe_writable(dir)?;
        let to = quarantine(dir)?;
        let from = "sled store".to_string();
        let reason = format!("{reason}; quarantined to {}", to.display());
        tracing::warn!(from = %from, reason = %reason, "state recovery: stepping down");
        steps.push(LadderStep { from, reason });
        Ok(())
    }

    fn fresh_sled(cfg: &StoreConfig) -> Result<SledBackend, StoreError> {
        let sled_dir = cfg.dir.join(SLED_DIR);
        let b =
            reader::open_sled(&sled_dir, cfg.cache_capacity_bytes, false).map_err(|reason| {
                StoreError::Open {
                    dir: sled_dir.clone(),
                    reason,
                }
            })?;
        initialise(&b, cfg, false)?;
        reader::write_schema_marker(&sled_dir)?;
        json_export::sync_dir(&sled_dir).map_err(StoreError::io(&sled_dir))?;
        json_export::sync_dir(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
        Ok(b)
    }

    fn assemble(
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
        Ok(Store {
            backend,
            cfg,
            next_gen,
            gens,
            refs,
            base: None,
            export: ExportCache::default(),
            orphans,
            poisoned: None,
            export_failures: 0,
            export_log: crate::logging::RateLimit::new(std::time::Duration::from_secs(60)),
            export_retry: None,
            _lock: lock,
        })
    }

    /// Open over any backend (tests, other engines): schema check and the ladder, no pid lock, no
    /// quarantine, no migration. Every backend call runs under a panic guard.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        cfg: StoreConfig,
    ) -> Result<(Store, Recovered), StoreError> {
        let backend: Box<dyn Backend> = Box::new(super::backend::Guarded(backend));
        match check_schema(backend.as_ref())? {
            SchemaState::Current => {}
            SchemaState::Fresh => {
                initialise(backend.as_ref(), &cfg, false)?;
            }
            SchemaState::Damaged(what) => return Err(StoreError::Corruption { what }),
        }
        let outcome = recovery::run(LadderInput {
            backend: Some(backend.as_ref()),
            json_export: cfg.json_export.as_deref(),
            recovery: cfg.recovery,
            max_age: cfg.max_age,
            now: unix_now(),
            steps: Vec::new(),
        });
        let mut store = Store::assemble(backend, cfg, None)?;
        store.next_gen = store.next_gen.max(outcome.max_generation.saturating_add(1));
        Ok((store, outcome.recovered))
    }

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
        if let Some((why, reason)) = &self.poisoned {
            return Err(StoreError::Poisoned {
                why: why.clone(),
                reason: *reason,
            });
        }
        let base = if full {
            None
        } else {
            match self.base.and_then(|g| self.refs.get(&g)) {
                Some(b) => Some(b),
                None => return Err(StoreError::NoBase),
            }
        };
        let gen = self.next_gen;
        if gen > super::limits::MAX_GENERATION {
            return Err(StoreError::Corruption {
                what: format!(
                    "generation numbers exhausted (next would be {gen}, at most {})",
                    super::limits::MAX_GENERATION
                ),
            });
        }
        let refs = &self.refs;
        let stored = |name: &str, hash: u64| refs.values().any(|p| p.get(name) == Some(&hash));
        let backend = &self.backend;
        let orphans = &mut self.orphans;
        let mut first = true;
        let mut sink = |batch: WriteBatch, last: bool| -> Result<(), super::BackendError> {
            if first {
                crash_point(CrashPoint::BeforeApply);
                first = false;
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
        };
        let export = self.cfg.json_export.is_some().then_some(&mut self.export);
        let built = delta::build(
            gen, base, ports, counters, saved_at, &stored, export, &mut sink,
        )
        .and_then(|built| {
            crash_point(CrashPoint::AfterApply);
            self.backend.sync().map(|()| built)
        });
        let built = match built {
            Ok(b) => b,
            Err(source) => return Err(self.poison("commit", source)),
        };
        crash_point(CrashPoint::AfterSync);
        self.next_gen = gen.saturating_add(1);
        self.gens.insert(gen);
        self.base = Some(gen);
        let port_count = built.manifest.ports.len();
        self.refs.insert(gen, built.manifest.ports);
        self.prune(gen)?;
        crash_point(CrashPoint::AfterPrune);
        self.export_retry = None;
        self.write_export(counters, saved_at, gen);
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

    fn poison(&mut self, op: &'static str, source: super::BackendError) -> StoreError {
        let why = format!("{op} failed: {source}");
        tracing::error!(error = %why, "state store disabled until reopened");
        self.poisoned = Some((why, super::Degraded::of_backend(&source)));
        StoreError::Backend { op, source }
    }

    /// Remove generations older than the newest `cfg.generations` (the new one is already durable). The
    /// removal is not fsynced on its own: the next commit's fsync or sled's background flush covers it,
    /// and sled replays its log in order, so it can never land without the generation that replaced it.
    fn prune(&mut self, newest: u64) -> Result<(), StoreError> {
        let keep = self.cfg.generations.max(1) as u64;
        let (old, kept): (Vec<u64>, Vec<u64>) = self
            .gens
            .iter()
            .partition(|&&g| g.saturating_add(keep) <= newest);
        if old.is_empty() && self.orphans.is_empty() {
            return Ok(());
        }
        let orphans = std::mem::take(&mut self.orphans);
        let b = self.backend.as_ref();
        // Port maps of the kept generations (unverified ones read from their manifest, if readable).
        let unverified: BTreeMap<u64, BTreeMap<String, u64>> = kept
            .iter()
            .chain(&old)
            .filter(|g| !self.refs.contains_key(g))
            .filter_map(|&g| generation::read_manifest(b, g).ok().map(|m| (g, m.ports)))
            .collect();
        let ports_of = |g: &u64| self.refs.get(g).or_else(|| unverified.get(g));
        let still_used = |name: &str, hash: u64| {
            kept.iter()
                .any(|g| ports_of(g).is_some_and(|p| p.get(name) == Some(&hash)))
        };
        let mut batch = WriteBatch::default();
        let mut dropped = BTreeSet::new();
        for g in &old {
            batch.remove(generation::manifest_key(*g));
            for (n, &h) in ports_of(g).into_iter().flatten() {
                if !still_used(n, h) && dropped.insert((n.clone(), h)) {
                    batch.remove(generation::record_key(n, h));
                }
            }
        }
        for k in orphans {
            // Never delete a record a kept generation (the new one included) refers to.
            if generation::parse_record_key(&k).is_some_and(|(n, h)| still_used(n, h)) {
                continue;
            }
            batch.remove(k);
        }
        if let Err(source) = self.backend.apply(batch) {
            return Err(self.poison("prune", source));
        }
        for g in old {
            self.gens.remove(&g);
            self.refs.remove(&g);
        }
        Ok(())
    }

    /// Every stored generation, newest first, each verified.
    pub fn generations(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        reader::describe(self.backend.as_ref())
    }

    /// Load and verify one stored generation.
    pub fn load(&self, gen: u64) -> Result<(super::Manifest, Snapshot), generation::Invalid> {
        generation::load(self.backend.as_ref(), gen)
    }

    /// The generation the next commit will get.
    pub fn next_generation(&self) -> u64 {
        self.next_gen
    }

    /// JSON export failures since open.
    pub fn export_failures(&self) -> u64 {
        self.export_failures
    }

    /// Writes the JSON export of generation `gen`; on failure (a full disk, say) it is counted, logged
    /// at most once a minute and scheduled to be written again ([`Store::retry_export`]).
    fn write_export(&mut self, counters: &BTreeMap<String, u64>, saved_at: u64, gen: u64) {
        let Some(path) = &self.cfg.json_export else {
            return;
        };
        let Err(e) = self.export.write_atomic(path, counters, saved_at, gen) else {
            if self.export_retry.take().is_some() {
                tracing::info!(path = %path.display(), generation = gen, "JSON export written again");
            }
            return;
        };
        self.export_failures += 1;
        if let Some(suppressed) = self.export_log.allow(std::time::Instant::now()) {
            tracing::warn!(path = %path.display(), error = %e, generation = gen, suppressed, "JSON export failed (the commit stands); it is written again later");
        }
        let mut backoff = match self.export_retry.take() {
            Some(r) => r.backoff,
            None => crate::backoff::Backoff::new(EXPORT_RETRY_MIN, EXPORT_RETRY_MAX),
        };
        self.export_retry = Some(ExportRetry {
            counters: counters.clone(),
            saved_at,
            generation: gen,
            due: std::time::Instant::now() + backoff.next_delay(),
            backoff,
        });
    }

    /// When a failed JSON export is due to be written again (None: the export is current).
    pub fn export_retry_at(&self) -> Option<std::time::Instant> {
        self.export_retry.as_ref().map(|r| r.due)
    }

    /// Writes the JSON export of the last commit again if an earlier write failed and the retry is
    /// due at `now` (1 s doubling to 60 s). A commit rewrites it anyway; this is for a switch where
    /// nothing changes after the disk came back.
    pub fn retry_export(&mut self, now: std::time::Instant) {
        let Some(r) = self.export_retry.as_ref().filter(|r| r.due <= now) else {
            return;
        };
        if self.poisoned.is_some() || self.base != Some(r.generation) {
            return;
        }
        let (counters, saved_at, gen) = (r.counters.clone(), r.saved_at, r.generation);
        self.write_export(&counters, saved_at, gen);
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
