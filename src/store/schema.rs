//! The schema version: the marker file read before sled opens, `meta/schema` inside sled, and what an
//! opened store's schema means (current, fresh, damaged, or newer: refused, nothing written).

use std::fs;
use std::path::Path;

use super::backend::Backend;
use super::durable::write_atomic;
use super::error::StoreError;
use super::generation::{self, SCHEMA_VERSION};
use super::layout::{SCHEMA_MARKER, SLED_CONF};

/// What the schema check found.
pub enum SchemaState {
    Current,
    /// No schema and no generations: a new store (or one whose creation was interrupted).
    Fresh,
    Damaged(String),
}

/// Check the schema of an opened backend; a newer one is an error (nothing is written).
pub fn check_schema(b: &dyn Backend) -> Result<SchemaState, StoreError> {
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

/// Refuse a store whose schema marker names a newer schema.
pub fn check_schema_marker(sled_dir: &Path) -> Result<(), StoreError> {
    match fs::read_to_string(sled_dir.join(SCHEMA_MARKER)) {
        Ok(s) => match s.trim().parse::<u32>() {
            Ok(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                found: v,
                supported: SCHEMA_VERSION,
            }),
            // An unreadable marker is not trusted either way; `meta/schema` inside sled decides.
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Write the schema marker (fsynced, then the directory).
pub fn write_schema_marker(sled_dir: &Path) -> Result<(), StoreError> {
    // sled never fsyncs its `conf`; a power cut could leave it torn and the store unopenable.
    let conf = sled_dir.join(SLED_CONF);
    fs::File::open(&conf)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(&conf))?;
    let path = sled_dir.join(SCHEMA_MARKER);
    write_atomic(&path, format!("{SCHEMA_VERSION}\n").as_bytes()).map_err(StoreError::io(&path))
}
