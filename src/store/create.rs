//! Creating a store: the schema key, with the newest valid legacy file as the first generation
//! (migration 0001) in the same batch, then the schema marker; and a fresh sled after a quarantine.

use super::backend::{Backend, WriteBatch};
use super::config::StoreConfig;
use super::durable::sync_dir;
use super::error::StoreError;
use super::generation::{self, SCHEMA_KEY, SCHEMA_VERSION};
use super::layout::{LEGACY_FILE, SLED_DIR};
use super::migrate;
use super::recovery::LadderStep;
use super::schema::write_schema_marker;
use super::sled_backend::SledBackend;
use super::sled_open::open_sled;

/// Initialise a fresh store: the schema version, and (step 0001, when `migrate`) the newest valid legacy
/// JSON file as the first generation — in one atomic batch, so an interrupted creation leaves either a
/// fresh store or a migrated one.
///
/// Returns a ladder step for every legacy file rejected (each names the file and why, e.g. the field).
pub fn initialise(
    b: &dyn Backend,
    cfg: &StoreConfig,
    migrate: bool,
) -> Result<Vec<LadderStep>, StoreError> {
    let mut batch = WriteBatch::default();
    let mut steps = Vec::new();
    if migrate {
        let mut candidates = migrate::legacy_candidates(&cfg.dir.join(LEGACY_FILE));
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

/// A new, empty store in `cfg.dir/sled` (after a quarantine, or when the old one was given up).
pub fn fresh_sled(cfg: &StoreConfig) -> Result<SledBackend, StoreError> {
    let sled_dir = cfg.dir.join(SLED_DIR);
    let b = open_sled(&sled_dir, cfg.cache_capacity_bytes, false).map_err(|reason| {
        StoreError::Open {
            dir: sled_dir.clone(),
            reason,
        }
    })?;
    initialise(&b, cfg, false)?;
    // Written atomically: the marker's directory, `sled/`, is fsynced with it.
    write_schema_marker(&sled_dir)?;
    sync_dir(&cfg.dir).map_err(StoreError::io(&cfg.dir))?;
    Ok(b)
}
