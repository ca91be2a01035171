//! The state directory's on-disk layout: every file and directory name the store reads or writes, and
//! their modes. Imports nothing from the store; every other file takes its names from here.
//!
//! ```text
//! <state-dir>/                      DIR_MODE (0700)
//!   portsyncd.pid                   LOCK_FILE, LOCK_MODE (0644): the pid lock
//!   port_state.json                 LEGACY_FILE, FILE_MODE (0600): the JSON export (default path)
//!   .port_state.json.tmp-<pid>      temp_name(): an export being written
//!   port_state.json.backup          legacy backup, read by migration 0001
//!   backups/port_state_<unix>.json  legacy backups, read by migration 0001
//!   .portsyncd-probe                PROBE_FILE: the write probe before a quarantine
//!   sled.quarantine-<unix>[-<n>]    quarantine_name(): a quarantined sled directory, never deleted
//!   sled/                           SLED_DIR: sled's files (conf, db, snap.*, blobs/)
//!     portsyncd-schema              SCHEMA_MARKER: the schema version, read before sled opens
//!     aside-<unix>.snap.*.generating  aside_name(): a half-written snapshot moved aside
//! ```

/// sled's directory inside the state directory.
pub const SLED_DIR: &str = "sled";
/// The legacy state file, and the JSON export's default name.
pub const LEGACY_FILE: &str = "port_state.json";
/// Appended to the legacy file's name for its backup (`port_state.json.backup`).
pub const LEGACY_BACKUP_SUFFIX: &str = ".backup";
/// Directory of stamped legacy backups, next to the legacy file.
pub const BACKUPS_DIR: &str = "backups";
/// A stamped legacy backup is `<BACKUP_PREFIX><unix><BACKUP_SUFFIX>`.
pub const BACKUP_PREFIX: &str = "port_state_";
/// See [`BACKUP_PREFIX`].
pub const BACKUP_SUFFIX: &str = ".json";
/// The pid lock inside the state directory.
pub const LOCK_FILE: &str = "portsyncd.pid";
/// The probe file written (and removed) before anything is quarantined.
pub const PROBE_FILE: &str = ".portsyncd-probe";

/// sled's config file (fsynced by the store: sled never does).
pub const SLED_CONF: &str = "conf";
/// sled's log file (fsynced after every flush).
pub const SLED_DB: &str = "db";
/// sled's directory of large values (fsynced by the store: sled never does).
pub const SLED_BLOBS: &str = "blobs";
/// File inside `sled/` holding the schema version as text, so a newer store is refused before sled
/// even opens it (sled writes a fresh snapshot on every open; a refused store must not change at all).
pub const SCHEMA_MARKER: &str = "portsyncd-schema";
/// A half-written sled snapshot is `<SNAPSHOT_PREFIX>…<GENERATING_SUFFIX>`.
pub const SNAPSHOT_PREFIX: &str = "snap.";
/// See [`SNAPSHOT_PREFIX`].
pub const GENERATING_SUFFIX: &str = ".generating";
/// Prefix of the temporary directory a tool copies `sled/` into.
pub const COPY_PREFIX: &str = "portsyncd-state-";

/// Mode of the state directory and every directory in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files in it.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the pid file (readable: it names the daemon's pid).
pub const LOCK_MODE: u32 = 0o644;

/// The `n`-th name (0: the first) for a sled directory quarantined at `unix`:
/// `sled.quarantine-<unix>`, then `sled.quarantine-<unix>-<n>`.
pub fn quarantine_name(unix: u64, n: u32) -> String {
    match n {
        0 => format!("{SLED_DIR}.quarantine-{unix}"),
        n => format!("{SLED_DIR}.quarantine-{unix}-{n}"),
    }
}

/// The temporary file of an atomic write of `file_name` by process `pid`: `.<file_name>.tmp-<pid>`.
pub fn temp_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}.tmp-{pid}")
}

/// The name a half-written snapshot `name` is moved aside to at `unix`. It must not start with
/// [`SNAPSHOT_PREFIX`]: sled reads every file with that prefix.
pub fn aside_name(unix: u64, name: &str) -> String {
    format!("aside-{unix}.{name}")
}

/// Whether `name` is a half-written sled snapshot.
pub fn is_generating(name: &str) -> bool {
    name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(GENERATING_SUFFIX)
}
