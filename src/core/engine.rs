//! The port table and every decision portsyncd makes about it.
//!
//! `Core` owns three views of each port and derives all writes from them:
//! - the kernel's view (`kernel`, updated by link events and completed dumps),
//! - what Redis is known to hold (`published`: `Some(status)` = written, `None` = known absent;
//!   a missing entry means "unknown"),
//! - which names need a look (`dirty`).
//!
//! A write is due when the kernel's view of a port differs from what Redis is known to hold. Writes
//! are handed out in batches (`Work`); only a confirmed batch updates `published`, so after a Redis
//! fault every write not known to have landed is simply due again. The same rule makes the warm
//! restart reconcile and the overrun resync fall out for free: both just replace the kernel's view.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::link::{LinkEvent, LinkOp};
use super::port::{front_panel_name, qualifying_name, PortStatus};
use super::sync::{SyncEnd, SyncEvent, SyncState};
use crate::backoff::Backoff;

#[path = "antientropy.rs"]
mod antientropy;
#[path = "readback.rs"]
mod readback;

pub use antientropy::CHECK_IDLE;
pub use readback::{ReadBack, StateRow};

/// Shortest gap between two dump requests (resyncs are rate-limited).
pub const DUMP_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A dump whose NLMSG_DONE does not arrive within this time is requested again.
pub const DUMP_WATCHDOG: Duration = Duration::from_secs(5);
/// How often ports unknown to APPL_DB are looked up again.
pub const UNKNOWN_RECHECK: Duration = Duration::from_secs(1);
/// First wait before a failed Redis batch is retried; doubles per failure up to [`REDIS_RETRY_MAX`].
pub const REDIS_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait before a failed Redis batch is retried.
pub const REDIS_RETRY_MAX: Duration = Duration::from_secs(2);
/// First wait before the write of a port that Redis rejected (its key holds another type, ...) is
/// tried again; doubles per rejection up to [`REJECTED_RETRY_MAX`]. Other ports are not held back.
pub const REJECTED_RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait before a rejected write is tried again.
pub const REJECTED_RETRY_MAX: Duration = Duration::from_secs(10);

/// How the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Cold start; `old_netdev`: existing `Ethernet*` netdevs are set admin-down and ignored.
    Cold { old_netdev: bool },
    /// Warm start: the baseline is trusted as what Redis holds.
    Warm,
}

/// Everything the core needs at start-up (read by the daemon from Redis and the store).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub mode: StartMode,
    /// CONFIG_DB `PORT` keys: PortInitDone waits for all of them.
    pub configured: BTreeSet<String>,
    /// Configured ports that do not hold back PortInitDone (cold start: APPL_DB has `admin_status`).
    pub already_initialised: BTreeSet<String>,
    /// Names APPL_DB `PORT_TABLE` already knows at start-up.
    pub app_known: BTreeSet<String>,
    /// What STATE_DB is believed to hold for ports portsyncd published before this start.
    /// Warm: trusted (unchanged ports are not rewritten). Cold: only used to delete the entries of
    /// ports that no longer exist once the initial dump is complete.
    pub baseline: BTreeMap<String, PortStatus>,
    /// Longest wait for EOIU; `None` = no limit, `Some(ZERO)` = no wait.
    pub eoiu_timeout: Option<Duration>,
}

/// The kernel's view of one qualifying link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPort {
    pub ifindex: u32,
    pub flags: u32,
    pub mtu: u32,
}

impl KernelPort {
    fn status(&self) -> PortStatus {
        PortStatus {
            admin_up: self.flags & super::link::IFF_UP != 0,
            oper_up: self.flags & super::link::IFF_RUNNING != 0,
            mtu: self.mtu,
        }
    }
}

/// One STATE_DB write: `Some` = HSET the four fields, `None` = DEL.
pub type StateChange = (String, Option<PortStatus>);

/// A batch for the Redis edge. Executed in order: checks, writes, then PortInitDone, then the
/// warm-restart state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// Names to look up in APPL_DB `PORT_TABLE`.
    pub checks: Vec<String>,
    pub writes: Vec<StateChange>,
    /// Write APPL_DB `PortInitDone`.
    pub port_init_done: bool,
    /// Write `WARM_RESTART_TABLE|portsyncd state reconciled` (warm start, after the reconcile landed).
    pub reconciled: bool,
    /// Read back what Redis holds for these names (STATE_DB `PORT_TABLE` rows and APPL_DB
    /// `PORT_TABLE` keys) and report it in [`WorkResult::Done`]. A read-back batch carries nothing else.
    pub read_back: Option<Vec<String>>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.checks.is_empty()
            && self.writes.is_empty()
            && !self.port_init_done
            && !self.reconciled
            && self.read_back.is_none()
    }
}

/// What the Redis edge reports back for a `Work`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkResult {
    /// Everything landed; `known` answers the checks, `read_back` the read-back.
    Done {
        known: Vec<(String, bool)>,
        read_back: Option<ReadBack>,
    },
    /// Nothing is known to have landed (connection lost, timeout, error).
    Failed,
    /// The batch ran, but Redis refused the STATE_DB writes of the ports in `rejected` (per-key
    /// errors: the key holds another type, ...): their entries are as before, and their writes are
    /// tried again after a per-port backoff. Everything else landed, as with `Done`.
    Partial {
        known: Vec<(String, bool)>,
        read_back: Option<ReadBack>,
        rejected: Vec<String>,
    },
}

/// Things the daemon must act on or log, drained after each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The initial sync ended.
    SyncCompleted(SyncEnd),
    /// SONiC's old-netdev handling: set this ifindex admin-down.
    SetAdminDown { ifindex: u32, name: String },
    /// A dump ended interrupted (NLM_F_DUMP_INTR) or tainted by an overrun; another is due.
    DumpInconsistent { seq: u32 },
    /// A completed dump showed ports gone without a DELLINK (removed from the kernel's view).
    Vanished { names: Vec<String> },
    /// The read-back after a Redis reconnect landed: of `ports` read back, `rewrite` differ from the
    /// kernel's view and are written again; `app_missing` are ports orchagent knew that APPL_DB
    /// `PORT_TABLE` no longer has (Redis restarted empty or was flushed).
    ReadBack {
        ports: usize,
        rewrite: Vec<String>,
        app_missing: Vec<String>,
    },
    /// An anti-entropy check ended: the ports whose kernel view (fresh dump) or whose STATE_DB
    /// entry (read-back) differed from what portsyncd believed; each is being repaired.
    CheckDone {
        kernel: Vec<String>,
        state_db: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct Dump {
    seq: u32,
    requested_at: Instant,
    /// Names touched by a dump reply, or by a notification after the first reply.
    touched: BTreeSet<String>,
    /// The first reply of this dump arrived.
    seen_reply: bool,
    /// An overrun or NLM_F_DUMP_INTR made this dump unusable for deletions.
    tainted: bool,
    /// This is the first dump (old-netdev handling applies to its replies).
    initial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    /// Not due.
    Idle,
    /// Due, not handed out.
    Due,
    /// In the batch in flight.
    Sending,
    /// Landed.
    Sent,
}

/// Counters the core keeps (the daemon exports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub link_events: u64,
    pub overruns: u64,
    pub resyncs: u64,
    pub dumps_inconsistent: u64,
}

/// A published port's status with the kernel's view of it (what the store records).
pub type SavedState = (PortStatus, Option<KernelPort>);

/// The sans-IO port table.
#[derive(Debug)]
pub struct Core {
    mode: StartMode,
    sync: SyncState,
    kernel: HashMap<String, KernelPort>,
    by_ifindex: HashMap<u32, String>,
    published: HashMap<String, Option<PortStatus>>,
    /// Names whose STATE_DB entry must go (DELLINK, or gone in a completed dump).
    must_delete: BTreeSet<String>,
    /// Cold start: names that may hold an old STATE_DB entry; deleted if absent after the first dump.
    stale_candidates: BTreeSet<String>,
    dirty: BTreeSet<String>,
    /// Names whose saved record (published status, kernel ifindex and flags) may have changed since
    /// the store last got them ([`Core::drain_saved_changes`]).
    saved_dirty: HashSet<String>,
    in_flight: Option<Work>,
    /// After a failed batch: no new batch before this instant.
    retry_at: Option<Instant>,
    retry_backoff: Backoff,
    app_known: HashSet<String>,
    unknown: BTreeSet<String>,
    next_recheck: Option<Instant>,
    ignored_ifindex: BTreeSet<u32>,
    /// Names of the old netdevs (they exist: their STATE_DB entries are not deleted as stale).
    old_names: BTreeSet<String>,
    init_pending: BTreeSet<String>,
    init_done: Flag,
    reconciled: Flag,
    dump: Option<Dump>,
    dump_due: bool,
    last_dump_request: Option<Instant>,
    dumps_requested: u64,
    first_dump_complete: bool,
    snapshot_due: bool,
    notices: Vec<Notice>,
    stats: CoreStats,
    /// A read-back of Redis is due, and why (see `readback.rs`).
    read_back: readback::ReadBackState,
    /// The anti-entropy check (see `antientropy.rs`).
    check: antientropy::Check,
    /// Ports whose last write Redis rejected: not written again before their instant.
    held: HashMap<String, Held>,
}

/// A port whose write Redis rejected, and when it may be tried again.
#[derive(Debug)]
struct Held {
    until: Instant,
    backoff: Backoff,
}

impl Core {
    /// A core at `now`; the first dump is due immediately.
    pub fn new(cfg: CoreConfig, now: Instant) -> Self {
        let init_pending = cfg
            .configured
            .difference(&cfg.already_initialised)
            .cloned()
            .collect();
        let (published, stale_candidates) = match cfg.mode {
            StartMode::Warm => (
                cfg.baseline
                    .iter()
                    .map(|(n, s)| (n.clone(), Some(*s)))
                    .collect(),
                BTreeSet::new(),
            ),
            StartMode::Cold { .. } => (HashMap::new(), cfg.baseline.keys().cloned().collect()),
        };
        Core {
            mode: cfg.mode,
            sync: SyncState::start(now, cfg.eoiu_timeout),
            kernel: HashMap::new(),
            by_ifindex: HashMap::new(),
            published,
            must_delete: BTreeSet::new(),
            stale_candidates,
            dirty: BTreeSet::new(),
            saved_dirty: HashSet::new(),
            in_flight: None,
            retry_at: None,
            retry_backoff: Backoff::new(REDIS_RETRY_MIN, REDIS_RETRY_MAX),
            app_known: cfg.app_known.into_iter().collect(),
            unknown: BTreeSet::new(),
            next_recheck: None,
            ignored_ifindex: BTreeSet::new(),
            old_names: BTreeSet::new(),
            init_pending,
            init_done: Flag::Idle,
            reconciled: Flag::Idle,
            dump: None,
            dump_due: true,
            last_dump_request: None,
            dumps_requested: 0,
            first_dump_complete: false,
            snapshot_due: false,
            notices: Vec::new(),
            stats: CoreStats::default(),
            read_back: readback::ReadBackState::default(),
            check: antientropy::Check::default(),
            held: HashMap::new(),
        }
    }

    /// Names whose STATE_DB entry exists though the baseline does not hold it (it is not a valid
    /// entry of portsyncd's: start-up reads it as no baseline at all). Like a cold start's
    /// candidates, warm or cold: deleted if the port is absent once the first dump completed;
    /// a port that exists is not in `published`, so its entry is rewritten.
    pub fn with_stale_candidates(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.stale_candidates.extend(names);
        self
    }

    // ----- inputs -------------------------------------------------------------------------------

    /// A link message. `seq` is the netlink sequence number (dump replies carry the dump's).
    pub fn on_link(&mut self, seq: u32, ev: &LinkEvent, dump_intr: bool) {
        self.stats.link_events += 1;
        let name = &ev.link.name;
        if !qualifying_name(name) {
            self.renamed_away(ev);
            return;
        }
        if ev.link.kind.as_deref() == Some("team") {
            return; // teamsyncd owns team devices
        }
        let from_dump = self.dump.as_ref().is_some_and(|d| d.seq == seq && seq != 0);
        if let Some(d) = self.dump.as_mut() {
            // Notifications queued before the dump's first reply are older than the whole dump (the
            // kernel queues the first reply behind them): they prove nothing about the present.
            if from_dump {
                d.seen_reply = true;
            }
            if d.seen_reply {
                d.touched.insert(name.clone());
            }
            if from_dump && dump_intr {
                d.tainted = true;
            }
        }
        if self.ignored_ifindex.contains(&ev.link.ifindex) {
            // An old netdev: ignored, but a dump listing it shows that its name still exists (and
            // an interrupted reply about it taints the dump like any other).
            return;
        }
        match ev.op {
            LinkOp::New => {
                if from_dump
                    && self.dump.as_ref().is_some_and(|d| d.initial)
                    && matches!(self.mode, StartMode::Cold { old_netdev: true })
                    && front_panel_name(name)
                {
                    // SONiC: an Ethernet netdev that exists at a cold start is left over from an
                    // earlier run. Set it down and ignore its ifindex for the process lifetime.
                    self.ignored_ifindex.insert(ev.link.ifindex);
                    self.old_names.insert(name.clone());
                    if self
                        .kernel
                        .get(name)
                        .is_some_and(|k| k.ifindex == ev.link.ifindex)
                    {
                        // A notification got here before the dump reply: forget it quietly.
                        self.kernel.remove(name);
                        self.saved_dirty.insert(name.clone());
                        self.by_ifindex.remove(&ev.link.ifindex);
                        self.unknown.remove(name);
                        self.dirty.remove(name);
                    }
                    self.notices.push(Notice::SetAdminDown {
                        ifindex: ev.link.ifindex,
                        name: name.clone(),
                    });
                    return;
                }
                if from_dump {
                    self.note_dump_reply(name, &ev.link);
                }
                self.upsert(name, ev.link.ifindex, ev.link.flags, ev.link.mtu);
            }
            LinkOp::Del => {
                if ev.link.master != 0 {
                    return; // bridge-family notice of a port leaving a bridge: the netdev stays
                }
                self.remove(name);
            }
        }
    }

    /// A message about a name portsyncd never publishes (`foo`, a name that is not UTF-8, escaped
    /// by the parser): if its ifindex carried a port, that port was renamed away and is gone under
    /// its old name without a DELLINK of it. A bridge member's DELLINK (with a master) is not that.
    fn renamed_away(&mut self, ev: &LinkEvent) {
        if ev.op == LinkOp::Del && ev.link.master != 0 {
            return;
        }
        if let Some(old) = self.by_ifindex.get(&ev.link.ifindex).cloned() {
            self.remove(&old);
        }
    }

    fn upsert(&mut self, name: &str, ifindex: u32, flags: u32, mtu: u32) {
        // (The common case, a known port changing, allocates no string: a name is copied only into
        // a map that does not hold it yet.)
        // A rename: the ifindex had another name, which is gone without a DELLINK.
        let known = match self.by_ifindex.get(&ifindex) {
            Some(old) if old != name => {
                let old = old.clone();
                self.remove(&old);
                false
            }
            Some(_) => true,
            None => false,
        };
        let port = KernelPort {
            ifindex,
            flags,
            mtu,
        };
        let prev = match self.kernel.get_mut(name) {
            Some(k) => Some(std::mem::replace(k, port)),
            None => self.kernel.insert(name.to_string(), port),
        };
        match prev {
            Some(prev) if prev.ifindex == ifindex && prev.flags == flags => {}
            prev => {
                if let Some(prev) = prev.filter(|p| p.ifindex != ifindex) {
                    self.by_ifindex.remove(&prev.ifindex);
                }
                self.note_saved_change(name);
            }
        }
        if !known || !self.by_ifindex.contains_key(&ifindex) {
            self.by_ifindex.insert(ifindex, name.to_string());
        }
        // A DEL still owed for an earlier netdev of this name stays owed: it goes out first.
        if self.app_known.contains(name) {
            self.init_pending.remove(name);
        } else if self.unknown.insert(name.to_string()) {
            // A name not seen unknown before is looked up with the next batch, not a second later.
            self.next_recheck = None;
        }
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_string());
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(prev) = self.kernel.remove(name) {
            self.by_ifindex.remove(&prev.ifindex);
            self.note_saved_change(name);
        }
        self.unknown.remove(name);
        // SONiC deletes the STATE_DB entry of any qualifying name on DELLINK; a later port of the same
        // name must be confirmed by APPL_DB again (a port breakout removes it there).
        self.app_known.remove(name);
        self.must_delete.insert(name.to_string());
        self.dirty.insert(name.to_string());
    }

    /// A netlink overrun (ENOBUFS): events were lost; a fresh dump is due.
    pub fn on_overrun(&mut self) {
        self.stats.overruns += 1;
        if let Some(d) = self.dump.as_mut() {
            d.tainted = true;
        }
        self.dump_due = true;
    }

    /// The daemon sent a dump request with `seq`.
    pub fn on_dump_requested(&mut self, seq: u32, now: Instant) {
        let initial = self.dumps_requested == 0;
        self.dumps_requested += 1;
        if !initial && !self.checking() {
            self.stats.resyncs += 1; // an anti-entropy check's dump is no resync
        }
        self.dump = Some(Dump {
            seq,
            requested_at: now,
            touched: BTreeSet::new(),
            seen_reply: false,
            tainted: false,
            initial,
        });
        self.dump_due = false;
        self.last_dump_request = Some(now);
    }

    /// Sending a dump request failed; try again later.
    pub fn on_dump_request_failed(&mut self, now: Instant) {
        self.dump_due = true;
        self.last_dump_request = Some(now);
    }

    /// NLMSG_DONE (or an NLMSG_ERROR) for `seq`.
    pub fn on_dump_done(&mut self, seq: u32, dump_intr: bool, failed: bool, now: Instant) {
        let Some(dump) = self.dump.take_if(|d| d.seq == seq) else {
            return; // not our current dump
        };
        if dump_intr || failed || dump.tainted {
            self.stats.dumps_inconsistent += 1;
            self.notices.push(Notice::DumpInconsistent { seq });
            self.dump_due = true;
            return;
        }
        // Every port the dump did not mention (and no notification touched) is gone.
        let mut vanished: Vec<String> = self
            .kernel
            .keys()
            .filter(|n| !dump.touched.contains(*n))
            .cloned()
            .collect();
        vanished.sort_unstable(); // the port table is a hash map: report in name order
        for n in &vanished {
            self.remove(n);
        }
        self.first_dump_complete = true;
        // Old netdevs' names that no complete dump shows any more (under the old ifindex or a new
        // one): the entry left from the earlier run belongs to no netdev now. Without this it stayed
        // for good when the netdev that replaced the old one came and went during an overrun.
        let old_gone: Vec<String> = self
            .old_names
            .iter()
            .filter(|n| !self.kernel.contains_key(*n) && !dump.touched.contains(*n))
            .cloned()
            .collect();
        for n in old_gone {
            self.old_names.remove(&n);
            self.must_delete.insert(n.clone());
            self.dirty.insert(n);
        }
        self.check_dump_done(&vanished);
        if !vanished.is_empty() && !dump.initial {
            self.notices.push(Notice::Vanished { names: vanished });
        }
        // Entries of earlier runs whose netdev is gone: the baseline (warm) or candidates (cold).
        let gone: Vec<String> = self
            .published
            .iter()
            .filter(|(n, v)| v.is_some() && !self.kernel.contains_key(*n))
            .map(|(n, _)| n.clone())
            .chain(
                std::mem::take(&mut self.stale_candidates)
                    .into_iter()
                    .filter(|n| !self.kernel.contains_key(n) && !self.old_names.contains(n)),
            )
            .collect();
        for n in gone {
            self.must_delete.insert(n.clone());
            self.dirty.insert(n);
        }
        if let Some(end) = self.sync.on(SyncEvent::DumpComplete, now) {
            self.finish_sync(end);
        }
    }

    /// Time passed: checks the EOIU timeout (on its own, not only when an event arrives).
    pub fn on_tick(&mut self, now: Instant) {
        if let Some(end) = self.sync.on(SyncEvent::Tick(now), now) {
            self.finish_sync(end);
        }
        if let Some(d) = &self.dump {
            if now.saturating_duration_since(d.requested_at) >= DUMP_WATCHDOG {
                self.dump = None;
                self.dump_due = true;
            }
        }
        self.check_tick(now);
    }

    fn finish_sync(&mut self, end: SyncEnd) {
        self.notices.push(Notice::SyncCompleted(end));
        if self.mode == StartMode::Warm {
            self.reconciled = Flag::Due;
        }
    }

    // ----- outputs ------------------------------------------------------------------------------

    /// When the daemon should request a dump (rate-limited), if one is due at `now`.
    pub fn dump_due(&self, now: Instant) -> bool {
        self.dump_due
            && self.dump.is_none()
            && self
                .last_dump_request
                .is_none_or(|t| now.saturating_duration_since(t) >= DUMP_MIN_INTERVAL)
    }

    /// The next instant the daemon must call `on_tick` / look at `dump_due` / `take_work` even if
    /// no event arrives.
    pub fn next_deadline(&self) -> Option<Instant> {
        let dump_retry = (self.dump_due && self.dump.is_none())
            .then(|| self.last_dump_request.map(|t| t + DUMP_MIN_INTERVAL))
            .flatten();
        let watchdog = self.dump.as_ref().map(|d| d.requested_at + DUMP_WATCHDOG);
        [
            self.sync.deadline(),
            dump_retry,
            watchdog,
            self.check_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next instant `take_work` has something to hand out even if no event arrives: the end
    /// of the retry wait after a failed batch, or the recheck of ports unknown to APPL_DB. None while
    /// a batch is in flight (its result wakes the loop anyway).
    pub fn next_work_deadline(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(t) = self.retry_at {
            // Nothing goes out before it, whatever else is due (no busy loop on a past deadline).
            return Some(t);
        }
        let recheck = (!self.unknown.is_empty())
            .then_some(self.next_recheck)
            .flatten();
        let held = self
            .held
            .iter()
            .filter(|(n, _)| self.dirty.contains(*n))
            .map(|(_, h)| h.until)
            .min();
        recheck.into_iter().chain(held).min()
    }

    /// True while a batch handed out by `take_work` awaits its result.
    pub fn work_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The next batch for Redis, if one is due, none is in flight and no retry wait is running.
    pub fn take_work(&mut self, now: Instant) -> Option<Work> {
        if self.in_flight.is_some() {
            return None;
        }
        match self.retry_at {
            Some(t) if now < t => return None,
            Some(_) => self.retry_at = None,
            None => {}
        }
        if let Some(work) = self.take_read_back() {
            self.in_flight = Some(work.clone());
            return Some(work);
        }
        let mut work = Work::default();
        if self.next_recheck.is_none_or(|t| now >= t) && !self.unknown.is_empty() {
            work.checks = self.unknown.iter().cloned().collect();
            self.next_recheck = Some(now + UNKNOWN_RECHECK);
        }
        if !self.sync.waiting() {
            let dirty = std::mem::take(&mut self.dirty);
            for name in dirty {
                // (`held` is empty unless Redis rejected a write: no hashing on the common path.)
                if !self.held.is_empty() && self.held.get(&name).is_some_and(|h| now < h.until) {
                    self.dirty.insert(name); // rejected lately: its turn comes later
                    continue;
                }
                // A DEL is owed only while Redis may hold the entry: when it is known absent (an
                // earlier DEL landed, nothing was written since), the debt is paid. Left in place it
                // would turn the next change of a re-created port into a DEL + HSET.
                if self.published.get(&name) == Some(&None) {
                    self.must_delete.remove(&name);
                }
                let before = work.writes.len();
                self.due_changes(&name, &mut work.writes);
                if work.writes.len() == before && !self.held.is_empty() {
                    self.held.remove(&name); // nothing due any more: no hold to keep
                }
            }
            if self.init_pending.is_empty() && self.init_done == Flag::Idle {
                self.init_done = Flag::Due;
            }
            if self.init_done == Flag::Due {
                work.port_init_done = true;
                self.init_done = Flag::Sending;
            }
            // "reconciled" only once the reconcile itself has landed: no write may be outstanding.
            if self.reconciled == Flag::Due && work.writes.is_empty() {
                work.reconciled = true;
                self.reconciled = Flag::Sending;
            }
        }
        if work.is_empty() {
            return None;
        }
        self.in_flight = Some(work.clone());
        Some(work)
    }

    /// The writes due for `name`, in order: a DEL still owed for a netdev that went away (even if a
    /// new one of the same name exists since: SONiC deletes on every DELLINK), then the HSET of what
    /// the kernel says now, unless Redis already holds it.
    fn due_changes(&self, name: &str, out: &mut Vec<StateChange>) {
        let mut have = self.published.get(name).copied();
        if self.must_delete.contains(name) && have != Some(None) {
            out.push((name.to_string(), None));
            have = Some(None);
        }
        if let Some(k) = self.kernel.get(name) {
            // Only a configured port orchagent knows (APPL_DB) is published.
            if self.app_known.contains(name) && have != Some(Some(k.status())) {
                out.push((name.to_string(), Some(k.status())));
            }
        }
    }

    /// The Redis edge finished the batch in flight at `now`. After a failure the next batch waits
    /// [`REDIS_RETRY_MIN`], doubling per consecutive failure up to [`REDIS_RETRY_MAX`].
    pub fn on_work_result(&mut self, result: WorkResult, now: Instant) {
        let Some(work) = self.in_flight.take() else {
            return;
        };
        match result {
            WorkResult::Done { known, read_back } => {
                self.on_work_done(work, known, read_back, &[], now)
            }
            WorkResult::Partial {
                known,
                read_back,
                rejected,
            } => self.on_work_done(work, known, read_back, &rejected, now),
            WorkResult::Failed => {
                self.retry_at = Some(now + self.retry_backoff.next_delay());
                if work.read_back.is_some() {
                    self.read_back.due = true;
                }
                for (name, _) in work.writes {
                    self.dirty.insert(name);
                }
                if !work.checks.is_empty() {
                    self.next_recheck = None;
                }
                if work.port_init_done {
                    self.init_done = Flag::Due;
                }
                if work.reconciled {
                    self.reconciled = Flag::Due;
                }
            }
        }
    }

    /// A batch landed, except the STATE_DB writes of the ports in `rejected`.
    fn on_work_done(
        &mut self,
        work: Work,
        known: Vec<(String, bool)>,
        read_back: Option<ReadBack>,
        rejected: &[String],
        now: Instant,
    ) {
        self.retry_backoff.reset();
        self.retry_at = None;
        if work.read_back.is_some() {
            self.on_read_back(read_back);
        }
        let rejected: HashSet<&str> = rejected.iter().map(String::as_str).collect();
        for (name, value) in work.writes {
            if rejected.contains(name.as_str()) {
                // Redis holds what it held before; tried again after this port's own backoff.
                let held = self.held.entry(name.clone()).or_insert_with(|| Held {
                    until: now,
                    backoff: Backoff::new(REJECTED_RETRY_MIN, REJECTED_RETRY_MAX),
                });
                if held.until <= now {
                    held.until = now + held.backoff.next_delay();
                }
                self.dirty.insert(name);
                continue;
            }
            if !self.held.is_empty() {
                self.held.remove(&name);
            }
            if value.is_none() {
                self.must_delete.remove(&name);
            }
            let before = match self.published.get_mut(&name) {
                Some(v) => Some(std::mem::replace(v, value)),
                None => self.published.insert(name.clone(), value),
            };
            if before != Some(value) {
                self.saved_dirty.insert(name);
            }
            self.snapshot_due = true;
        }
        for (name, is_known) in known {
            if is_known && self.unknown.remove(&name) && self.kernel.contains_key(&name) {
                self.app_known.insert(name.clone());
                self.init_pending.remove(&name);
                self.dirty.insert(name);
            }
        }
        if work.port_init_done {
            self.init_done = Flag::Sent;
        }
        if work.reconciled {
            self.reconciled = Flag::Sent;
        }
    }

    /// True while the write of `name` is held back after Redis rejected it (tests, logs).
    pub fn write_held(&self, name: &str) -> bool {
        self.held.contains_key(name)
    }

    /// Notices since the last call.
    pub fn drain_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// True once if `published` changed since the last call (the store should commit).
    pub fn take_snapshot_due(&mut self) -> bool {
        std::mem::take(&mut self.snapshot_due)
    }

    /// A saved record's kernel part (ifindex, flags) changed: only ports with a published entry have one.
    fn note_saved_change(&mut self, name: &str) {
        if matches!(self.published.get(name), Some(Some(_))) && !self.saved_dirty.contains(name) {
            self.saved_dirty.insert(name.to_string());
        }
    }

    /// The ports whose saved record may have changed since the last call, each with what
    /// [`Core::published_ports`] now gives for it (`None`: no published entry any more). Together with
    /// one full [`Core::published_ports`] before them, they reproduce the published table.
    pub fn drain_saved_changes(&mut self) -> Vec<(String, Option<SavedState>)> {
        // A hash set while changes come (a storm touches most ports: no name comparisons per
        // change), sorted by name once here.
        let mut out: Vec<(String, Option<SavedState>)> = std::mem::take(&mut self.saved_dirty)
            .into_iter()
            .map(|n| {
                let now = match self.published.get(&n) {
                    Some(Some(status)) => Some((*status, self.kernel.get(&n).copied())),
                    _ => None,
                };
                (n, now)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forget the pending saved changes (the store is about to get the full table).
    pub fn clear_saved_changes(&mut self) {
        self.saved_dirty.clear();
    }

    /// Ports whose STATE_DB entry portsyncd wrote and knows to be there, with the kernel's view.
    pub fn published_ports(&self) -> impl Iterator<Item = (&str, PortStatus, Option<KernelPort>)> {
        self.published
            .iter()
            .filter_map(|(n, v)| v.map(|status| (n.as_str(), status, self.kernel.get(n).copied())))
    }

    /// True while the initial sync holds writes back.
    pub fn syncing(&self) -> bool {
        self.sync.waiting()
    }

    /// True once PortInitDone has landed.
    pub fn port_init_done_sent(&self) -> bool {
        self.init_done == Flag::Sent
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// The kernel's view of a port (tests, logs).
    pub fn kernel_port(&self, name: &str) -> Option<KernelPort> {
        self.kernel.get(name).copied()
    }
}
