//! How to open a store: [`StoreConfig`], and the daemon's defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::layout::LEGACY_FILE;

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
            json_export: Some(dir.join(LEGACY_FILE)),
            dir,
            generations: 3,
            recovery: true,
            max_age: Duration::from_secs(7 * 86_400),
            cache_capacity_bytes: 2 << 20,
        }
    }
}
