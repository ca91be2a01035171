//! The JSON export after each durable commit: the cache of rendered ports it is streamed from, the
//! atomic write, failures counted (and logged at most once a minute), and a failed write done again
//! when due, so the file does not stay behind the store on a switch where nothing changes any more.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::export_cache::ExportCache;
use crate::backoff::Backoff;
use crate::logging::RateLimit;

/// First delay before a failed JSON export is written again; it doubles up to [`EXPORT_RETRY_MAX`].
const EXPORT_RETRY_MIN: Duration = Duration::from_secs(1);
const EXPORT_RETRY_MAX: Duration = Duration::from_secs(60);

/// A JSON export to write again: what the failed one would have held, and when to try.
struct ExportRetry {
    counters: BTreeMap<String, u64>,
    saved_at: u64,
    generation: u64,
    due: Instant,
    backoff: Backoff,
}

/// The store's JSON export (off when it has no path).
pub struct ExportWriter {
    path: Option<PathBuf>,
    /// The rendered fragments of the ports of the generation the store committed last.
    cache: ExportCache,
    failures: u64,
    /// Failures repeat with every commit on a full disk: logged at most once a minute.
    log: RateLimit,
    /// The last write failed: it is written again when due.
    retry: Option<ExportRetry>,
}

impl ExportWriter {
    /// The export to `path` (None: off).
    pub fn new(path: Option<PathBuf>) -> ExportWriter {
        ExportWriter {
            path,
            cache: ExportCache::default(),
            failures: 0,
            log: RateLimit::new(Duration::from_secs(60)),
            retry: None,
        }
    }

    /// The cache a commit updates in place (None when the export is off).
    pub fn cache_mut(&mut self) -> Option<&mut ExportCache> {
        self.path.is_some().then_some(&mut self.cache)
    }

    /// Failures since open.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// A commit supersedes a pending retry (its own write follows).
    pub fn forget_retry(&mut self) {
        self.retry = None;
    }

    /// Writes the JSON export of generation `gen`; on failure (a full disk, say) it is counted, logged
    /// at most once a minute and scheduled to be written again ([`ExportWriter::retry_due`]).
    pub fn write(&mut self, counters: &BTreeMap<String, u64>, saved_at: u64, gen: u64) {
        let Some(path) = &self.path else {
            return;
        };
        let Err(e) = self.cache.write_atomic(path, counters, saved_at, gen) else {
            if self.retry.take().is_some() {
                tracing::info!(path = %path.display(), generation = gen, "JSON export written again");
            }
            return;
        };
        self.failures += 1;
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            tracing::warn!(path = %path.display(), error = %e, generation = gen, suppressed, "JSON export failed (the commit stands); it is written again later");
        }
        let mut backoff = match self.retry.take() {
            Some(r) => r.backoff,
            None => Backoff::new(EXPORT_RETRY_MIN, EXPORT_RETRY_MAX),
        };
        self.retry = Some(ExportRetry {
            counters: counters.clone(),
            saved_at,
            generation: gen,
            due: Instant::now() + backoff.next_delay(),
            backoff,
        });
    }

    /// When a failed export is due to be written again (None: the export is current).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry.as_ref().map(|r| r.due)
    }

    /// Writes the export of a failed write again if it is due at `now` and still of `current`, the
    /// generation the store committed last (None: the store takes no commits).
    pub fn retry_due(&mut self, now: Instant, current: Option<u64>) {
        let Some(r) = self.retry.as_ref().filter(|r| r.due <= now) else {
            return;
        };
        if current != Some(r.generation) {
            return;
        }
        let (counters, saved_at, gen) = (r.counters.clone(), r.saved_at, r.generation);
        self.write(&counters, saved_at, gen);
    }
}
