//! The deterministic simulation of the whole daemon (issue 18, part 1).
//!
//! One seed drives, on a simulated clock (milliseconds; no sleeps, no threads):
//! - the real core (`portsyncd::core::Core`) and the real store (`Store::with_backend` over
//!   [`disk::SimDisk`], which loses what was not synced at a crash), the real baseline decision, the
//!   real commit pacer and saved-record hand-over (`daemon::pacer`, `daemon::saved`);
//! - the loop glue of `daemon/event_loop.rs`, the Redis writer of `daemon/redis_writer.rs` and
//!   `daemon/redis_work.rs`, the start-up of `daemon/startup.rs` and the committer of
//!   `daemon/committer.rs`: these are thread- or connection-bound, so they are small faithful models
//!   here ([`Sim::step`], [`redis::execute`], [`Sim::start`], [`Sim::commit`]);
//! - a model kernel ([`kernel::Kernel`]), a model Redis ([`redis::Redis`]) with SONiC's warm-restart
//!   tables and an orchagent stand-in.
//!
//! Faults come from a schedule drawn from the seed ([`schedule::generate`]); invariants are checked
//! as things land and at every quiet point ([`Invariant`]).

// Shared by the simulation test crate and its planted-bug tests; each uses a subset of it.
#![allow(dead_code)]

pub mod disk;
pub mod kernel;
pub mod redis;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portsyncd::core::baseline::{self, BaselineInputs};
use portsyncd::core::port::qualifying_name;
use portsyncd::core::{
    BaselineSource, Core, CoreConfig, Notice, PortStatus, StartMode, Work, WorkResult,
};
use portsyncd::daemon::pacer::CommitPacer;
use portsyncd::daemon::saved::{PortDelta, SavedPort, SavedTable};
use portsyncd::daemon::saved_names::publishable_saved_ports;
use portsyncd::store::{PortRecord, Store, StoreConfig};

use disk::{ArmedCrash, SimDisk};
use kernel::{Item, KLink, Kernel};
use redis::{state_port_key, state_status, EdgeBugs, Redis, Val};
use schedule::{Ev, Foreign, Rng};

/// The invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// At a quiet point STATE_DB holds, for every qualifying port orchagent knows, what the kernel
    /// says (portsyncd's four fields), no entry for a qualifying name without a netdev, and the
    /// warm-restart state of the running start.
    RedisEqualsKernel,
    /// A warm start wrote nothing for ports unchanged since before it (until `reconciled`).
    WarmWroteUnchanged,
    /// No DEL reached STATE_DB for a port whose netdev exists and had one throughout since the
    /// sending daemon started, or since a DEL of it was last confirmed to that daemon.
    NoDelForExisting,
    /// After a crash the store opens to the last acknowledged generation or a newer one, with the
    /// acknowledged ports (checked at every restart and, on a crash copy, at every quiet point).
    AckedGenerationLoads,
    /// The core's counters equal the events injected into this process (link messages, overruns,
    /// inconsistent dumps).
    CountersMatchEvents,
}

/// Planted bugs (test-only switches in the harness and adapters); each must be caught.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Plant {
    #[default]
    None,
    /// The Redis edge skips HSETs with MTU 1500 but reports them landed.
    SkipWrite,
    /// The Redis edge sends a DEL before every HSET.
    DelBeforeSet,
    /// A warm start ignores its baseline (rewrites everything).
    WarmRewritesAll,
    /// The disk acknowledges `fsync` without making anything durable.
    AckBeforeSync,
    /// The netlink reader hands every link message to the core twice.
    DoubleDelivery,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: Invariant,
    pub t_ms: u64,
    pub what: String,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub events: usize,
    pub checks: u64,
    pub restarts: u64,
    pub warm_starts: u64,
    pub commits: u64,
    pub batches: u64,
    pub sim_ms: u64,
}

const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
const IO_TIMEOUT_MS: u64 = 2_000;
/// How long after a cold start with old netdevs syncd re-creates the host interfaces.
const RECREATE_MS: u64 = 3_000;
/// The ifindex of the bridge ports join (the bridge itself is not modelled: it never qualifies).
const BRIDGE_IFINDEX: u32 = 1_000_000;

fn port_name(i: u32) -> String {
    format!("Ethernet{}", i * 4)
}

/// A batch handed to the Redis writer.
struct InFlight {
    work: Work,
    /// When the writer sent it.
    sent_ms: u64,
    /// When its commands reach Redis (None: never, they were lost).
    land_at: Option<u64>,
    /// Redis epoch at dispatch: a drop before landing cuts the batch.
    epoch: u64,
    result_at: u64,
    /// Decided at landing, or Failed at a timeout or a cut.
    result: Option<WorkResult>,
    incarnation: u64,
}

/// A running portsyncd.
struct Proc {
    incarnation: u64,
    core: Core,
    store: Option<Store>,
    reopen_at: Option<u64>,
    reopen_backoff_ms: u64,
    /// The committer's table and what the store has not got (model of `committer.rs`).
    table: SavedTable,
    retained: bool,
    full_handed_over: bool,
    pacer: CommitPacer,
    warm: bool,
    conn_epoch: u64,
    conn_broken: bool,
    pending_reconnect: bool,
    in_flight: bool,
    stopping: Option<u64>,
    ignored: BTreeSet<u32>,
    admin_down: Vec<u32>,
    recreate_at: Option<u64>,
    // What was injected into this process (the counters invariant).
    links_delivered: u64,
    overruns_delivered: u64,
    dump_seq: Option<u32>,
    dump_tainted: bool,
    inconsistent: u64,
    /// Names the core published when Redis lost everything (orchagent's APPL_DB went with it).
    sticky_known: BTreeSet<String>,
    /// Redis restarted empty since this process started.
    redis_flushed: bool,
}

/// The warm-start watch: ports unchanged since before the start must get no write.
struct WarmWatch {
    incarnation: u64,
    unchanged: BTreeSet<String>,
}

pub struct Sim {
    t: u64,
    t0: Instant,
    plant: Plant,
    rng: Rng,
    pub kernel: Kernel,
    pub redis: Redis,
    disk: SimDisk,
    proc: Option<Proc>,
    start_at: Option<(u64, bool)>,
    next_incarnation: u64,
    batch: Option<InFlight>,
    /// Late landings: batches whose client gave up during a stall.
    late: Vec<InFlight>,
    disk_ok_at: Option<u64>,
    armed: Option<(ArmedCrash, u32, u64, bool)>,
    /// The last acknowledged generation and its ports.
    acked: Option<(u64, BTreeMap<String, PortRecord>)>,
    warm_watch: Option<WarmWatch>,
    /// Names removed from the kernel since portsyncd last learned that a DEL of them landed (a DEL
    /// may be sent again after a failed batch, or after a removal the core learns about late).
    removed_since_del: BTreeSet<String>,
    /// The last instant each name had no netdev (its removal, or just before its creation).
    absent_at: BTreeMap<String, u64>,
    /// The last DEL of each name confirmed to a daemon: its incarnation and when.
    confirmed_del: BTreeMap<String, (u64, u64)>,
    /// When each incarnation started.
    inc_start: BTreeMap<u64, u64>,
    configured: u32,
    /// Flaps of a storm still to come.
    storm: std::collections::VecDeque<(u64, u32)>,
    reader_stalled_until: Option<u64>,
    pub stats: Stats,
    pub violation: Option<Violation>,
}

fn store_cfg() -> StoreConfig {
    StoreConfig {
        json_export: None,
        generations: 3,
        ..StoreConfig::new("/nonexistent/portsyncd-sim")
    }
}

impl Sim {
    pub fn new(seed: u64, configured: u32, plant: Plant) -> Sim {
        let mut kernel = Kernel::new();
        let mut redis = Redis::default();
        let mut rng = Rng::new(seed ^ 0x5eed_5eed);
        for i in 0..configured {
            let name = port_name(i);
            kernel.add(KLink {
                name: name.clone(),
                admin_up: true,
                carrier: rng.pct(80),
                mtu: 9100,
                kind: None,
                master: 0,
            });
            let fields = BTreeMap::from([
                (b"admin_status".to_vec(), b"up".to_vec()),
                (b"mtu".to_vec(), b"9100".to_vec()),
                (b"lanes".to_vec(), format!("{}", i * 4).into_bytes()),
            ]);
            redis
                .config
                .insert(format!("PORT|{name}"), Val::Hash(fields));
        }
        // Netdevs portsyncd must never publish, and an unconfigured port.
        for (name, kind) in [
            ("eth0", None),
            ("PortChannel1", Some("team")),
            ("PortChannel2", Some("bond")),
        ] {
            kernel.add(KLink {
                name: name.into(),
                admin_up: true,
                carrier: true,
                mtu: 1500,
                kind: kind.map(str::to_string),
                master: 0,
            });
        }
        kernel.add(KLink {
            name: port_name(configured),
            admin_up: true,
            carrier: true,
            mtu: 9100,
            kind: None,
            master: 0,
        });
        if rng.pct(50) {
            let dev = Val::Hash(BTreeMap::from([(b"switch_type".to_vec(), b"dpu".to_vec())]));
            redis
                .config
                .insert("DEVICE_METADATA|localhost".to_string(), dev);
        }
        let disk = SimDisk::default();
        disk.set_ack_before_sync(plant == Plant::AckBeforeSync);
        Sim {
            t: 0,
            t0: Instant::now(),
            plant,
            rng,
            kernel,
            redis,
            disk,
            proc: None,
            start_at: Some((0, false)),
            next_incarnation: 1,
            batch: None,
            late: Vec::new(),
            disk_ok_at: None,
            armed: None,
            acked: None,
            warm_watch: None,
            removed_since_del: BTreeSet::new(),
            absent_at: BTreeMap::new(),
            confirmed_del: BTreeMap::new(),
            inc_start: BTreeMap::new(),
            configured,
            storm: Default::default(),
            reader_stalled_until: None,
            stats: Stats::default(),
            violation: None,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.t)
    }

    fn fail(&mut self, invariant: Invariant, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                invariant,
                t_ms: self.t,
                what,
            });
        }
    }

    // ----- the kernel, as events change it ---------------------------------------------------------

    fn kernel_removed(&mut self, name: &str) {
        if qualifying_name(name) {
            self.removed_since_del.insert(name.to_string());
            self.absent_at.insert(name.to_string(), self.t);
        }
        self.touched(name);
        if let Some(p) = self.proc.as_mut() {
            p.sticky_known.remove(name);
        }
    }

    /// A netdev of `name` appeared: the name had none until now.
    fn appeared(&mut self, name: &str) {
        self.absent_at.insert(name.to_string(), self.t);
        self.touched(name);
    }

    /// A change to `name` outside the daemon: it is no longer "unchanged" for a warm start.
    fn touched(&mut self, name: &str) {
        if let Some(w) = self.warm_watch.as_mut() {
            w.unchanged.remove(name);
        }
    }

    fn ignored(&self, ifindex: u32) -> bool {
        self.proc
            .as_ref()
            .is_some_and(|p| p.ignored.contains(&ifindex))
    }

    fn apply_event(&mut self, ev: &Ev) {
        if verbose() {
            eprintln!("{:>9.3} event {ev:?}", self.t as f64 / 1000.0);
        }
        match *ev {
            Ev::Flap { port } => self.modify(&port_name(port), |l| l.carrier = !l.carrier),
            Ev::Admin { port } => self.modify(&port_name(port), |l| l.admin_up = !l.admin_up),
            Ev::Mtu { port, mtu } => self.modify(&port_name(port), |l| l.mtu = mtu),
            Ev::Delete { port } => {
                let name = port_name(port);
                if let Some((i, _)) = self.kernel.by_name(&name) {
                    if !self.ignored(i) {
                        self.kernel.delete(i);
                        self.kernel_removed(&name);
                    }
                }
            }
            Ev::Create { port } => {
                let name = port_name(port);
                if self.kernel.by_name(&name).is_none() {
                    let carrier = self.rng.pct(70);
                    self.kernel.add(KLink {
                        name: name.clone(),
                        admin_up: true,
                        carrier,
                        mtu: 9100,
                        kind: None,
                        master: 0,
                    });
                    self.appeared(&name);
                }
            }
            Ev::Rename { port } => {
                let name = port_name(port);
                let away = if port % 2 == 0 {
                    format!("sw{port}")
                } else {
                    format!("{name}x")
                };
                if let Some((i, _)) = self.kernel.by_name(&name) {
                    if !self.ignored(i) && self.kernel.by_name(&away).is_none() {
                        self.kernel.modify(i, |l| l.name = away.clone());
                        self.kernel_removed(&name);
                        self.appeared(&away);
                    }
                } else if let Some((i, _)) = self.kernel.by_name(&away) {
                    self.kernel.modify(i, |l| l.name = name.clone());
                    self.kernel_removed(&away); // the name it had is gone (a DEL is due for it)
                    self.appeared(&name);
                }
            }
            Ev::Storm { n, sub } => {
                let mut r = Rng::new(sub);
                let slots = u64::from(self.configured + 2);
                let gap = r.below(6);
                for k in 0..u64::from(n) {
                    let port = r.below(slots) as u32;
                    self.storm.push_back((self.t + k * gap, port));
                }
            }
            Ev::Bridge { port } => {
                let name = port_name(port);
                if let Some((i, l)) = self.kernel.by_name(&name) {
                    if l.master == 0 {
                        self.kernel.modify(i, |l| l.master = BRIDGE_IFINDEX);
                    } else {
                        self.kernel.release_from_bridge(i);
                    }
                    self.touched(&name);
                }
            }
            Ev::ReaderStall { ms } => {
                self.reader_stalled_until = Some(self.t + ms);
            }
            Ev::Overrun { pct, sub } => {
                let mut r = Rng::new(sub);
                self.kernel.overrun(|_| r.pct(pct));
            }
            Ev::DumpIntr => self.kernel.force_intr = true,
            Ev::RedisStall { ms } => {
                let until = self.t + ms;
                self.redis.stalled_until =
                    Some(self.redis.stalled_until.map_or(until, |u| u.max(until)));
            }
            Ev::RedisDrop { cut } => {
                self.redis.drop_connections();
                self.cut_batch(cut as usize);
            }
            Ev::RedisRestartEmpty { down_ms } => {
                self.cut_batch(0);
                self.late.clear();
                self.redis.restart_empty(self.t, down_ms);
                self.warm_watch = None;
                if let Some(p) = self.proc.as_mut() {
                    // The ports the core knows orchagent knows: published, and not removed since
                    // (a removal makes the core ask APPL_DB again, which has lost them now).
                    p.sticky_known = p
                        .core
                        .published_ports()
                        .map(|(n, _, _)| n.to_string())
                        .filter(|n| !self.removed_since_del.contains(n))
                        .collect();
                    p.redis_flushed = true;
                }
            }
            Ev::ForeignWrite { port, how } => self.foreign(&port_name(port), how),
            Ev::FixWrongTypes => {
                self.redis
                    .state
                    .retain(|k, v| !(k.starts_with("PORT_TABLE|") && matches!(v, Val::Str(_))));
            }
            Ev::DiskFail { ms } => {
                self.disk.set_failing(true);
                let until = self.t + ms;
                self.disk_ok_at = Some(self.disk_ok_at.map_or(until, |u| u.max(until)));
            }
            Ev::Kill {
                keep,
                restart_ms,
                warm,
            } => {
                if self.proc.is_some() {
                    // A batch being sent is cut: what was written before the kill lands.
                    self.cut_batch((restart_ms % 4) as usize);
                    self.kill(keep as usize);
                    self.start_at = Some((self.t + restart_ms, warm));
                }
            }
            Ev::Term { restart_ms, warm } => {
                let t = self.t;
                if let Some(p) = self.proc.as_mut() {
                    if p.stopping.is_none() {
                        p.stopping = Some(t + 5_000);
                        self.start_at = Some((t + restart_ms.max(1), warm));
                    }
                }
            }
            Ev::CrashInCommit {
                after_ops,
                completes,
                keep,
                restart_ms,
                warm,
            } => {
                if self.proc.is_some() {
                    let arm = ArmedCrash {
                        after_ops,
                        completes,
                    };
                    self.disk.arm(arm);
                    self.armed = Some((arm, keep, restart_ms, warm));
                }
            }
            Ev::Check => self.quiet_point(),
        }
    }

    fn modify(&mut self, name: &str, f: impl FnOnce(&mut KLink)) {
        if let Some((i, _)) = self.kernel.by_name(name) {
            self.kernel.modify(i, f);
            self.touched(name);
        }
    }

    fn foreign(&mut self, name: &str, how: Foreign) {
        let key = state_port_key(name);
        if !self.redis.up(self.t) || self.kernel.by_name(name).is_none() {
            return; // foreign writers touch the entries of existing ports, when Redis answers
        }
        self.touched(name);
        let entry = self.redis.state.get_mut(&key);
        match (how, entry) {
            (Foreign::ExtraField, Some(Val::Hash(h))) => {
                h.insert(b"host_tx_ready".to_vec(), b"true".to_vec());
            }
            (Foreign::GarbageMtu, Some(Val::Hash(h))) => {
                h.insert(b"mtu".to_vec(), b"\xff9100".to_vec());
            }
            (Foreign::FlipOper, Some(Val::Hash(h))) => {
                let up = h.get(b"netdev_oper_status".as_slice()).map(Vec::as_slice) == Some(b"up");
                let v: &[u8] = if up { b"down" } else { b"up" };
                h.insert(b"netdev_oper_status".to_vec(), v.to_vec());
            }
            (Foreign::DelKey, Some(_)) => {
                self.redis.state.remove(&key);
            }
            (Foreign::WrongType, _) => {
                self.redis.state.insert(key, Val::Str(b"oops".to_vec()));
            }
            _ => {}
        }
    }

    // ----- Redis edge ------------------------------------------------------------------------------

    /// Every connection was cut while a batch was in flight: what was sent before the cut landed.
    fn cut_batch(&mut self, stages: usize) {
        let t = self.t;
        if let Some(b) = self.batch.as_mut() {
            if b.land_at.is_some_and(|l| l > t) {
                b.land_at = None;
                b.result = Some(WorkResult::Failed);
                b.result_at = b.result_at.min(t + 1);
                let work = b.work.clone();
                let inc = b.incarnation;
                let sent = b.sent_ms;
                let bugs = self.edge_bugs();
                redis::execute(&mut self.redis, &work, stages, bugs, sent, inc);
                self.after_landing();
            }
        }
        for l in &mut self.late {
            l.land_at = None;
        }
    }

    fn edge_bugs(&self) -> EdgeBugs {
        EdgeBugs {
            skip_write: self.plant == Plant::SkipWrite,
            del_before_set: self.plant == Plant::DelBeforeSet,
        }
    }

    /// The Redis writer takes a batch (model of `redis_writer::redis_writer` and `sonic::conn`).
    fn dispatch(&mut self, work: Work) {
        let t = self.t;
        self.stats.batches += 1;
        let p = self.proc.as_mut().expect("running");
        p.in_flight = true;
        let mut b = InFlight {
            work,
            sent_ms: t,
            land_at: None,
            epoch: self.redis.epoch,
            result_at: t + 1,
            result: None,
            incarnation: p.incarnation,
        };
        if p.conn_epoch != self.redis.epoch && !p.conn_broken {
            // The connection was cut while idle: the first command finds out.
            p.conn_broken = true;
            b.result = Some(WorkResult::Failed);
            self.batch = Some(b);
            return;
        }
        if self.redis.down_until.is_some_and(|d| t < d) {
            b.result = Some(WorkResult::Failed); // connection refused
            self.batch = Some(b);
            return;
        }
        if p.conn_broken {
            p.conn_broken = false;
            p.conn_epoch = self.redis.epoch;
            p.pending_reconnect = true;
        }
        let lat = 1 + self.rng.below(3);
        match self.redis.stalled_until.filter(|&s| s > t) {
            Some(s) if s - t > IO_TIMEOUT_MS => {
                // The client times out; Redis runs what it received once it resumes.
                p.conn_broken = true;
                b.result = Some(WorkResult::Failed);
                b.result_at = t + IO_TIMEOUT_MS;
                let late = InFlight {
                    work: b.work.clone(),
                    sent_ms: t,
                    land_at: Some(s),
                    epoch: self.redis.epoch,
                    result_at: s,
                    result: None,
                    incarnation: b.incarnation,
                };
                self.late.push(late);
            }
            Some(s) => {
                b.land_at = Some(s);
                b.result_at = s + lat;
            }
            None => {
                b.land_at = Some(t + lat);
                b.result_at = t + lat;
            }
        }
        self.batch = Some(b);
    }

    fn land(&mut self, b: &mut InFlight) {
        let bugs = self.edge_bugs();
        let (known, read_back, rejected) =
            redis::execute(&mut self.redis, &b.work, 3, bugs, b.sent_ms, b.incarnation);
        if b.result.is_none() {
            b.result = Some(if rejected.is_empty() {
                WorkResult::Done { known, read_back }
            } else {
                WorkResult::Partial {
                    known,
                    read_back,
                    rejected,
                }
            });
        }
        if b.work.reconciled {
            if let Some(w) = &self.warm_watch {
                if w.incarnation == b.incarnation {
                    self.warm_watch = None;
                }
            }
        }
        self.after_landing();
    }

    /// Checks what just landed in STATE_DB: no DEL of an existing port, no warm rewrite.
    fn after_landing(&mut self) {
        for l in std::mem::take(&mut self.redis.landed) {
            if verbose() {
                eprintln!(
                    "{:>9.3} landed (sent {:.3}, incarnation {}) {} {:?}",
                    self.t as f64 / 1000.0,
                    l.sent_ms as f64 / 1000.0,
                    l.incarnation,
                    l.name,
                    l.set
                );
            }
            if l.set.is_none() && self.kernel.by_name(&l.name).is_some() {
                // Legitimate only if the name had no netdev at some moment this daemon may not
                // have answered yet: since it started, and since a DEL of it was confirmed to it.
                let started = self.inc_start.get(&l.incarnation).copied().unwrap_or(0);
                let since = match self.confirmed_del.get(&l.name) {
                    Some(&(inc, t)) if inc == l.incarnation => t.max(started),
                    _ => started,
                };
                if self.absent_at.get(&l.name).is_none_or(|&a| a <= since) {
                    self.fail(
                        Invariant::NoDelForExisting,
                        format!(
                            "DEL PORT_TABLE|{} (incarnation {}) while its netdev exists and existed throughout since {:.3}s",
                            l.name,
                            l.incarnation,
                            since as f64 / 1000.0
                        ),
                    );
                }
            }
            if let Some(w) = &self.warm_watch {
                if w.incarnation == l.incarnation && w.unchanged.contains(&l.name) {
                    let what = format!(
                        "warm start (incarnation {}) wrote {:?} for unchanged port {}",
                        l.incarnation, l.set, l.name
                    );
                    self.fail(Invariant::WarmWroteUnchanged, what);
                }
            }
        }
    }

    fn redis_timeline(&mut self) {
        let t = self.t;
        if self.redis.stalled_until.is_some_and(|s| t >= s) {
            self.redis.stalled_until = None;
        }
        if self.redis.down_until.is_some_and(|d| t >= d) {
            self.redis.down_until = None;
        }
        let mut late = std::mem::take(&mut self.late);
        late.retain_mut(|l| match l.land_at {
            Some(at) if at <= t => {
                if l.epoch == self.redis.epoch {
                    let mut b = InFlight {
                        result: Some(WorkResult::Failed),
                        ..std::mem::replace(l, dummy())
                    };
                    self.land(&mut b);
                }
                false
            }
            Some(_) => true,
            None => false,
        });
        self.late.extend(late);
        if let Some(mut b) = self.batch.take() {
            if let Some(at) = b.land_at.filter(|&at| at <= t) {
                let _ = at;
                b.land_at = None;
                self.land(&mut b);
            }
            self.batch = Some(b);
        }
        if self.redis.up(t) && self.redis.orchagent_pending() {
            self.redis.orchagent_consume();
        }
    }

    // ----- the process -----------------------------------------------------------------------------

    /// The process dies (SIGKILL, a crash in a commit): the store loses what was not synced except
    /// the first `keep` batches, the socket goes, a batch in flight lands or not as sent.
    fn kill(&mut self, keep: usize) {
        if let Some(p) = self.proc.take() {
            self.check_counters(&p);
        }
        self.warm_watch = None;
        self.armed = None;
        self.kernel.close_socket();
        self.disk.crash(keep); // also disarms
        if let Some(b) = self.batch.as_mut() {
            b.result = Some(WorkResult::Failed); // nobody waits for it; it still lands if sent
        }
    }

    /// Start-up (model of `daemon::run` up to the loop and of `startup::run`; Redis answers, or
    /// start-up waits for it).
    fn start(&mut self, warm_wanted: bool) {
        let t = self.t;
        if !self.redis.up(t) {
            self.start_at = Some((t + 200, warm_wanted));
            return;
        }
        self.redis.set_warm_enabled(warm_wanted);
        self.stats.restarts += 1;
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        self.inc_start.insert(incarnation, t);
        // 1. The store.
        self.disk
            .set_ack_before_sync(self.plant == Plant::AckBeforeSync);
        let (store, recovered) = match Store::with_backend(Box::new(self.disk.clone()), store_cfg())
        {
            Ok((s, r)) => (Some(s), Some(r)),
            Err(e) => {
                self.fail(
                    Invariant::AckedGenerationLoads,
                    format!("store does not open: {e}"),
                );
                (None, None)
            }
        };
        if let (Some(rec), Some((gen, ports))) = (&recovered, self.acked.clone()) {
            self.check_recovered(rec, gen, &ports, "restart");
        }
        // 2. Warm or cold (SONiC's rule), as startup::decide_mode.
        let count = if self.redis.warm_enabled() {
            self.redis.restore_count()
        } else {
            None
        };
        let warm = match count {
            Some(n) => {
                let next = portsyncd::sonic::warm::next_restore_count(n).unwrap_or(1);
                self.redis.write_warm("restore_count", next.to_string());
                self.redis.write_warm("state", "initialized".into());
                true
            }
            None => {
                self.redis.write_warm("restore_count", "0".into());
                self.redis.write_warm("state", "disabled".into());
                false
            }
        };
        let configured: BTreeSet<String> = self
            .redis
            .config
            .keys()
            .filter_map(|k| k.strip_prefix("PORT|").map(str::to_string))
            .collect();
        let mut already_initialised = BTreeSet::new();
        let mode = if warm {
            StartMode::Warm
        } else {
            for n in &configured {
                if let Some(Val::Hash(h)) = self.redis.appl.get(&redis::app_port_key(n)) {
                    if h.contains_key(b"admin_status".as_slice()) {
                        already_initialised.insert(n.clone());
                    }
                }
            }
            for n in &configured {
                let fields: Vec<(&str, String)> = match self.redis.config.get(&format!("PORT|{n}"))
                {
                    Some(Val::Hash(h)) => h
                        .iter()
                        .map(|(f, v)| {
                            let f: &str = match f.as_slice() {
                                b"admin_status" => "admin_status",
                                b"mtu" => "mtu",
                                _ => "lanes",
                            };
                            (f, String::from_utf8_lossy(v).into_owned())
                        })
                        .collect(),
                    _ => continue,
                };
                self.redis.producer_set(n, &fields);
            }
            self.redis
                .producer_set("PortConfigDone", &[("count", configured.len().to_string())]);
            let dpu = matches!(self.redis.config.get("DEVICE_METADATA|localhost"),
                Some(Val::Hash(h)) if h.get(b"switch_type".as_slice()).map(Vec::as_slice) == Some(b"dpu"));
            StartMode::Cold { old_netdev: !dpu }
        };
        let app_known: BTreeSet<String> = configured
            .iter()
            .filter(|n| self.redis.app_exists(n))
            .cloned()
            .collect();
        let rows: BTreeMap<String, _> = self
            .redis
            .state
            .iter()
            .filter_map(|(k, v)| match (k.strip_prefix("PORT_TABLE|"), v) {
                (Some(n), Val::Hash(h)) => Some((n.to_string(), h.clone())),
                _ => None,
            })
            .collect();
        let saved = recovered
            .as_ref()
            .and_then(|r| r.snapshot.as_ref())
            .map(|snap| {
                publishable_saved_ports(snap)
                    .map(|(name, r)| {
                        let s = PortStatus::from_fields(&r.published).unwrap_or(PortStatus {
                            admin_up: r.admin_up,
                            oper_up: r.oper_up,
                            mtu: r.mtu,
                        });
                        (name.clone(), s)
                    })
                    .collect()
            });
        let unreadable = baseline::state_db_unreadable(&rows);
        let mut b = baseline::decide(BaselineInputs {
            warm,
            saved,
            state_db: baseline::state_db_statuses(&rows),
        });
        if warm && self.plant == Plant::WarmRewritesAll {
            b.ports.clear();
            b.source = BaselineSource::StateDb;
        }
        if warm {
            self.redis.write_warm("state", "restored".into());
            self.stats.warm_starts += 1;
            // Ports whose STATE_DB entry is what the kernel says now, that orchagent knows.
            let unchanged = self
                .kernel
                .links
                .values()
                .filter(|l| qualifying_name(&l.name) && l.kind.as_deref() != Some("team"))
                .filter(|l| self.redis.app_exists(&l.name))
                .filter(|l| {
                    matches!(state_status(&self.redis, &l.name), Some(Ok(s)) if s == status_of(l))
                })
                .map(|l| l.name.clone())
                .collect();
            self.warm_watch = Some(WarmWatch {
                incarnation,
                unchanged,
            });
        }
        if verbose() {
            eprintln!(
                "{:>9.3} start incarnation {incarnation}: {mode:?}, baseline {:?} ({} ports), store generation {:?}",
                t as f64 / 1000.0,
                b.source,
                b.ports.len(),
                recovered.as_ref().and_then(|r| r.generation)
            );
        }
        let core = Core::new(
            CoreConfig {
                mode,
                configured,
                already_initialised,
                app_known,
                baseline: b.ports,
                eoiu_timeout: Some(Duration::from_secs(10)),
            },
            self.now(),
        )
        .with_resync_interval(Some(RESYNC_INTERVAL))
        .with_stale_candidates(unreadable);
        self.kernel.open_socket();
        self.proc = Some(Proc {
            incarnation,
            core,
            reopen_at: store.is_none().then_some(t + 1_000),
            store,
            reopen_backoff_ms: 1_000,
            table: SavedTable::default(),
            retained: false,
            full_handed_over: false,
            pacer: CommitPacer::default(),
            warm,
            conn_epoch: self.redis.epoch,
            conn_broken: false,
            pending_reconnect: false,
            in_flight: false,
            stopping: None,
            ignored: BTreeSet::new(),
            admin_down: Vec::new(),
            recreate_at: None,
            links_delivered: 0,
            overruns_delivered: 0,
            dump_seq: None,
            dump_tainted: false,
            inconsistent: 0,
            sticky_known: BTreeSet::new(),
            redis_flushed: false,
        });
        // The batch of the previous process is nobody's now.
        if self
            .batch
            .as_ref()
            .is_some_and(|b| b.incarnation != incarnation)
        {
            let b = self.batch.take().expect("checked");
            if b.land_at.is_some() {
                self.late.push(b);
            }
        }
    }

    fn check_recovered(
        &mut self,
        rec: &portsyncd::store::Recovered,
        gen: u64,
        ports: &BTreeMap<String, PortRecord>,
        when: &str,
    ) {
        match rec.generation {
            Some(g) if g > gen => {}
            Some(g) if g == gen => {
                let got = rec.snapshot.as_ref().map(|s| &s.ports);
                if got != Some(ports) {
                    self.fail(
                        Invariant::AckedGenerationLoads,
                        format!(
                            "{when}: generation {gen} recovered with other ports than acknowledged"
                        ),
                    );
                }
            }
            other => self.fail(
                Invariant::AckedGenerationLoads,
                format!(
                    "{when}: acknowledged generation {gen}, the store opened to {other:?} ({:?})",
                    rec.source
                ),
            ),
        }
    }

    /// One iteration of the daemon's loop at `self.t` (model of `Loop::run`/`handle`/`step`).
    fn pump(&mut self) {
        let t = self.t;
        let now = self.now();
        // The store's disk heals; the committer reopens.
        if self.disk_ok_at.is_some_and(|d| t >= d) {
            self.disk_ok_at = None;
            self.disk.set_failing(false);
        }
        let Some(p) = self.proc.as_mut() else {
            return;
        };
        // Inputs: the batch result, then the netlink burst.
        if p.in_flight {
            if let Some(b) = self
                .batch
                .as_ref()
                .filter(|b| b.result_at <= t && b.result.is_some())
            {
                let _ = b;
                let b = self.batch.take().expect("checked");
                let result = b.result.expect("checked");
                let ok = !matches!(result, WorkResult::Failed);
                let reconnected = ok && p.pending_reconnect;
                if reconnected {
                    p.pending_reconnect = false;
                }
                p.in_flight = false;
                let rejected: &[String] = match &result {
                    WorkResult::Partial { rejected, .. } => rejected,
                    _ => &[],
                };
                if !matches!(result, WorkResult::Failed) {
                    for (name, v) in &b.work.writes {
                        if v.is_none() && !rejected.contains(name) {
                            self.removed_since_del.remove(name);
                            self.confirmed_del.insert(name.clone(), (p.incarnation, t));
                        }
                    }
                }
                p.core.on_work_result(result, now);
                if reconnected {
                    p.core.on_redis_reconnected();
                }
                if b.land_at.is_some() {
                    // Failed before it landed (a timeout): it lands later.
                }
            }
        }
        if p.stopping.is_none() && self.reader_stalled_until.is_none() {
            let parts = 1 + self.rng.below(16) as usize;
            let items = self.kernel.read(parts);
            let p = self.proc.as_mut().expect("running");
            for item in items {
                match item {
                    Item::Link {
                        seq,
                        dump_intr,
                        event,
                    } => {
                        p.links_delivered += 1;
                        if p.dump_seq == Some(seq) && seq != 0 && dump_intr {
                            p.dump_tainted = true;
                        }
                        p.core.on_link(seq, &event, dump_intr);
                        if self.plant == Plant::DoubleDelivery {
                            p.core.on_link(seq, &event, dump_intr);
                        }
                    }
                    Item::Done { seq, dump_intr } => {
                        if p.dump_seq == Some(seq) {
                            if dump_intr || p.dump_tainted {
                                p.inconsistent += 1;
                            }
                            p.dump_seq = None;
                        }
                        p.core.on_dump_done(seq, dump_intr, false, now);
                    }
                    Item::Overrun => {
                        p.overruns_delivered += 1;
                        if p.dump_seq.is_some() {
                            p.dump_tainted = true;
                        }
                        p.core.on_overrun();
                    }
                }
            }
        }
        // Old netdevs: the admin-down worker, and syncd re-creating the host interfaces.
        let p = self.proc.as_mut().expect("running");
        for i in std::mem::take(&mut p.admin_down) {
            self.kernel.modify(i, |l| l.admin_up = false);
        }
        let p = self.proc.as_mut().expect("running");
        if p.recreate_at.is_some_and(|r| t >= r) {
            p.recreate_at = None;
            let old: Vec<u32> = p.ignored.iter().copied().collect();
            for i in old {
                if let Some(mut l) = self.kernel.delete(i) {
                    l.admin_up = true;
                    let name = l.name.clone();
                    self.kernel.add(l);
                    self.appeared(&name);
                }
            }
        }
        let p = self.proc.as_mut().expect("running");
        if let Some(deadline) = p.stopping {
            if !p.in_flight || t >= deadline {
                self.final_commit();
            }
            return;
        }
        self.step();
    }

    /// `Loop::step`: timers, notices, dump requests, the next batch, the next commit.
    fn step(&mut self) {
        let t = self.t;
        let now = self.now();
        let p = self.proc.as_mut().expect("running");
        p.core.on_tick(now);
        for n in p.core.drain_notices() {
            match n {
                Notice::SetAdminDown { ifindex, .. } => {
                    p.ignored.insert(ifindex);
                    p.admin_down.push(ifindex);
                    p.recreate_at.get_or_insert(t + RECREATE_MS);
                }
                Notice::SyncCompleted(_) => p.pacer.changed(now),
                _ => {}
            }
        }
        if p.core.dump_due(now) {
            let seq = self.kernel.request_dump();
            p.core.on_dump_requested(seq, now);
            p.dump_seq = Some(seq);
            p.dump_tainted = false;
        }
        if !p.in_flight {
            if let Some(work) = p.core.take_work(now) {
                self.dispatch(work);
            }
        }
        let p = self.proc.as_mut().expect("running");
        if p.core.take_snapshot_due() {
            p.pacer.changed(now);
        }
        if p.reopen_at.is_some_and(|r| t >= r) {
            self.reopen();
        }
        let Some(p) = self.proc.as_mut() else {
            return; // it crashed in the reopen
        };
        if p.pacer.due(now) {
            p.pacer.sent(now);
            let d = hand_over(p);
            self.commit(d);
        }
    }

    fn reopen(&mut self) {
        let t = self.t;
        let p = self.proc.as_mut().expect("running");
        p.reopen_at = None;
        let opened = Store::with_backend(Box::new(self.disk.clone()), store_cfg());
        if self.crashed_in_store() {
            return;
        }
        let p = self.proc.as_mut().expect("running");
        match opened {
            Ok((s, _)) => {
                p.store = Some(s);
                p.reopen_backoff_ms = 1_000;
            }
            Err(_) => {
                p.reopen_at = Some(t + p.reopen_backoff_ms);
                p.reopen_backoff_ms = (p.reopen_backoff_ms * 2).min(60_000);
            }
        }
    }

    /// The committer (model of `committer::Committer::commit`), synchronous.
    fn commit(&mut self, d: PortDelta) {
        let t = self.t;
        let now = self.now();
        let p = self.proc.as_mut().expect("running");
        p.table.absorb(d);
        p.retained = true;
        let counters = BTreeMap::from([("sim_commits".to_string(), self.stats.commits)]);
        let res = match p.store.as_mut() {
            None => Err("store not open".to_string()),
            Some(_) if !p.table.have_full() => Err("no full table".into()),
            Some(store) => {
                let r = if store.takes_delta() && !p.table.needs_full() {
                    store.commit_changes(false, p.table.changes(), &counters)
                } else {
                    store.commit_changes(true, p.table.all(), &counters)
                };
                r.map_err(|e| e.to_string())
            }
        };
        if self.crashed_in_store() {
            return;
        }
        let p = self.proc.as_mut().expect("running");
        match res {
            Ok(gen) => {
                self.stats.commits += 1;
                p.table.saved();
                p.retained = false;
                p.pacer.finished(Duration::from_millis(1), true, now);
                let ports = p
                    .table
                    .all()
                    .filter_map(|(n, r)| Some((n.to_string(), r?)))
                    .collect();
                self.acked = Some((gen, ports));
            }
            Err(_) => {
                p.pacer.finished(Duration::from_millis(1), false, now);
                if p.store.as_ref().is_some_and(|s| s.poisoned().is_some()) {
                    p.store = None;
                    p.reopen_at = Some(t + p.reopen_backoff_ms);
                    p.reopen_backoff_ms = (p.reopen_backoff_ms * 2).min(60_000);
                }
            }
        }
    }

    /// The armed crash fired inside a store operation: the process is gone.
    fn crashed_in_store(&mut self) -> bool {
        if !self.disk.crashed() {
            return false;
        }
        let (_, keep, restart_ms, warm) = self.armed.take().expect("a crash fires only when armed");
        self.kill(keep as usize);
        self.start_at = Some((self.t + restart_ms, warm));
        true
    }

    /// SIGTERM's end: the final commit, then the process exits.
    fn final_commit(&mut self) {
        let t = self.t;
        let p = self.proc.as_mut().expect("running");
        if p.reopen_at.is_some() {
            self.reopen();
        }
        let Some(p) = self.proc.as_mut() else {
            return;
        };
        let d = hand_over(p);
        self.commit(d);
        if self.proc.is_none() {
            return; // it crashed in the final commit
        }
        if let Some(p) = self.proc.take() {
            self.check_counters(&p);
        }
        self.warm_watch = None;
        self.armed = None;
        self.disk.disarm();
        self.kernel.close_socket();
        let _ = t;
    }

    fn check_counters(&mut self, p: &Proc) {
        let s = p.core.stats();
        let mut bad = Vec::new();
        if s.link_events != p.links_delivered {
            bad.push(format!(
                "link_events {} != {} delivered",
                s.link_events, p.links_delivered
            ));
        }
        if s.overruns != p.overruns_delivered {
            bad.push(format!(
                "overruns {} != {} delivered",
                s.overruns, p.overruns_delivered
            ));
        }
        if s.dumps_inconsistent != p.inconsistent {
            bad.push(format!(
                "dumps_inconsistent {} != {} interrupted or tainted dumps",
                s.dumps_inconsistent, p.inconsistent
            ));
        }
        if !bad.is_empty() {
            self.fail(Invariant::CountersMatchEvents, bad.join("; "));
        }
    }

    // ----- quiet points ----------------------------------------------------------------------------

    fn quiet_point(&mut self) {
        self.stats.checks += 1;
        let Some(p) = self.proc.as_ref() else {
            self.fail(
                Invariant::RedisEqualsKernel,
                "no portsyncd running at a quiet point".into(),
            );
            return;
        };
        let mut bad = Vec::new();
        for (i, l) in &self.kernel.links {
            if !qualifying_name(&l.name)
                || l.kind.as_deref() == Some("team")
                || p.ignored.contains(i)
            {
                continue;
            }
            let known = self.redis.app_exists(&l.name) || p.sticky_known.contains(&l.name);
            if !known {
                continue;
            }
            match state_status(&self.redis, &l.name) {
                Some(Ok(s)) if s == status_of(l) => {}
                _ => bad.push(format!(
                    "{}: kernel {:?}, STATE_DB {}",
                    l.name,
                    status_of(l),
                    self.redis
                        .state
                        .get(&state_port_key(&l.name))
                        .map_or("none".into(), redis::show)
                )),
            }
        }
        for (k, v) in &self.redis.state {
            if let Some(n) = k.strip_prefix("PORT_TABLE|") {
                if qualifying_name(n) && self.kernel.by_name(n).is_none() {
                    bad.push(format!("{n}: no netdev, STATE_DB has {}", redis::show(v)));
                }
            }
        }
        if !p.redis_flushed {
            let want = if p.warm { "reconciled" } else { "disabled" };
            let got = self.redis.warm_state();
            if got.as_deref() != Some(want) {
                bad.push(format!(
                    "WARM_RESTART_TABLE|portsyncd state {got:?}, want {want}"
                ));
            }
        }
        if !bad.is_empty() {
            self.fail(Invariant::RedisEqualsKernel, bad.join("; "));
        }
        // "If it crashed now": the store's durable part opens to the last acked generation.
        if let Some((gen, ports)) = self.acked.clone() {
            let copy = self.disk.durable_copy();
            match Store::with_backend(Box::new(copy), store_cfg()) {
                Ok((_, rec)) => self.check_recovered(&rec, gen, &ports, "quiet point"),
                Err(e) => self.fail(
                    Invariant::AckedGenerationLoads,
                    format!("crash copy does not open: {e}"),
                ),
            }
        }
        if let Some(p) = self.proc.take() {
            self.check_counters(&p);
            self.proc = Some(p);
        }
    }

    // ----- the driver ------------------------------------------------------------------------------

    fn next_wake(&self, next_event: Option<u64>) -> Option<u64> {
        let t = self.t;
        let ms = |i: Instant| -> u64 {
            let d = i.saturating_duration_since(self.t0).as_millis() as u64;
            d.max(t + 1)
        };
        let mut c: Vec<u64> = Vec::new();
        c.extend(next_event);
        c.extend(self.start_at.map(|(s, _)| s.max(t + 1)));
        c.extend(self.redis.stalled_until);
        c.extend(self.redis.down_until);
        c.extend(self.disk_ok_at);
        c.extend(self.storm.front().map(|(at, _)| *at));
        c.extend(self.reader_stalled_until);
        c.extend(self.late.iter().filter_map(|l| l.land_at));
        if let Some(b) = &self.batch {
            c.extend(b.land_at);
            c.push(b.result_at.max(t + 1));
        }
        if self.redis.orchagent_pending() {
            c.push(t + 5);
        }
        if let Some(p) = &self.proc {
            let reading = self.kernel.busy() && self.reader_stalled_until.is_none();
            if reading || !p.admin_down.is_empty() || p.stopping.is_some() {
                c.push(t + 2);
            }
            c.extend(p.core.next_deadline().map(ms));
            c.extend(p.core.next_work_deadline().map(ms));
            c.extend(p.pacer.next_deadline().map(ms));
            c.extend(p.reopen_at);
            c.extend(p.recreate_at);
        }
        c.into_iter().map(|x| x.max(t + 1)).min()
    }

    /// Runs `schedule` to its end (or the first violation).
    pub fn run(&mut self, schedule: &[(u64, Ev)]) {
        let end = schedule.last().map_or(0, |(t, _)| *t);
        let mut i = 0;
        loop {
            while i < schedule.len() && schedule[i].0 <= self.t {
                let ev = schedule[i].1.clone();
                self.apply_event(&ev);
                self.stats.events += 1;
                i += 1;
            }
            if self.violation.is_some() || self.t >= end && i >= schedule.len() {
                break;
            }
            while self.storm.front().is_some_and(|(at, _)| *at <= self.t) {
                let (_, port) = self.storm.pop_front().expect("checked");
                self.modify(&port_name(port), |l| l.carrier = !l.carrier);
            }
            if self.reader_stalled_until.is_some_and(|r| self.t >= r) {
                self.reader_stalled_until = None;
            }
            self.redis_timeline();
            if let Some((s, warm)) = self.start_at {
                if self.t >= s && self.proc.is_none() {
                    self.start_at = None;
                    self.start(warm);
                }
            }
            self.pump();
            if self.violation.is_some() {
                break;
            }
            let next_event = schedule.get(i).map(|(t, _)| *t);
            match self.next_wake(next_event) {
                Some(n) => self.t = n,
                None => break,
            }
        }
        self.stats.sim_ms = self.t;
    }
}

/// `SIM_VERBOSE=1`: the events, starts and STATE_DB writes as they happen (replays).
fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("SIM_VERBOSE").is_some())
}

fn dummy() -> InFlight {
    InFlight {
        work: Work::default(),
        sent_ms: 0,
        land_at: None,
        epoch: 0,
        result_at: 0,
        result: None,
        incarnation: 0,
    }
}

fn status_of(l: &KLink) -> PortStatus {
    PortStatus {
        admin_up: l.admin_up,
        oper_up: l.admin_up && l.carrier,
        mtu: l.mtu,
    }
}

/// `Loop::hand_over`: the whole published table the first time, then the changes.
fn hand_over(p: &mut Proc) -> PortDelta {
    if !p.full_handed_over {
        p.full_handed_over = true;
        p.core.clear_saved_changes();
        let ports = p
            .core
            .published_ports()
            .map(|(n, s, k)| (n.to_string(), Some(SavedPort::new(s, k))))
            .collect();
        return PortDelta {
            full: true,
            ports,
            counters: BTreeMap::new(),
        };
    }
    let ports = p
        .core
        .drain_saved_changes()
        .into_iter()
        .map(|(n, now)| (n, now.map(|(s, k)| SavedPort::new(s, k))))
        .collect();
    PortDelta {
        full: false,
        ports,
        counters: BTreeMap::new(),
    }
}

/// The outcome of one seed.
pub struct Outcome {
    pub ports: u32,
    pub schedule: Vec<(u64, Ev)>,
    pub stats: Stats,
    pub violation: Option<Violation>,
}

/// Runs `schedule` with `ports` configured ports.
pub fn run_schedule(
    seed: u64,
    ports: u32,
    schedule: &[(u64, Ev)],
    plant: Plant,
) -> (Stats, Option<Violation>) {
    let mut sim = Sim::new(seed, ports, plant);
    sim.run(schedule);
    (sim.stats, sim.violation)
}

/// Runs seed `seed` for `windows` windows.
pub fn run_seed(seed: u64, windows: u32, plant: Plant) -> Outcome {
    let (ports, schedule) = schedule::generate(seed, windows);
    let (stats, violation) = run_schedule(seed, ports, &schedule, plant);
    Outcome {
        ports,
        schedule,
        stats,
        violation,
    }
}

/// Cuts the windows after the failing quiet point, then drops events (earlier quiet points too)
/// while the same invariant still fails; at most `budget` runs.
pub fn shrink(
    seed: u64,
    windows: u32,
    plant: Plant,
    inv: Invariant,
    budget: u32,
) -> Vec<(u64, Ev)> {
    let (ports, mut schedule) = schedule::generate(seed, windows);
    // Cut after the quiet point that failed, first.
    let mut runs = 0;
    let fails = |s: &[(u64, Ev)]| {
        let (_, v) = run_schedule(seed, ports, s, plant);
        v.is_some_and(|v| v.invariant == inv)
    };
    while let Some(pos) = schedule.iter().rposition(|(_, e)| *e == Ev::Check) {
        if runs >= budget || pos == 0 {
            break;
        }
        let shorter: Vec<_> = schedule[..pos].to_vec();
        let prev = shorter.iter().rposition(|(_, e)| *e == Ev::Check);
        let Some(prev) = prev else { break };
        let cut: Vec<_> = schedule[..=prev].to_vec();
        runs += 1;
        if fails(&cut) {
            schedule = cut;
        } else {
            break;
        }
    }
    // Passes from the end, until one removes nothing (or the budget is spent).
    loop {
        let before = schedule.len();
        let mut i = schedule.len();
        while i > 0 && runs < budget {
            i -= 1;
            if i + 1 == schedule.len() || schedule[i].1 == Ev::FixWrongTypes {
                continue; // the quiet point that fails; the owners' repairs are part of the model
            }
            let mut s = schedule.clone();
            s.remove(i);
            runs += 1;
            if fails(&s) {
                schedule = s;
            }
        }
        if schedule.len() == before || runs >= budget {
            return schedule;
        }
    }
}

/// The trace of a failure: the schedule (shrunk), one event a line.
pub fn trace(schedule: &[(u64, Ev)]) -> String {
    schedule
        .iter()
        .map(|(t, e)| format!("  t={:>9.3}s {e:?}", *t as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join("\n")
}
