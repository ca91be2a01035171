//! Step 5, the loop: one owner of state (the core); each input is fed to it, and what it asks for
//! is carried out: dump requests on the socket, batches to the Redis writer, hand-overs to the
//! committer, old netdevs to the admin-down worker; its notices are logged and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::core::{BaselineSource, Core, Notice, StartMode, SyncOutcome, Work, WorkResult};
use crate::faults;
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::netlink::{self, LinkSocket, NetlinkItem};

use super::admin_down::AdminDown;
use super::commit_slot::CommitSlot;
use super::handoff::Giver;
use super::inbox::Inbox;
use super::input::Input;
use super::pacer::CommitPacer;
use super::reconcile;
use super::saved::{PortDelta, SavedPort};
use super::startup::Startup;
use super::workers::Handles;

/// The loop's state: the core, the workers' ends, and what paces and rate-limits its side effects.
pub struct Loop {
    pub(super) core: Core,
    sock: Arc<LinkSocket>,
    metrics: Arc<Metrics>,
    work_tx: Giver<Work>,
    pub(super) commits: Arc<CommitSlot>,
    pacer: CommitPacer,
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
    pub(super) died: Option<String>,
    repair_log: RateLimit,
    /// Old netdevs are set admin-down on this worker (never in the loop).
    admin_down: AdminDown,
}

impl Loop {
    /// The loop over the core start-up decided, the workers' ends in `handles`.
    pub fn new(
        startup: Startup,
        handles: Handles,
        cfg: &Config,
        metrics: &Arc<Metrics>,
        t_start: Instant,
    ) -> Loop {
        let warm = startup.core.mode == StartMode::Warm;
        Loop {
            core: Core::new(startup.core, Instant::now())
                .with_resync_interval(cfg.resync_interval())
                .with_stale_candidates(startup.unreadable),
            sock: handles.sock,
            metrics: Arc::clone(metrics),
            work_tx: handles.work_tx,
            commits: handles.commits,
            pacer: CommitPacer::default(),
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
            admin_down: handles.admin_down,
        }
    }

    /// Runs until a stop request or a worker's death (then `died` names the worker).
    pub fn run(&mut self, inbox: &mut Inbox) {
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

    pub(super) fn on_work_done(&mut self, r: WorkResult, reconnected: bool, now: Instant) {
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
    pub(super) fn hand_over(&mut self) -> PortDelta {
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
