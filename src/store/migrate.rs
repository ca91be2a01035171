//! Schema migrations. Each numbered step in `migrations/` has its code here.
//!
//! - Step 0001 (`migrations/0001_legacy_json/`): the legacy JSON state files (`port_state.json`,
//!   `port_state.json.backup`, `backups/port_state_<unix>.json`) → the first generation of schema 1.
//!
//! Schema 1 is the first sled layout, so there is no sled-to-sled step yet. A store whose schema is newer
//! than [`SCHEMA_VERSION`](super::generation::SCHEMA_VERSION) is refused by `Store::open` before anything
//! is written.

use std::path::{Path, PathBuf};

use super::json_export::{self, JsonError, JsonState};
use super::layout::{BACKUPS_DIR, BACKUP_PREFIX, BACKUP_SUFFIX, LEGACY_BACKUP_SUFFIX};

/// Most `backups/` files considered (the newest by their name's timestamp).
pub const MAX_BACKUPS: usize = 16;

/// The legacy files that may sit next to `file`: the file itself, `<file>.backup`, and
/// `backups/port_state_<unix>.json` in its directory (those that exist, at most [`MAX_BACKUPS`]), newest backup first.
pub fn legacy_candidates(file: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if file.exists() {
        out.push(file.to_path_buf());
    }
    let mut backup = file.as_os_str().to_owned();
    backup.push(LEGACY_BACKUP_SUFFIX);
    let backup = PathBuf::from(backup);
    if backup.exists() {
        out.push(backup);
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut stamped: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join(BACKUPS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let unix = name
                .strip_prefix(BACKUP_PREFIX)?
                .strip_suffix(BACKUP_SUFFIX)?
                .parse()
                .ok()?;
            Some((unix, e.path()))
        })
        .collect();
    stamped.sort_by_key(|s| std::cmp::Reverse(s.0));
    // A directory of thousands of backups must not make every open read them all.
    stamped.truncate(MAX_BACKUPS);
    out.extend(stamped.into_iter().map(|(_, p)| p));
    out
}

/// The result of reading the legacy files.
#[derive(Debug)]
pub struct LegacyImport {
    /// The chosen file and its state (the valid one with the newest `saved_at`).
    pub chosen: Option<(PathBuf, JsonState)>,
    /// Files that were rejected, with why.
    pub rejected: Vec<(PathBuf, JsonError)>,
}

/// Read every candidate and pick the valid one with the newest `saved_at` (ties: the earlier candidate,
/// i.e. the main file before its backups).
pub fn read_legacy(candidates: &[PathBuf]) -> LegacyImport {
    let mut chosen: Option<(PathBuf, JsonState)> = None;
    let mut rejected = Vec::new();
    for p in candidates {
        match json_export::read(p, false) {
            Ok(s) => {
                if chosen.as_ref().is_none_or(|(_, c)| s.saved_at > c.saved_at) {
                    chosen = Some((p.clone(), s));
                }
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "legacy state file rejected");
                rejected.push((p.clone(), e));
            }
        }
    }
    LegacyImport { chosen, rejected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::LEGACY_FILE;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0001_legacy_json")
    }

    #[test]
    fn fixture_candidates_are_found_in_order() {
        let c = legacy_candidates(&fixtures().join(LEGACY_FILE));
        let names: Vec<String> = c
            .iter()
            .map(|p| p.strip_prefix(fixtures()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "port_state.json",
                "port_state.json.backup",
                "backups/port_state_1700003600.json",
                "backups/port_state_1700000000.json",
                "backups/port_state_1699990000.json",
            ]
        );
    }

    #[test]
    fn fixture_import_picks_the_newest_valid_file() {
        let imp = read_legacy(&legacy_candidates(&fixtures().join(LEGACY_FILE)));
        let (path, st) = imp.chosen.expect("a valid fixture");
        // port_state.json is truncated (a crash mid-write of the legacy daemon); the .backup is the
        // newest valid one.
        assert!(
            path.ends_with("port_state.json.backup"),
            "{}",
            path.display()
        );
        assert_eq!(st.saved_at, 1700007200);
        assert_eq!(st.snapshot.ports.len(), 4);
        let e8 = &st.snapshot.ports["Ethernet8"];
        assert!(e8.admin_up && !e8.oper_up);
        assert_eq!((e8.flags, e8.mtu, e8.ifindex), (4099, 9100, 0));
        let bad: Vec<_> = imp
            .rejected
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(bad, ["port_state.json", "port_state_1699990000.json"]);
    }
}
