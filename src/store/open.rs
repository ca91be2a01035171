//! Opening a store: [`Store::open`] as a sequence of named steps (the state directory, the pid lock,
//! the schema, sled's defensive open or quarantine, creation), then the recovery ladder.
//!
//! The steps and what each guarantees are `docs/durability.md`, "The recovery ladder": 1. the pid lock
//! ([`take_lock`]), 2. the schema ([`check_schema_marker`] before sled opens, [`settle_schema`] after),
//! 3. sled's open or its quarantine ([`open_or_give_up`]); then the ladder ([`climb`]).

use std::path::Path;

use super::backend::{Backend, Guarded};
use super::clock::unix_now;
use super::config::StoreConfig;
use super::create::{fresh_sled, initialise};
use super::durable::sync_dir;
use super::error::StoreError;
use super::handle::Store;
use super::health::{environmental_errno, errno_in};
use super::layout::{SCHEMA_MARKER, SLED_DIR};
use super::lock::{LockError, PidLock};
use super::private;
use super::quarantine::{give_up_on_sled, probe_writable, quarantine};
use super::recovery::{self, LadderInput, LadderOutcome, LadderStep, Recovered};
use super::schema::{check_schema, check_schema_marker, write_schema_marker, SchemaState};
use super::sled_backend::SledBackend;
use super::sled_open::{lock_busy, open_sled};

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
        prepare_dir(&cfg.dir)?;
        // 1. The pid lock.
        let lock = take_lock(&cfg.dir)?;
        // 2. The schema marker, before sled opens.
        check_schema_marker(&cfg.dir.join(SLED_DIR))?;
        // 3. sled, or its quarantine; then 2. again inside sled (creating a fresh store).
        let mut steps = Vec::new();
        let backend = match open_or_give_up(&cfg, &mut steps)? {
            Some(b) => settle_schema(b, &cfg, migrate, &mut steps)?,
            None => None,
        };
        // The ladder.
        let outcome = climb(backend.as_ref().map(|b| b as &dyn Backend), &cfg, steps);
        let backend = match backend {
            Some(b) if outcome.unreadable => {
                // Generations that cannot even be listed: quarantined (closed before it is moved).
                drop(b);
                probe_writable(&cfg.dir)?;
                quarantine(&cfg.dir)?;
                fresh_sled(&cfg)?
            }
            Some(b) => b,
            None => fresh_sled(&cfg)?,
        };
        Store::finish_open(Box::new(backend), cfg, Some(lock), outcome)
    }

    /// Open over any backend (tests, other engines): schema check and the ladder, no pid lock, no
    /// quarantine, no migration. Every backend call runs under a panic guard.
    pub fn with_backend(
        backend: Box<dyn Backend>,
        cfg: StoreConfig,
    ) -> Result<(Store, Recovered), StoreError> {
        let backend: Box<dyn Backend> = Box::new(Guarded(backend));
        match check_schema(backend.as_ref())? {
            SchemaState::Current => {}
            SchemaState::Fresh => {
                initialise(backend.as_ref(), &cfg, false)?;
            }
            SchemaState::Damaged(what) => return Err(StoreError::Corruption { what }),
        }
        let outcome = climb(Some(backend.as_ref()), &cfg, Vec::new());
        Store::finish_open(backend, cfg, None, outcome)
    }

    /// The store over `backend`, numbering its next generation above every one the ladder saw.
    fn finish_open(
        backend: Box<dyn Backend>,
        cfg: StoreConfig,
        lock: Option<PidLock>,
        outcome: LadderOutcome,
    ) -> Result<(Store, Recovered), StoreError> {
        let mut store = Store::assemble(backend, cfg, lock)?;
        store.next_gen = store.next_gen.max(outcome.max_generation.saturating_add(1));
        Ok((store, outcome.recovered))
    }
}

/// The state directory, created 0700 if missing (and its parent fsynced, so the entry survives).
fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    if !dir.exists() {
        private::create_dir(dir).map_err(StoreError::io(dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(StoreError::io(parent))?;
        }
    }
    Ok(())
}

/// Step 1: the pid lock (held → [`StoreError::InUse`]), then the directory's modes tightened.
fn take_lock(dir: &Path) -> Result<PidLock, StoreError> {
    let lock = PidLock::acquire(dir).map_err(|e| match e {
        LockError::Held { pid } => StoreError::InUse { pid },
        LockError::Io { path, err } => StoreError::Io { path, source: err },
    })?;
    private::tighten(dir).map_err(StoreError::io(dir))?;
    Ok(lock)
}

/// Step 3: sled opened defensively ([`open_sled`]). A failure of the disk (an environmental errno) or
/// a busy file lock is returned: the store is kept, the caller retries. Any other failure quarantines
/// `sled/` (if the disk takes writes), notes the step, and gives `None`.
fn open_or_give_up(
    cfg: &StoreConfig,
    steps: &mut Vec<LadderStep>,
) -> Result<Option<SledBackend>, StoreError> {
    let sled_dir = cfg.dir.join(SLED_DIR);
    match open_sled(&sled_dir, cfg.cache_capacity_bytes, true) {
        Ok(b) => Ok(Some(b)),
        Err(reason) if errno_in(&reason).is_some_and(environmental_errno) || lock_busy(&reason) => {
            Err(StoreError::Open {
                dir: sled_dir,
                reason,
            })
        }
        Err(reason) => {
            give_up_on_sled(&cfg.dir, reason, steps)?;
            Ok(None)
        }
    }
}

/// Step 2, inside sled: `meta/schema`. Newer → refused (nothing written). A fresh store is created
/// (with the legacy import when `migrate`); a damaged one, or one that opened empty although its
/// marker says it was created (sled lost its log), is quarantined (`None`).
fn settle_schema(
    b: SledBackend,
    cfg: &StoreConfig,
    migrate: bool,
    steps: &mut Vec<LadderStep>,
) -> Result<Option<SledBackend>, StoreError> {
    let sled_dir = cfg.dir.join(SLED_DIR);
    let marker = sled_dir.join(SCHEMA_MARKER).exists();
    let why = match check_schema(&b)? {
        SchemaState::Current => {
            // A creation interrupted between sled's first batch and the marker: finish it.
            if !marker {
                write_schema_marker(&sled_dir)?;
            }
            return Ok(Some(b));
        }
        // The marker is written after the schema key is durable: sled lost its data (e.g. a
        // destroyed `db` that sled reopens as empty). Not a new store.
        SchemaState::Fresh if marker => "sled opened empty although the store was created (schema \
                                         marker present): its log was lost"
            .to_string(),
        SchemaState::Fresh => {
            steps.extend(initialise(&b, cfg, migrate)?);
            write_schema_marker(&sled_dir)?;
            sync_dir(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
            return Ok(Some(b));
        }
        SchemaState::Damaged(why) => why,
    };
    // Closed before its directory is moved.
    drop(b);
    give_up_on_sled(&cfg.dir, why, steps)?;
    Ok(None)
}

/// The recovery ladder over what the steps above left (see `recovery.rs`).
fn climb(
    backend: Option<&dyn Backend>,
    cfg: &StoreConfig,
    steps: Vec<LadderStep>,
) -> LadderOutcome {
    recovery::run(LadderInput {
        backend,
        json_export: cfg.json_export.as_deref(),
        recovery: cfg.recovery,
        max_age: cfg.max_age,
        now: unix_now(),
        steps,
    })
}
