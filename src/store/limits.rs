//! Bounds on numbers read from files (the legacy JSON, its backups, the export, sled's manifests). A
//! value beyond one makes that file or generation unusable: it is damage or hostile input, never a
//! panic, an overflow, or a generation number that can no longer grow.

/// Highest generation number a commit may take (2^53: a commit every microsecond for 285 years).
pub const MAX_GENERATION: u64 = 1 << 53;
/// Highest generation number accepted from a file (the export, a legacy file or its backups):
/// half of [`MAX_GENERATION`], so that the store's numbers, which continue from a file's, keep
/// 2^52 commits of room (a file at the limit must not stop every later commit).
pub const MAX_FILE_GENERATION: u64 = MAX_GENERATION / 2;
/// Latest `saved_at` accepted: 9999-12-31T23:59:59Z.
pub const MAX_SAVED_AT: u64 = 253_402_300_799;
/// Highest lifetime counter value accepted (2^53, exact in a Prometheus float).
pub const MAX_COUNTER: u64 = 1 << 53;
/// Most ports in one state.
pub const MAX_PORTS: usize = 1 << 16;
/// Most lifetime counters in one state.
pub const MAX_COUNTERS: usize = 4096;
/// Longest port name, counter name or published field (name or value), in bytes.
pub const MAX_TEXT: usize = 4096;
/// Largest JSON state file read (a 2048-port export is about 600 KiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// `Err(why)` when `v` exceeds `max`.
pub fn check(v: u64, max: u64) -> Result<u64, String> {
    if v <= max {
        Ok(v)
    } else {
        Err(format!("{v} out of range (at most {max})"))
    }
}
