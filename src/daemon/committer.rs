//! The store committer: one thread that owns the store, commits the newest port table, and keeps the
//! daemon going without persistence while the store cannot take commits.
//!
//! - **Bounded:** at most one commit in flight and one hand-over pending ([`CommitSlot`], `commit_slot.rs`); a newer
//!   hand-over (the ports changed since the previous one, [`PortDelta`]) is merged into the pending one,
//!   newest entry per port, so a hung `fsync` cannot grow memory beyond one entry per port.
//! - **O(changed) commits:** the committer keeps the whole table in compact form ([`SavedTable`]) and
//!   commits only the changes since its last successful commit. A full set goes to the store whenever
//!   its base may differ from what this process committed: the first commit after an open or reopen
//!   (the reopened store may have recovered an older generation), i.e. after any failure.
//! - **Degrade, never die:** a failed commit or open leaves the store where it is (the store itself
//!   quarantines only real corruption on a disk that takes writes) and the open is retried with
//!   backoff (1 s doubling to 60 s) until it works; then the newest table is committed. A store of a
//!   newer schema is never opened again (it stays byte-for-byte untouched).
//! - **Health:** `portsyncd_state_store_up` / `portsyncd_state_store_degraded{reason}`; transitions
//!   are logged once, failures rate-limited.

use crossbeam_channel::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::input::Input;
use crate::backoff::Backoff;
use crate::faults;
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::store::lock::PidLock;
use crate::store::{Degraded, Store, StoreConfig, StoreError};
use crate::supervise::Supervisor;

use super::commit_slot::CommitSlot;
use super::open_store::StoreStart;
use super::saved::SavedTable;

/// First delay before reopening a store that failed.
pub const REOPEN_MIN: Duration = Duration::from_secs(1);
/// Longest delay between reopen attempts.
pub const REOPEN_MAX: Duration = Duration::from_secs(60);

struct Committer {
    store: Option<Store>,
    cfg: StoreConfig,
    /// Held while the store is closed, so a second portsyncd still finds the state dir taken.
    lock: Option<PidLock>,
    health: Option<Degraded>,
    next_open: Option<Instant>,
    backoff: Backoff,
    /// The table as handed over, and the changes the store has not got yet.
    table: SavedTable,
    /// Something handed over is not committed yet (committed once the store is back).
    retained: bool,
    metrics: Arc<Metrics>,
    fail_log: RateLimit,
}

impl Committer {
    fn set_health(&mut self, health: Option<Degraded>, why: &str) {
        if health == self.health {
            return;
        }
        match health {
            None => {
                self.metrics.store_health.set_up();
                info!(dir = %self.cfg.dir.display(), "state store takes commits again");
            }
            Some(reason) => {
                self.metrics.store_health.set_degraded(reason);
                error!(dir = %self.cfg.dir.display(), reason = reason.label(), error = why,
                    "state store unavailable: running without persistence (Redis is unaffected)");
            }
        }
        self.health = health;
    }

    fn closed(&mut self, e: &StoreError) {
        let reason = e.degraded();
        self.store = None;
        if reason != Degraded::NewerSchema {
            let delay = self.backoff.next_delay();
            self.next_open = Some(Instant::now() + delay);
            if let Some(suppressed) = self.fail_log.allow(Instant::now()) {
                warn!(error = %e, reason = reason.label(), retry_in = ?delay, suppressed, "state store failed; retrying");
            }
        }
        if self.lock.is_none() {
            self.lock = PidLock::acquire(&self.cfg.dir).ok();
        }
        self.set_health(Some(reason), &e.to_string());
    }

    /// Try to open the store (never a store of a newer schema).
    fn reopen(&mut self) {
        if self.store.is_some() || self.health == Some(Degraded::NewerSchema) {
            return;
        }
        self.next_open = None;
        self.lock = None; // the store takes its own lock
        match Store::open(self.cfg.clone()) {
            Ok((s, rec)) => {
                info!(dir = %self.cfg.dir.display(), saved_generation = rec.generation, "state store reopened");
                self.store = Some(s);
                self.backoff.reset();
                self.set_health(None, "");
            }
            Err(e) => self.closed(&e),
        }
    }

    /// Commit what the store has not got: the changes alone where the store holds this process's last
    /// commit, else the whole table.
    fn commit(&mut self) -> Result<u64, String> {
        self.retained = true;
        let Some(store) = self.store.as_mut() else {
            let reason = self.health.map_or("unknown", Degraded::label);
            return Err(format!("state store is not open ({reason}); retrying"));
        };
        if !self.table.have_full() {
            return Err("no full port table handed over yet".into());
        }
        let res = if store.takes_delta() && !self.table.needs_full() {
            store.commit_changes(false, self.table.changes(), self.table.counters())
        } else {
            store.commit_changes(true, self.table.all(), self.table.counters())
        };
        match res {
            Ok(gen) => {
                self.backoff.reset();
                self.table.saved();
                self.retained = false;
                Ok(gen)
            }
            Err(e) => {
                // The store stops trusting itself after a failure: reopen (and re-verify) first; the
                // next commit is then a full set (the reopened store may hold an older generation).
                let msg = e.to_string();
                self.closed(&e);
                Err(msg)
            }
        }
    }
}

/// Starts the committer. It ends after answering the final commit.
pub fn spawn(
    sup: &Supervisor,
    start: StoreStart,
    cfg: StoreConfig,
    slot: Arc<CommitSlot>,
    tx: Sender<Input>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    let mut c = Committer::new(start, cfg, metrics);
    sup.spawn("store", move || c.serve(&slot, &tx))
}

impl Committer {
    /// The committer of the store start-up left; its health says why the store is missing, if it is.
    fn new(start: StoreStart, cfg: StoreConfig, metrics: Arc<Metrics>) -> Committer {
        let mut c = Committer {
            lock: None,
            health: None,
            next_open: None,
            backoff: Backoff::new(REOPEN_MIN, REOPEN_MAX),
            table: SavedTable::default(),
            retained: false,
            fail_log: RateLimit::new(Duration::from_secs(10)),
            store: start.store,
            cfg,
            metrics,
        };
        match start.degraded {
            Some(reason) => {
                c.metrics.store_health.set_degraded(reason);
                c.health = Some(reason);
                c.lock = PidLock::acquire(&c.cfg.dir).ok();
                if reason != Degraded::NewerSchema {
                    c.next_open = Some(Instant::now() + c.backoff.next_delay());
                }
            }
            None => c.metrics.store_health.set_up(),
        }
        c
    }

    /// Commits what the loop hands over, reopening the store when due, until the final commit is
    /// answered or the loop is gone.
    fn serve(&mut self, slot: &CommitSlot, tx: &Sender<Input>) {
        loop {
            let export_due = self.store.as_ref().and_then(Store::export_retry_at);
            let wake = match (self.next_open, export_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (delta, reply) = slot.take(wake);
            if let Some(s) = self.store.as_mut() {
                s.retry_export(Instant::now());
            }
            let fresh = delta.is_some();
            if let Some(d) = delta {
                self.table.absorb(d);
            }
            let due = self.next_open.is_some_and(|t| Instant::now() >= t);
            if due || (reply.is_some() && self.store.is_none()) {
                self.reopen();
            }
            let retry = self.retained && self.store.is_some();
            if !fresh && !retry {
                if let Some(r) = reply {
                    let _ = r.send(Err("nothing to commit".into()));
                    return;
                }
                continue;
            }
            faults::panic_point("store");
            let started = Instant::now();
            let ports = self.table.port_count();
            let res = self.commit();
            let took = started.elapsed();
            // One line per commit at debug (bench-storm --scale reads them for the commit p99).
            debug!(
                took_us = took.as_micros() as u64,
                ports,
                ok = res.is_ok(),
                "commit finished"
            );
            match reply {
                Some(r) => {
                    let _ = r.send(res);
                    return;
                }
                None => {
                    if tx.send(Input::Committed { result: res, took }).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::daemon::saved::numbered_delta as snap;

    #[test]
    fn a_store_that_cannot_open_is_retried_and_then_gets_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        // A file where the state directory should be: every open fails, nothing is quarantined.
        std::fs::write(&state, b"not a directory").unwrap();
        let cfg = StoreConfig {
            json_export: None,
            ..StoreConfig::new(&state)
        };
        let metrics = Arc::new(Metrics::default());
        let slot = Arc::new(CommitSlot::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let start = StoreStart {
            store: None,
            degraded: Some(Degraded::IoError),
        };
        let sup = Supervisor::with_exit(
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            |_| {},
            || {},
        );
        let h = spawn(
            &sup,
            start,
            cfg.clone(),
            Arc::clone(&slot),
            tx,
            Arc::clone(&metrics),
        )
        .unwrap();
        slot.submit(snap(7));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Input::Committed { result, .. } => assert!(result.is_err()),
            other => panic!("{other:?}"),
        }
        assert_eq!(metrics.store_health.get(), Some(Degraded::IoError));
        // The disk heals: the retained snapshot is committed at the next reopen, unasked.
        std::fs::remove_file(&state).unwrap();
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Input::Committed { result, .. } => assert_eq!(result, Ok(1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(metrics.store_health.get(), None);
        let (rtx, rrx) = crossbeam_channel::unbounded();
        slot.finish(snap(8), rtx);
        assert_eq!(rrx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(2));
        h.join().unwrap();
        let (_s, rec) = Store::open(cfg).unwrap();
        assert_eq!(rec.snapshot.map(|s| s.counters["n"]), Some(8));
    }
}
