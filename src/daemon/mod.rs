//! The loop that wires it all: one owner of state (the core), events in, actions out.
//!
//! ```text
//! netlink thread ──Items/Overrun── (bounded) ──┐
//! redis thread ────WorkDone───────┐            ├──▶ loop (Core) ──Work──▶ redis thread (write Redis first)
//! store thread ────Committed──────┼─ control ──┘                ──PortDelta─▶ store thread (then commit)
//! signal thread ───Stop───────────┤
//! supervision ─────WorkerDied─────┘
//! ```
//!
//! Every thread is supervised (supervise.rs): a worker's death exits the process with status 1; the
//! auxiliary threads (metrics endpoint, LOGGER follower) are restarted with backoff instead.

mod admin_down;
mod commit_slot;
mod committer;
pub(crate) mod faults;
mod handoff;
mod inbox;
mod input;
pub mod pacer; // public for tests/simulation.rs (the deterministic simulation drives it)
pub mod reader;
mod reconcile;
mod redis_work;
mod redis_writer;
pub mod saved; // public for tests/simulation.rs
mod startup;
mod supervise;

use crossbeam_channel as chan;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::core::{Core, Notice, StartMode, SyncOutcome, Work, WorkResult};
use crate::logging::RateLimit;
use crate::metrics::{Metrics, MetricsServer};
use crate::netlink::{self, LinkSocket, NetlinkItem};
use crate::sonic::{DbConfigError, DbLayout, SonicDb};
use crate::store::{Recovered, RecoverySource, Store, StoreConfig, StoreError};

pub use crate::core::BaselineSource;
use commit_slot::CommitSlot;
use committer::StoreStart;
pub use input::Input;
use saved::{PortDelta, SavedPort};
pub use supervise::install_panic_hook;
pub(crate) use supervise::spawn_restarting;
use supervise::Supervisor;

/// Waits between reads of a database layout that is not there yet.
const LAYOUT_RETRY_MIN: Duration = Duration::from_millis(200);
const LAYOUT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Longest wait for the final commit after a worker's death (within supervise::EXIT_WATCHDOG).
const DEATH_COMMIT_GRACE: Duration = Duration::from_millis(300);

/// Longest wait for the Redis batch in flight at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Fatal errors (main maps them to exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("netlink: {0}")]
    Netlink(#[from] netlink::NetlinkError),
    #[error("redis: {0}")]
    Redis(#[from] crate::sonic::DbError),
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    /// A worker thread panicked or ended unexpectedly (exit status 1: the supervisor restarts us).
    #[error("worker thread `{thread}` died")]
    WorkerDied { thread: String },
    /// An option's value turned out wrong once read against the system (exit status 2).
    #[error("invalid option value: {0}")]
    InvalidOption(String),
}

/// The store configuration the options describe.
pub fn store_config(cfg: &Config) -> StoreConfig {
    StoreConfig {
        dir: cfg.state_dir.clone(),
        generations: cfg.generations(),
        recovery: cfg.state_recovery,
        max_age: cfg.state_max_age(),
        json_export: cfg.json_export_path(),
        cache_capacity_bytes: 2 << 20,
    }
}

/// Counts and logs the recovery ladder's steps.
fn account_recovery(rec: &Recovered, metrics: &Metrics) {
    // The store logs each step once, with its reason; here they are counted.
    metrics.state_load_failures.add(rec.steps.len() as u64);
    match rec.source {
        RecoverySource::Newest => {}
        RecoverySource::PreviousGeneration => metrics.recoveries_previous_generation.inc(),
        RecoverySource::JsonExport => metrics.recoveries_json_export.inc(),
        RecoverySource::ColdStart if !rec.steps.is_empty() || rec.stale => {
            metrics.recoveries_cold_start.inc()
        }
        RecoverySource::ColdStart => {}
    }
    if rec.stale {
        warn!(saved_at = ?rec.saved_at, "saved state is older than the maximum age: not used for a warm start");
    }
    info!(source = ?rec.source, generation = rec.generation, ports = rec.snapshot.as_ref().map_or(0, |s| s.ports.len()), "state store opened");
}

/// The database layout; files that are missing or half-written are waited for (the database
/// container may still be starting), a value the options got wrong is an error.
fn layout(cfg: &Config, stop: &AtomicBool) -> Result<Option<DbLayout>, DaemonError> {
    let mut logged = false;
    let mut backoff = Backoff::new(LAYOUT_RETRY_MIN, LAYOUT_RETRY_MAX);
    loop {
        let res = match &cfg.redis_url {
            Some(url) => DbLayout::from_redis_url(url),
            None => DbLayout::from_config_file(&cfg.db_config, cfg.namespace.as_deref()),
        };
        match res {
            Ok(l) => return Ok(Some(l)),
            Err(e @ DbConfigError::NamespaceNotFound { .. }) => {
                let ns = cfg.namespace.clone().unwrap_or_default();
                let msg = format!("--namespace {ns}: {e}");
                return Err(DaemonError::InvalidOption(crate::config::printable(&msg)));
            }
            Err(e @ DbConfigError::BadUrl { .. }) => {
                return Err(DaemonError::InvalidOption(format!("--redis-url: {e}")));
            }
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if !logged {
                    warn!(error = %e, "database layout not available yet; retrying");
                    logged = true;
                }
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}

/// Runs the daemon until `stop` is set (SIGTERM/SIGINT). Returns after the final commit.
pub fn run(
    cfg: Config,
    stop: Arc<AtomicBool>,
    signals: std::sync::mpsc::Receiver<()>,
) -> Result<(), DaemonError> {
    let t_start = Instant::now();
    // 1. The store (local, before anything else): the saved state and the lifetime counters.
    let store_cfg = store_config(&cfg);
    // The only fatal store condition is another live portsyncd holding the lock; anything else
    // degrades to running without persistence (and the committer retries the open).
    let (store, recovered) = match Store::open(store_cfg.clone()) {
        Ok((s, r)) => (
            StoreStart {
                store: Some(s),
                degraded: None,
            },
            r,
        ),
        Err(e @ StoreError::InUse { .. }) => return Err(e.into()),
        Err(e) => {
            let reason = e.degraded();
            if reason == crate::store::Degraded::NewerSchema {
                error!(error = %e, "state store written by a newer portsyncd: left untouched; running without persistence");
            } else {
                error!(error = %e, reason = reason.label(), "state store unusable; running without persistence (cold start), reopen retried with backoff");
            }
            let cold = Recovered {
                snapshot: None,
                source: RecoverySource::ColdStart,
                generation: None,
                saved_at: None,
                stale: false,
                counters: BTreeMap::new(),
                steps: Vec::new(),
            };
            (
                StoreStart {
                    store: None,
                    degraded: Some(reason),
                },
                cold,
            )
        }
    };
    let metrics = Arc::new(Metrics::from_saved(&recovered.counters));
    if store.store.is_none() {
        metrics.state_load_failures.inc();
        metrics.recoveries_cold_start.inc();
    }
    account_recovery(&recovered, &metrics);

    let _metrics_server = if cfg.metrics_enabled {
        match MetricsServer::start(cfg.metrics_listen, Arc::clone(&metrics)) {
            Ok(s) => {
                info!(addr = %s.addr, "metrics at GET /metrics");
                Some(s)
            }
            Err(e) => {
                error!(error = %e, "metrics endpoint not available");
                None
            }
        }
    } else {
        None
    };

    // 2. Redis: layout, connection, warm/cold, APPL_DB, baseline.
    let Some(layout) = layout(&cfg, &stop)? else {
        return Ok(());
    };
    // swss-common's Logger table: registered and followed on a thread of its own (never joined: it
    // holds no state and sees `stop` within half a second).
    if let Err(e) = crate::sonic::logger::spawn(
        layout.config.clone(),
        Arc::clone(&stop),
        Some(Arc::clone(&metrics)),
    ) {
        warn!(error = %e, "cannot follow CONFIG_DB LOGGER|portsyncd");
    }
    let mut db = SonicDb::new(layout);
    match db.wait_connected(&stop) {
        Ok(()) => {}
        Err(crate::sonic::DbError::Stopped { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let startup = match startup::run(&mut db, &recovered, cfg.eoiu_timeout_secs, &stop) {
        Ok(s) => s,
        Err(crate::sonic::DbError::Stopped { .. }) => return Ok(()),
        Err(e) if stop.load(Ordering::Relaxed) => {
            info!(error = %e, "stopped during start-up");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let warm = startup.core.mode == StartMode::Warm;
    if warm {
        metrics.starts_warm.inc();
    } else {
        metrics.starts_cold.inc();
    }

    // 3. Netlink: join the group before the dump is requested (the loop requests it).
    let sock = Arc::new(LinkSocket::open()?);
    info!(rcvbuf = sock.rcvbuf_bytes(), "netlink link group joined");

    let (mut inbox, tx, nl_tx) = inbox::inbox();
    let (work_tx, work_rx) = handoff::handoff::<Work>();
    let commits = Arc::new(CommitSlot::default());
    // Every worker is supervised: its death ends the process with status 1 (see supervise.rs).
    let death_tx = tx.clone();
    let sup = Supervisor::new(Arc::clone(&stop), move |thread| {
        let _ = death_tx.send(Input::WorkerDied {
            thread: thread.to_string(),
        });
    });
    let reader = reader::netlink_reader(&sup, Arc::clone(&sock), nl_tx, Arc::clone(&stop))?;
    metrics.redis_reconnects.add(db.reconnects()); // those of start-up
    let writer = redis_writer::redis_writer(&sup, db, work_rx, tx.clone(), Arc::clone(&metrics))?;
    let committer = committer::spawn(
        &sup,
        store,
        store_cfg,
        Arc::clone(&commits),
        tx.clone(),
        Arc::clone(&metrics),
    )?;
    let (admin_down, _admin_down_thread) = admin_down::AdminDown::start(&sup)?;
    let sig_tx = tx.clone();
    sup.spawn("signals", move || {
        if signals.recv().is_ok() {
            let _ = sig_tx.send(Input::Stop);
        }
    })?;
    drop(tx);

    let mut lp = Loop {
        core: Core::new(startup.core, Instant::now())
            .with_resync_interval(cfg.resync_interval())
            .with_stale_candidates(startup.unreadable),
        sock,
        metrics: Arc::clone(&metrics),
        work_tx,
        commits,
        pacer: pacer::CommitPacer::default(),
        full_handed_over: false,
        warm,
        baseline_source: startup.baseline_source,
        t_start,
        parse_warnings: RateLimit::new(Duration::from_secs(10)),
        name_warnings: RateLimit::new(Duration::from_secs(10)),
        overrun_log: RateLimit::new(Duration::from_secs(10)),
        commit_log: RateLimit::new(Duration::from_secs(10)),
        died: None,
        repair_log: RateLimit::new(Duration::from_secs(60)),
        admin_down,
    };
    lp.run(&mut inbox);
    // Shutdown: the reader may be blocked on the full netlink queue; stop it first.
    stop.store(true, Ordering::SeqCst);
    inbox.close_netlink();

    if let Some(thread) = lp.died.take() {
        // A worker died: no wait for the batch in flight; a final commit if the store thread lives
        // and is quick (the exit watchdog ends the process within 1 s of the death regardless).
        if thread != "store" {
            let (reply_tx, reply_rx) = chan::bounded(1);
            let last = lp.hand_over();
            lp.commits.finish(last, reply_tx);
            match reply_rx.recv_timeout(DEATH_COMMIT_GRACE) {
                Ok(Ok(generation)) => info!(generation, "final state committed"),
                Ok(Err(e)) => error!(error = %e, "final state commit failed"),
                Err(_) => error!("final state commit did not finish in time"),
            }
        }
        return Err(DaemonError::WorkerDied { thread });
    }

    // Finish the batch in flight, then one final commit.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while lp.core.work_in_flight() {
        let left = deadline.saturating_duration_since(Instant::now());
        match inbox.recv_control(left) {
            Ok(Input::WorkDone {
                result,
                reconnected,
            }) => lp.on_work_done(result, reconnected, Instant::now()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let (reply_tx, reply_rx) = chan::bounded(1);
    let final_delta = lp.hand_over();
    let ports = lp.core.published_ports().count();
    lp.commits.finish(final_delta, reply_tx);
    // A hung disk must not hold the exit: the committer is joined only when it answered.
    let answered = match reply_rx.recv_timeout(SHUTDOWN_GRACE) {
        Ok(Ok(generation)) => {
            info!(generation, ports, "final state committed");
            true
        }
        Ok(Err(e)) => {
            error!(error = %e, "final state commit failed");
            true
        }
        Err(_) => {
            error!("final state commit did not finish in time (hung disk?); exiting without it");
            false
        }
    };
    drop(lp);
    if answered {
        let _ = committer.join();
    }
    let _ = writer.join();
    let _ = reader.join();
    info!("portsyncd stopped");
    Ok(())
}

struct Loop {
    core: Core,
    sock: Arc<LinkSocket>,
    metrics: Arc<Metrics>,
    work_tx: handoff::Giver<Work>,
    commits: Arc<CommitSlot>,
    pacer: pacer::CommitPacer,
    /// The committer got the whole table once; since then it gets the changes only.
    full_handed_over: bool,
    warm: bool,
    baseline_source: BaselineSource,
    t_start: Instant,
    parse_warnings: RateLimit,
    /// Link names that are not UTF-8 (the kernel allows them; a flood of their messages is possible).
    name_warnings: RateLimit,
    overrun_log: RateLimit,
    commit_log: RateLimit,
    /// The supervised thread whose death ended the loop.
    died: Option<String>,
    repair_log: RateLimit,
    /// Old netdevs are set admin-down on this worker (never in the loop).
    admin_down: admin_down::AdminDown,
}

impl Loop {
    fn run(&mut self, inbox: &mut inbox::Inbox) {
        self.step(Instant::now()); // the first dump is due at once
        loop {
            let now = Instant::now();
            let wake = [
                self.core.next_deadline(),
                self.core.next_work_deadline(),
                self.pacer.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = wake.map_or(Duration::from_secs(1), |w| w.saturating_duration_since(now));
            // What is queued becomes one batch (control inputs first, netlink bounded).
            let Some(inputs) = inbox.next_batch(timeout) else {
                return;
            };
            let now = Instant::now();
            let mut stop = false;
            for input in inputs {
                if let Some(d) = faults::loop_delay() {
                    std::thread::sleep(d); // fault injection: a slow core, per input
                }
                // After Stop, the rest is still applied: a WorkDone among it is the in-flight batch.
                stop |= self.handle(input, now);
            }
            if stop {
                return;
            }
            self.step(now);
        }
    }

    /// Applies one input; true when the daemon must stop.
    fn handle(&mut self, input: Input, now: Instant) -> bool {
        match input {
            Input::Netlink(items) => {
                // One counter update per burst, not per message (metrics stay off the hot path).
                let links = items
                    .iter()
                    .filter(|i| matches!(i, NetlinkItem::Link { .. }))
                    .count();
                self.metrics.netlink_messages.add(links as u64);
                for item in items {
                    self.on_item(item, now);
                }
            }
            Input::Overrun => {
                self.metrics.netlink_overruns.inc();
                if let Some(suppressed) = self.overrun_log.allow(now) {
                    warn!(
                        suppressed,
                        "netlink overrun (ENOBUFS): events lost, resyncing with a fresh dump"
                    );
                }
                self.core.on_overrun();
            }
            Input::WorkDone {
                result,
                reconnected,
            } => self.on_work_done(result, reconnected, now),
            Input::Committed { result, took } => {
                self.pacer.finished(took, result.is_ok(), now);
                match result {
                    Ok(_) => self.metrics.state_commits.inc(),
                    Err(e) => {
                        self.metrics.state_save_failures.inc();
                        if let Some(suppressed) = self.commit_log.allow(now) {
                            error!(error = %e, suppressed, retry_in = ?self.pacer.gap(), "state commit failed; Redis is unaffected, will retry");
                        }
                    }
                }
            }
            Input::Stop => {
                info!("stop requested");
                return true;
            }
            Input::WorkerDied { thread } => {
                error!(thread = %thread, "worker thread died: stopping with exit status 1");
                self.died.get_or_insert(thread);
                return true;
            }
        }
        false
    }

    fn on_item(&mut self, item: NetlinkItem, now: Instant) {
        match item {
            NetlinkItem::Link {
                seq,
                dump_intr,
                event,
            } => {
                if netlink::is_escaped_name(&event.link.name) {
                    if let Some(suppressed) = self.name_warnings.allow(now) {
                        warn!(ifindex = event.link.ifindex, ifname = %event.link.name, suppressed, "interface name is not UTF-8 (bytes shown escaped): never published; a port renamed to it is removed");
                    }
                }
                self.core.on_link(seq, &event, dump_intr);
            }
            NetlinkItem::Done { seq, dump_intr } => {
                self.core.on_dump_done(seq, dump_intr, false, now)
            }
            NetlinkItem::Error { seq, code } => {
                warn!(seq, code, "netlink error reply");
                self.core.on_dump_done(seq, false, true, now);
            }
            NetlinkItem::Ignored => {}
            NetlinkItem::Malformed { reason } => {
                if let Some(suppressed) = self.parse_warnings.allow(now) {
                    warn!(%reason, suppressed, "undecodable netlink message skipped");
                }
            }
        }
    }

    fn on_work_done(&mut self, r: WorkResult, reconnected: bool, now: Instant) {
        self.core.on_work_result(r, now);
        if reconnected {
            info!("redis connection was re-established: reading back what it holds");
            self.core.on_redis_reconnected();
        }
    }

    /// After inputs: timers, notices, dump requests, the next batch, the next commit.
    fn step(&mut self, now: Instant) {
        self.core.on_tick(now);
        for n in self.core.drain_notices() {
            self.on_notice(n);
        }
        if self.core.dump_due(now) {
            match self.sock.request_dump() {
                Ok(seq) => {
                    let before = self.core.stats().resyncs;
                    self.core.on_dump_requested(seq, now);
                    if self.core.stats().resyncs > before {
                        self.metrics.netlink_resyncs.inc();
                        info!(seq, "link dump requested (resync)");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "link dump request failed; retrying");
                    self.core.on_dump_request_failed(now);
                }
            }
        }
        // The core gates batches: one in flight, none during a retry wait after a failure.
        if let Some(work) = self.core.take_work(now) {
            if self.work_tx.give(work).is_err() {
                // The writer is gone (supervision ends the process); nothing landed.
                self.core.on_work_result(WorkResult::Failed, now);
            }
        }
        if self.core.take_snapshot_due() {
            self.pacer.changed(now);
        }
        if self.pacer.due(now) {
            self.pacer.sent(now);
            let d = self.hand_over();
            self.commits.submit(d);
        }
    }

    fn on_notice(&mut self, n: Notice) {
        match n {
            Notice::SyncCompleted(end) => {
                match end.outcome {
                    SyncOutcome::Eoiu => self.metrics.initial_sync_eoiu.inc(),
                    SyncOutcome::Timeout => self.metrics.initial_sync_timeout.inc(),
                }
                self.metrics.initial_sync_seconds.observe(end.elapsed);
                if self.warm {
                    if end.outcome == SyncOutcome::Timeout {
                        self.metrics.warm_timeouts.inc();
                    }
                    if end.outcome == SyncOutcome::Eoiu
                        && self.baseline_source == BaselineSource::Store
                    {
                        self.metrics.warm_reconciled_saved_eoiu.inc();
                    } else {
                        self.metrics.warm_reconciled_degraded.inc();
                    }
                }
                info!(
                    outcome = end.outcome.label(),
                    sync_ms = end.elapsed.as_millis() as u64,
                    since_start_ms = self.t_start.elapsed().as_millis() as u64,
                    "initial sync complete; reconciling"
                );
                self.pacer.changed(Instant::now()); // a cold start saves state too; counters change
            }
            Notice::SetAdminDown { ifindex, name } => {
                info!(ifname = %name, ifindex, "old netdev at cold start: set admin down, ignored from now on");
                self.admin_down.request(ifindex, name);
            }
            Notice::DumpInconsistent { seq } => {
                warn!(
                    seq,
                    "link dump inconsistent (interrupted or overrun): dumping again"
                );
            }
            Notice::Vanished { names } => {
                info!(count = names.len(), ports = ?names, "ports vanished without a DELLINK (found by resync)");
            }
            Notice::ReadBack {
                ports,
                rewrite,
                app_missing,
            } => reconcile::log_read_back(ports, &rewrite, &app_missing),
            Notice::CheckDone { kernel, state_db } => {
                reconcile::account_check(&self.metrics, &mut self.repair_log, &kernel, &state_db)
            }
        }
    }

    /// What the committer gets: the whole published table the first time, then the ports whose saved
    /// record changed since the previous hand-over (the core tracks them), and the lifetime counters.
    fn hand_over(&mut self) -> PortDelta {
        let counters = self.metrics.to_saved();
        if !self.full_handed_over {
            self.full_handed_over = true;
            self.core.clear_saved_changes();
            let ports = self
                .core
                .published_ports()
                .map(|(name, status, k)| (name.to_string(), Some(SavedPort::new(status, k))))
                .collect();
            return PortDelta {
                full: true,
                ports,
                counters,
            };
        }
        let ports = self
            .core
            .drain_saved_changes()
            .into_iter()
            .map(|(name, now)| (name, now.map(|(status, k)| SavedPort::new(status, k))))
            .collect();
        PortDelta {
            full: false,
            ports,
            counters,
        }
    }
}
