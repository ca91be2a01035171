//! [`GenerationInfo`]: every stored generation, each verified, as `portsyncd-state inspect` shows it.

use std::collections::BTreeMap;

use super::backend::Backend;
use super::error::StoreError;
use super::generation;

/// One generation as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationInfo {
    pub number: u64,
    /// From the manifest, when it is readable.
    pub saved_at: Option<u64>,
    /// From the manifest, when it is readable.
    pub port_count: Option<u32>,
    /// Lifetime counters of the manifest, when readable.
    pub counters: Option<BTreeMap<String, u64>>,
    /// None when every record verified; otherwise why not.
    pub problem: Option<String>,
}

impl GenerationInfo {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Every generation of `b`, newest first, each fully verified.
pub fn describe(b: &dyn Backend) -> Result<Vec<GenerationInfo>, StoreError> {
    let gens = generation::list(b).map_err(|source| StoreError::Backend {
        op: "listing generations",
        source,
    })?;
    Ok(gens
        .into_iter()
        .rev()
        .map(|g| {
            let manifest = generation::read_manifest(b, g).ok();
            let problem = generation::load(b, g).err().map(|e| e.to_string());
            GenerationInfo {
                number: g,
                saved_at: manifest.as_ref().map(|m| m.saved_at),
                port_count: manifest.as_ref().map(|m| m.record_count),
                counters: manifest.map(|m| m.counters),
                problem,
            }
        })
        .collect())
}
