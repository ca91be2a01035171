//! Named steps of the commit protocol, where crash tests abort the process.
//!
//! Built only with `cfg(test)` or the `fault-injection` feature; otherwise [`crash_point`] is an empty
//! inline function. A test child selects a step with `PORTSYNCD_STORE_CRASH_AT=<step>[:<n>]` (abort
//! the `n`-th time the step is reached, default the first), e.g. `after_flush:3`.

/// A step of `Store::commit`, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The generation's batch is built, nothing written.
    BeforeApply,
    /// A record batch of a commit in several batches is applied (in sled's memory), the next one
    /// (and the manifest) not yet: a crash leaves orphan records.
    BetweenBatches,
    /// The batch is applied in sled's memory, not flushed.
    AfterApply,
    /// sled's `flush()` returned (`sync_file_range`), the `db` file is not fsynced.
    AfterFlush,
    /// The `db` file is fsynced: the generation is durable, not yet acknowledged.
    AfterSync,
    /// Older generations were pruned.
    AfterPrune,
    /// The JSON export's temp file is written and fsynced, not renamed.
    ExportTempWritten,
    /// The JSON export is renamed into place; `commit` is about to return.
    AfterExport,
}

impl CrashPoint {
    /// Every step, in protocol order.
    pub const ALL: [CrashPoint; 8] = [
        CrashPoint::BeforeApply,
        CrashPoint::BetweenBatches,
        CrashPoint::AfterApply,
        CrashPoint::AfterFlush,
        CrashPoint::AfterSync,
        CrashPoint::AfterPrune,
        CrashPoint::ExportTempWritten,
        CrashPoint::AfterExport,
    ];

    /// The name used in `PORTSYNCD_STORE_CRASH_AT`.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::BeforeApply => "before_apply",
            CrashPoint::BetweenBatches => "between_batches",
            CrashPoint::AfterApply => "after_apply",
            CrashPoint::AfterFlush => "after_flush",
            CrashPoint::AfterSync => "after_sync",
            CrashPoint::AfterPrune => "after_prune",
            CrashPoint::ExportTempWritten => "export_temp_written",
            CrashPoint::AfterExport => "after_export",
        }
    }
}

/// Env variable selecting the crash point.
pub const CRASH_ENV: &str = "PORTSYNCD_STORE_CRASH_AT";

#[cfg(any(test, feature = "fault-injection"))]
mod imp {
    use super::{CrashPoint, CRASH_ENV};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub fn crash_point(cp: CrashPoint) {
        let target = TARGET.get_or_init(|| {
            let v = std::env::var(CRASH_ENV).ok()?;
            let (name, nth) = match v.split_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some((name, nth))
        });
        if let Some((name, nth)) = target {
            if name == cp.name() && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                eprintln!("crash point {}: aborting", cp.name());
                std::process::abort();
            }
        }
    }
}

#[cfg(any(test, feature = "fault-injection"))]
pub use imp::crash_point;

/// No-op outside tests and the `fault-injection` feature.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub fn crash_point(_cp: CrashPoint) {}
