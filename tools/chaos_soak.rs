//! `chaos-soak`: the real daemon under every fault at once, for as long as asked.
//!
//! Runs portsyncd, a private redis-server, a network namespace of veth "front-panel ports" and the
//! orchagent stand-in, with the state directory on `powercut-fs`. Then, seeded and at random, one
//! fault after another: link storms, link churn, Redis SIGSTOP, Redis killed and restarted empty,
//! SIGKILL and SIGTERM of portsyncd with warm or cold restarts, a full and a read-only state disk,
//! foreign writers (odd bytes, a key of the wrong type) and power cuts of the state disk. After each
//! fault, at the quiet point, it checks the invariants from the kernel, from what Redis holds and from
//! what MONITOR saw Redis receive (never from the daemon's counters):
//!
//! - Redis equals the kernel for every port (STATE_DB's four fields, APPL_DB's port entries);
//! - a warm restart wrote nothing for a port whose state did not change;
//! - no DEL for a port that exists;
//! - every acknowledged generation loads (after a kill or a power cut, before the restart);
//! - foreign fields survive; the daemon never exits by itself; SIGTERM exits 0;
//! - the store catches up with the kernel after every fault.
//!
//! It reports the faults injected, the checks passed, the time to converge after each fault
//! (median/p99/max) and the daemon's RSS over time, and exits 1 on any violation. See
//! docs/failure-model.md ("Chaos soak").

#![deny(unsafe_code)]

#[path = "chaos_soak/check.rs"]
mod check;
// bench-storm's, shared: not every helper of it is used here (dead_code).
#[allow(dead_code)]
#[path = "common/guards.rs"]
mod guards;
#[path = "common/plot_page.rs"]
mod plot_page;
#[path = "chaos_soak/report.rs"]
mod report;
#[path = "common/switch.rs"]
mod switch;
#[path = "chaos_soak/watch.rs"]
mod watch;
#[path = "chaos_soak/world.rs"]
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use guards::{check_stop, signal, tail, STOP};
use report::{Report, RssSample};
use world::{Setup, World, STATE_DB};

#[derive(Parser, Debug)]
#[command(
    name = "chaos-soak",
    about = "Run the real portsyncd under seeded random faults and check its invariants",
    after_help = "Run as root (network namespace, FUSE). Exit status: 0 no violation, 1 a violation, \
                  2 the soak itself could not run."
)]
struct Args {
    /// How long to run: e.g. `90s`, `20m`, `1h` (a plain number is seconds).
    #[arg(long, default_value = "10m")]
    duration: String,
    /// Ports (netdevs): N/2 veth pairs, both ends ports. Even, 2..=4096.
    #[arg(long, default_value_t = 512)]
    ports: usize,
    /// Seed of the fault schedule and of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `random` (weighted draws) or `cycle` (every fault in turn: a short run still sees each one).
    #[arg(long, default_value = "random")]
    order: String,
    /// Only these faults, comma-separated (names as in the report, e.g. `disk-full,power-cut`).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// The longest wait for a quiet point after a fault before it counts as a violation.
    #[arg(long, default_value_t = 120)]
    converge_timeout_secs: u64,
    /// The daemon's anti-entropy interval (repairs foreign bytes in its own fields).
    #[arg(long, default_value_t = 5)]
    resync_interval_secs: u64,
    /// The portsyncd binary; default: the sibling of this one.
    #[arg(long)]
    portsyncd: Option<PathBuf>,
    /// Draw RSS over time and the convergence times to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Append one JSON line per episode to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Keep the work directory (daemon, redis and stand-in logs) after the run.
    #[arg(long)]
    keep: bool,
}

/// The faults the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Storm,
    Churn,
    RedisStop,
    RedisRestartEmpty,
    DaemonKill,
    DaemonTerm,
    DiskFull,
    DiskReadOnly,
    ForeignBytes,
    ForeignWrongType,
    PowerCut,
}

/// Every fault with its weight in a random schedule.
const FAULTS: [(Fault, u64); 11] = [
    (Fault::Storm, 6),
    (Fault::Churn, 3),
    (Fault::RedisStop, 3),
    (Fault::RedisRestartEmpty, 1),
    (Fault::DaemonKill, 3),
    (Fault::DaemonTerm, 2),
    (Fault::DiskFull, 2),
    (Fault::DiskReadOnly, 2),
    (Fault::ForeignBytes, 2),
    (Fault::ForeignWrongType, 2),
    (Fault::PowerCut, 2),
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Storm => "link-storm",
            Fault::Churn => "link-churn",
            Fault::RedisStop => "redis-sigstop",
            Fault::RedisRestartEmpty => "redis-restart-empty",
            Fault::DaemonKill => "daemon-sigkill",
            Fault::DaemonTerm => "daemon-sigterm",
            Fault::DiskFull => "disk-full",
            Fault::DiskReadOnly => "disk-read-only",
            Fault::ForeignBytes => "foreign-bytes",
            Fault::ForeignWrongType => "foreign-wrong-type",
            Fault::PowerCut => "power-cut",
        }
    }
}

/// xorshift64*: small, deterministic from the seed.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get((self.next() % v.len() as u64) as usize)
        }
    }
}

/// What one episode allows and expects at its quiet point.
#[derive(Default)]
struct Episode {
    /// Ports the soak removed from the kernel (or whose STATE_DB key it deleted itself): a DEL of
    /// them is not a violation.
    deleted: BTreeSet<String>,
    /// After a warm restart: the ports it may write (their state differs from the saved one).
    warm_allowed: Option<BTreeSet<String>>,
    /// The kernel and STATE_DB just before that start (to explain a violation).
    before: Option<(BTreeMap<String, check::Link>, check::StateView)>,
    /// When the fault ended; convergence is timed from here.
    lifted: Option<Instant>,
}

struct Soak {
    w: World,
    /// The faults drawn from, with their weights.
    faults: Vec<(Fault, u64)>,
    rng: Rng,
    report: Report,
    started: Instant,
    timeout: Duration,
    /// Fields of the soak's own in STATE_DB port entries, which must survive.
    foreign: BTreeMap<String, Vec<u8>>,
    /// Ports changed since the store last caught up: a restart may legitimately rewrite them.
    touched: BTreeSet<String>,
    /// Those of the episode before: the kernel applies operstate changes up to a second late
    /// (linkwatch), so a peer's carrier change can land after that episode's quiet point.
    touched_before: BTreeSet<String>,
    /// The generation of the last export seen caught up: acknowledged, so it must load after a crash.
    acked: Option<u64>,
    log: Option<std::fs::File>,
}

fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("--duration {s:?}: expected e.g. 90s, 20m or 1h"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("--duration {s:?}: the unit must be s, m or h"),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| anyhow!("--duration {s:?} is too long"))
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(0) => {}
        Ok(_) => std::process::exit(1),
        Err(e) => {
            eprintln!("chaos-soak: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<usize> {
    let duration = parse_duration(&args.duration)?;
    if args.ports < 2 || !args.ports.is_multiple_of(2) || args.ports > 4096 {
        bail!("--ports must be even and in 2..=4096 (got {})", args.ports);
    }
    if !matches!(args.order.as_str(), "random" | "cycle") {
        bail!("--order must be random or cycle");
    }
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&STOP))?;
        signal_hook::flag::register(sig, Arc::clone(&STOP))?;
    }
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no directory for the current executable"))?;
    let setup = Setup {
        portsyncd: args
            .portsyncd
            .clone()
            .unwrap_or_else(|| exe_dir.join("portsyncd")),
        standin: exe_dir.join("orchagent-standin"),
        powercut_fs: exe_dir.join("powercut-fs"),
        state_tool: exe_dir.join("portsyncd-state"),
        ports: args.ports,
        resync_secs: args.resync_interval_secs,
    };
    for p in [
        &setup.portsyncd,
        &setup.standin,
        &setup.powercut_fs,
        &setup.state_tool,
    ] {
        if !p.exists() {
            bail!(
                "{} not found (cargo build --release --features tools --bins)",
                p.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("chaos-soak-{}", std::process::id()));
    let log = match &args.log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    println!(
        "chaos-soak: {} ports, seed {}, {} order, for {:?}; work dir {}",
        args.ports,
        args.seed,
        args.order,
        duration,
        dir.display()
    );
    let faults: Vec<(Fault, u64)> = if args.faults.is_empty() {
        FAULTS.to_vec()
    } else {
        let mut v = Vec::new();
        for name in &args.faults {
            match FAULTS.iter().find(|f| f.0.name() == name.trim()) {
                Some(f) => v.push(*f),
                None => bail!(
                    "--faults: unknown fault {name:?}; known: {}",
                    FAULTS.map(|f| f.0.name()).join(", ")
                ),
            }
        }
        v
    };
    let mut soak = Soak {
        faults,
        w: World::new(setup, dir.clone())?,
        rng: Rng::new(args.seed),
        report: Report::default(),
        started: Instant::now(),
        timeout: Duration::from_secs(args.converge_timeout_secs),
        foreign: BTreeMap::new(),
        touched: BTreeSet::new(),
        touched_before: BTreeSet::new(),
        acked: None,
        log,
    };
    let result = soak.run(duration, args.order == "cycle");
    let secs = soak.started.elapsed().as_secs_f64();
    soak.report.print(secs);
    if let Some(p) = &args.plot {
        let title = format!(
            "chaos-soak: {} ports, seed {}, {:.0} min, {} faults",
            args.ports,
            args.seed,
            secs / 60.0,
            soak.report.episodes.len()
        );
        soak.report.plot(p, &title)?;
        println!("  plot written to {}", p.display());
    }
    let violations = soak.report.violations.len();
    if violations > 0 || result.is_err() {
        eprintln!(
            "chaos-soak: last lines of the daemon's log:\n{}",
            tail(&soak.w.daemon_log())
        );
    }
    if args.keep || violations > 0 {
        let kept = dir.with_extension("kept");
        let _ = std::fs::remove_dir_all(&kept);
        let _ = std::fs::create_dir_all(&kept);
        for f in ["daemon.log", "redis.log", "standin.log"] {
            let _ = std::fs::copy(dir.join(f), kept.join(f));
        }
        // The state directory as it is at the end (quarantined stores included).
        let _ = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.join("mnt/state"))
            .arg(kept.join("state"))
            .status();
        println!("  logs kept in {}", kept.display());
    }
    result?;
    Ok(violations)
}

impl Soak {
    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn violation(&mut self, what: String) {
        let line = format!("[{:.0} s] {what}", self.secs());
        eprintln!("chaos-soak: VIOLATION {line}");
        self.report.violations.push(line);
    }

    fn run(&mut self, duration: Duration, cycle: bool) -> Result<()> {
        // Start as on a switch: the daemon first, then the ports appear.
        let mut ep = Episode::default();
        self.cold_start(&mut ep)?;
        self.quiet("start", &mut ep)?;
        let mut n = 0usize;
        while self.started.elapsed() < duration {
            check_stop()?;
            let fault = if cycle {
                self.faults[n % self.faults.len()].0
            } else {
                self.draw()
            };
            n += 1;
            let mut ep = Episode::default();
            self.w.watch.as_ref().map(watch::Watch::take);
            self.inject(fault, &mut ep)
                .with_context(|| format!("injecting {}", fault.name()))?;
            self.quiet(fault.name(), &mut ep)?;
        }
        self.w.stop_daemon()?;
        Ok(())
    }

    fn draw(&mut self) -> Fault {
        let total: u64 = self.faults.iter().map(|f| f.1).sum();
        let mut x = self.rng.next() % total.max(1);
        for &(f, weight) in &self.faults {
            if x < weight {
                return f;
            }
            x -= weight;
        }
        Fault::Storm
    }

    // --- faults -------------------------------------------------------------------------------

    fn inject(&mut self, fault: Fault, ep: &mut Episode) -> Result<()> {
        match fault {
            Fault::Storm => {
                let n = self.rng.range(50, 600);
                self.storm(n)?;
            }
            Fault::Churn => self.churn(ep)?,
            Fault::RedisStop => {
                let pid = self.w.redis_pid()?;
                signal(pid, "STOP")?;
                let n = self.rng.range(20, 300);
                let hold = Duration::from_millis(self.rng.range(500, 4000));
                let r = self.storm(n);
                thread::sleep(hold);
                signal(pid, "CONT")?;
                r?;
            }
            Fault::RedisRestartEmpty => self.redis_restart_empty(ep)?,
            Fault::DaemonKill | Fault::DaemonTerm => self.restart(fault, ep)?,
            Fault::DiskFull | Fault::DiskReadOnly => self.bad_disk(fault, ep)?,
            Fault::ForeignBytes => self.foreign_bytes()?,
            Fault::ForeignWrongType => self.wrong_type(ep)?,
            Fault::PowerCut => self.power_cut(ep)?,
        }
        ep.lifted.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// `n` link changes (admin toggles, MTUs) on present ports, in one `ip -batch`.
    fn storm(&mut self, n: u64) -> Result<()> {
        const MTUS: [u32; 4] = [1500, 9000, 9100, 9216];
        let kernel = check::kernel(&self.w)?;
        let mut sim: Vec<(String, bool, u32)> = kernel
            .iter()
            .map(|(p, l)| (p.clone(), l.admin_up, l.mtu))
            .collect();
        if sim.is_empty() {
            return Ok(());
        }
        let mut cmds = String::new();
        let mut touched = Vec::new();
        for _ in 0..n {
            let i = (self.rng.next() % sim.len() as u64) as usize;
            let (name, up, mtu) = &mut sim[i];
            if self.rng.chance(80) {
                *up = !*up;
                let _ = writeln!(cmds, "link set {name} {}", if *up { "up" } else { "down" });
            } else {
                let choices: Vec<u32> = MTUS.iter().copied().filter(|m| m != mtu).collect();
                *mtu = *self.rng.pick(&choices).unwrap_or(&1500);
                let _ = writeln!(cmds, "link set {name} mtu {mtu}");
            }
            touched.push(name.clone());
        }
        for p in touched {
            self.touch(&p);
        }
        self.w.ip_batch(&cmds)
    }

    /// Notes that a port changed, and so its veth peer: an admin change of one end changes the
    /// other end's carrier (and the kernel applies operstate changes later, through linkwatch).
    fn touch(&mut self, port: &str) {
        self.touched.insert(port.to_string());
        let peer = self
            .w
            .ports
            .iter()
            .position(|p| p == port)
            .and_then(|i| self.w.ports.get(i ^ 1))
            .cloned();
        if let Some(peer) = peer {
            self.touched.insert(peer);
        }
    }

    /// Deletes 1-4 veth pairs, sometimes waits for their STATE_DB entries to go, and re-creates them.
    fn churn(&mut self, ep: &mut Episode) -> Result<()> {
        let pairs = self.w.ports.len() / 2;
        let mut chosen = BTreeSet::new();
        for _ in 0..self.rng.range(1, 4) {
            chosen.insert((self.rng.next() % pairs as u64) as usize * 2);
        }
        let mut del = String::new();
        let mut add = String::new();
        for &a in &chosen {
            let _ = writeln!(del, "link del {}", self.w.ports[a]);
            add.push_str(&self.w.add_pair_commands(a));
            for p in [&self.w.ports[a], &self.w.ports[a + 1]] {
                ep.deleted.insert(p.clone());
                self.touched.insert(p.clone());
                self.foreign.remove(p);
            }
        }
        self.w.ip_batch(&del)?;
        if self.rng.chance(50) {
            // Wait for the deletes to reach STATE_DB before the ports come back.
            let gone: Vec<String> = ep.deleted.iter().cloned().collect();
            let start = Instant::now();
            loop {
                check_stop()?;
                let st = check::state_db(&self.w)?;
                if gone.iter().all(|p| {
                    st.get(p)
                        .is_some_and(|f| f.as_ref().is_ok_and(BTreeMap::is_empty))
                }) {
                    break;
                }
                if start.elapsed() > self.timeout {
                    self.violation(format!("deleted ports {gone:?} stayed in STATE_DB"));
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.w.ip_batch(&add)
    }

    /// Redis killed and restarted empty: STATE_DB must come back without any link change; then, as
    /// in SONiC (a database restart restarts swss), CONFIG_DB is loaded again and the daemon and the
    /// stand-in restart cold.
    fn redis_restart_empty(&mut self, ep: &mut Episode) -> Result<()> {
        self.w.restart_redis_empty()?;
        self.foreign.clear();
        let t = self.wait_redis(true)?;
        match t {
            Some(ms) => {
                self.report.pass("STATE_DB refilled after an empty restart");
                println!("    STATE_DB refilled {ms:.0} ms after redis-server restarted empty");
            }
            None => self.violation("STATE_DB not refilled after redis restarted empty".into()),
        }
        self.w.seed_config_db()?;
        self.w.restart_standin()?;
        self.sigterm_daemon()?;
        self.cold_start(ep)
    }

    /// SIGTERM; the exit status must be 0.
    fn sigterm_daemon(&mut self) -> Result<()> {
        match self.w.stop_daemon() {
            Ok(Some(0)) | Ok(None) => self.report.pass("SIGTERM exits 0"),
            Ok(Some(c)) => self.violation(format!("portsyncd exited {c} on SIGTERM")),
            Err(e) => self.violation(format!("{e:#}")),
        }
        Ok(())
    }

    /// SIGKILL or SIGTERM, maybe link changes while it is down, then a warm or cold start.
    fn restart(&mut self, fault: Fault, ep: &mut Episode) -> Result<()> {
        let warm = self.rng.chance(70);
        if fault == Fault::DaemonKill {
            if self.rng.chance(40) {
                // Killed in the middle of a storm.
                let n = self.rng.range(20, 300);
                self.storm(n)?;
            }
            self.w.kill_daemon();
            self.check_acked_loads("after SIGKILL")?;
        } else {
            self.sigterm_daemon()?;
        }
        if self.rng.chance(50) {
            let n = self.rng.range(5, 80);
            self.storm(n)?;
        }
        self.start_again(warm, ep)
    }

    /// A cold start as SONiC makes it: the host interfaces are gone when portsyncd starts (ports
    /// that exist during its initial dump are "old netdevs", set admin-down and ignored) and are
    /// created again after its initial sync. Every port is deleted in between, so DELs are allowed.
    fn cold_start(&mut self, ep: &mut Episode) -> Result<()> {
        let mut del = String::new();
        let mut add = String::new();
        for a in (0..self.w.ports.len()).step_by(2) {
            let _ = writeln!(del, "link del {}", self.w.ports[a]);
            add.push_str(&self.w.add_pair_commands(a));
        }
        let present = check::kernel(&self.w)?;
        if !present.is_empty() {
            self.w.ip_batch(&del)?;
        }
        ep.deleted.extend(self.w.ports.iter().cloned());
        self.foreign.clear();
        self.w.set_warm(false)?;
        let log_len = std::fs::metadata(self.w.daemon_log()).map_or(0, |m| m.len());
        self.w.start_daemon()?;
        let start = Instant::now();
        while !std::fs::read(self.w.daemon_log())
            .map(|t| {
                let from = usize::try_from(log_len).unwrap_or(0).min(t.len());
                String::from_utf8_lossy(&t[from..]).contains("initial sync complete")
            })
            .unwrap_or(false)
        {
            check_stop()?;
            if self.w.daemon_pid().is_none() || start.elapsed() > self.timeout {
                bail!("portsyncd never finished its initial sync");
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.w.ip_batch(&add)?;
        ep.lifted = Some(Instant::now());
        Ok(())
    }

    /// Starts the daemon; a warm start must reach `reconciled` and may write only the ports whose
    /// state differs from what was saved or published.
    fn start_again(&mut self, warm: bool, ep: &mut Episode) -> Result<()> {
        if !warm {
            return self.cold_start(ep);
        }
        let kernel = check::kernel(&self.w)?;
        let state = check::state_db(&self.w)?;
        let mut allowed: BTreeSet<String> =
            check::mismatches(&kernel, &state).into_iter().collect();
        allowed.extend(self.touched.iter().cloned());
        allowed.extend(self.touched_before.iter().cloned());
        ep.before = Some((kernel, state));
        self.w.set_warm(true)?;
        // Writes of the daemon that just stopped are not the new one's.
        self.drain_monitor()?;
        self.w.start_daemon()?;
        ep.lifted = Some(Instant::now());
        let start = Instant::now();
        while !self.w.reconciled()? {
            check_stop()?;
            if start.elapsed() > self.timeout {
                self.violation("warm restart never reached reconciled".into());
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        ep.warm_allowed = Some(allowed);
        Ok(())
    }

    /// After a crash, before the restart: the store opens to a valid generation at least as new as
    /// the last acknowledged one, and `portsyncd-state verify` finds nothing wrong.
    fn check_acked_loads(&mut self, when: &str) -> Result<()> {
        let disk = check::store_on_disk(&self.w)?;
        let Some(acked) = self.acked else {
            return Ok(());
        };
        match disk.loads() {
            Some(g) if g >= acked => self.report.pass("every acknowledged generation loads"),
            g => self.violation(format!(
                "{when}: acknowledged generation {acked}, the ladder would load {g:?} (sled {:?}, export {:?})",
                disk.sled, disk.export
            )),
        }
        if disk.sled.is_some_and(|g| g >= acked) {
            if disk.verify.0 == 0 {
                self.report.pass("portsyncd-state verify exits 0");
            } else {
                self.violation(format!(
                    "{when}: portsyncd-state verify exited {}: {}",
                    disk.verify.0,
                    disk.verify.1.trim()
                ));
            }
        } else {
            // sled lost acknowledged generations; the JSON export rung holds them. `verify` must say so.
            self.report
                .pass("sled lost its log; the JSON export rung held the acknowledged state");
            if disk.verify.0 == 0 {
                self.violation(format!(
                    "{when}: sled lost acknowledged generations (newest {:?} < {acked}) and verify exited 0",
                    disk.sled
                ));
            }
        }
        Ok(())
    }

    /// A full or read-only state disk for a while, with link changes: publishing must go on.
    fn bad_disk(&mut self, fault: Fault, ep: &mut Episode) -> Result<()> {
        let mode = if fault == Fault::DiskFull {
            "full"
        } else {
            "read-only"
        };
        self.w.disk_mode(mode)?;
        let n = self.rng.range(20, 300);
        let r = self.storm(n).and_then(|()| self.wait_redis(true));
        match r {
            Ok(Some(_)) => self
                .report
                .pass("publishing goes on while the disk refuses writes"),
            Ok(None) => self.violation(format!("Redis did not converge while the disk was {mode}")),
            Err(e) => {
                self.w.disk_mode("writable")?;
                return Err(e);
            }
        }
        thread::sleep(Duration::from_millis(self.rng.range(200, 5000)));
        self.w.disk_mode("writable")?;
        ep.lifted = Some(Instant::now());
        Ok(())
    }

    /// Odd bytes from another writer: a foreign field (must survive) and, sometimes, a non-UTF-8
    /// value in one of portsyncd's own fields (must be repaired by anti-entropy).
    fn foreign_bytes(&mut self) -> Result<()> {
        let kernel = check::kernel(&self.w)?;
        let present: Vec<String> = kernel.keys().cloned().collect();
        let mut con = self.w.con(STATE_DB)?;
        for _ in 0..self.rng.range(1, 3) {
            let Some(p) = self.rng.pick(&present).cloned() else {
                break;
            };
            let len = self.rng.range(0, 24) as usize;
            let v: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
            redis::cmd("HSET")
                .arg(format!("PORT_TABLE|{p}"))
                .arg("chaos_foreign")
                .arg(&v)
                .query::<()>(&mut con)?;
            self.foreign.insert(p, v);
        }
        if self.rng.chance(60) {
            if let Some(p) = self.rng.pick(&present).cloned() {
                let field = *self
                    .rng
                    .pick(&["mtu", "admin_status", "netdev_oper_status", "state"])
                    .unwrap_or(&"mtu");
                redis::cmd("HSET")
                    .arg(format!("PORT_TABLE|{p}"))
                    .arg(field)
                    .arg(&b"\xff\xfe\x00bad"[..])
                    .query::<()>(&mut con)?;
            }
        }
        Ok(())
    }

    /// A STATE_DB port key of another type while the port changes; an operator deletes it later.
    fn wrong_type(&mut self, ep: &mut Episode) -> Result<()> {
        let kernel = check::kernel(&self.w)?;
        let present: Vec<String> = kernel.keys().cloned().collect();
        let Some(p) = self.rng.pick(&present).cloned() else {
            return Ok(());
        };
        let key = format!("PORT_TABLE|{p}");
        let mut con = self.w.con(STATE_DB)?;
        redis::cmd("DEL").arg(&key).query::<()>(&mut con)?;
        redis::cmd("SET")
            .arg(&key)
            .arg("chaos")
            .query::<()>(&mut con)?;
        ep.deleted.insert(p.clone());
        self.foreign.remove(&p);
        let mtu = if kernel.get(&p).is_some_and(|l| l.mtu == 9000) {
            9216
        } else {
            9000
        };
        self.w.ip_batch(&format!("link set {p} mtu {mtu}\n"))?;
        self.touch(&p);
        let n = self.rng.range(10, 200);
        self.storm(n)?;
        thread::sleep(Duration::from_millis(self.rng.range(500, 4000)));
        redis::cmd("DEL").arg(&key).query::<()>(&mut con)?;
        Ok(())
    }

    /// The state disk loses power (unsynced data gone) and the daemon dies with it; the durable
    /// state is mounted again, checked, and the daemon restarts warm from it.
    fn power_cut(&mut self, ep: &mut Episode) -> Result<()> {
        if self.rng.chance(60) {
            let n = self.rng.range(20, 300);
            self.storm(n)?;
        }
        if self.rng.chance(50) {
            thread::sleep(Duration::from_millis(self.rng.range(0, 400)));
        }
        self.w.power_cut()?;
        self.w.kill_daemon();
        if self.w.remount()? {
            self.report
                .pass("(harness) powercut-fs killed after it did not unmount");
        }
        self.check_acked_loads("after a power cut")?;
        self.start_again(true, ep)
    }

    // --- quiet points -------------------------------------------------------------------------

    /// The daemon never exits by itself: if it did, that is a violation, and it is started again
    /// (warm, as its supervisor would).
    fn check_alive(&mut self, during: &str) -> Result<()> {
        if let Some(st) = self.w.daemon_exited() {
            self.violation(format!("portsyncd exited by itself ({st}) during {during}"));
            self.w.set_warm(true)?;
            self.w.start_daemon()?;
        }
        Ok(())
    }

    /// Waits until STATE_DB equals the kernel (and, unless `state_only`, APPL_DB lists every port);
    /// the milliseconds it took, or None after the timeout.
    fn wait_redis(&mut self, state_only: bool) -> Result<Option<f64>> {
        let start = Instant::now();
        loop {
            check_stop()?;
            self.check_alive("a wait for convergence")?;
            let kernel = check::kernel(&self.w)?;
            let state = check::state_db(&self.w)?;
            let bad = check::mismatches(&kernel, &state);
            let appl = if state_only || !bad.is_empty() {
                Vec::new()
            } else {
                check::appl_missing(&self.w)?
            };
            if bad.is_empty() && appl.is_empty() {
                return Ok(Some(start.elapsed().as_secs_f64() * 1e3));
            }
            if start.elapsed() > self.timeout {
                let show = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>();
                let detail: Vec<String> = show(&bad)
                    .iter()
                    .map(|p| {
                        format!(
                            "{p}: kernel {:?}, STATE_DB {:?}",
                            kernel.get(p),
                            state.get(p)
                        )
                    })
                    .collect();
                eprintln!(
                    "chaos-soak: not converged: {} STATE_DB mismatches {detail:?}, APPL_DB missing {:?}",
                    bad.len(),
                    show(&appl)
                );
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The quiet point after a fault: every invariant, then the store catching up.
    fn quiet(&mut self, fault: &'static str, ep: &mut Episode) -> Result<()> {
        self.check_alive(fault)?;
        self.w.keep_standin()?;
        let lifted = ep.lifted.unwrap_or_else(Instant::now);
        let converged = self.wait_redis(false)?;
        let ms = lifted.elapsed().as_secs_f64() * 1e3;
        match converged {
            Some(_) => {
                self.report.pass("Redis equals the kernel");
                let at = self.secs();
                self.report.converged(at, fault, ms);
            }
            None => self.violation(format!(
                "no convergence within {:?} after {fault}",
                self.timeout
            )),
        }

        // What Redis received during the episode.
        let writes = self.drain_monitor()?;
        let bad = check::bad_deletes(&writes, &ep.deleted);
        if bad.is_empty() {
            self.report.pass("no DEL for a port that exists");
        } else {
            self.violation(format!(
                "{fault}: {} deletes of existing ports, e.g. {:?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            ));
        }
        if let Some(allowed) = &ep.warm_allowed {
            let churn = check::warm_churn(&writes, allowed);
            if churn.is_empty() {
                self.report
                    .pass("a warm restart writes nothing for unchanged ports");
            } else {
                let n = churn.len();
                let few: Vec<&String> = churn.iter().take(5).collect();
                let after = check::state_db(&self.w)?;
                if let Some((k, st)) = &ep.before {
                    for p in churn.iter().take(3) {
                        eprintln!(
                            "chaos-soak: {p}: kernel before {:?}, STATE_DB before {:?}, after {:?}",
                            k.get(p),
                            st.get(p),
                            after.get(p)
                        );
                    }
                }
                self.violation(format!(
                    "{fault}: warm restart wrote {n} unchanged ports, e.g. {few:?}"
                ));
            }
        }
        self.check_foreign()?;

        // The store catches up: its export (written after each acknowledged commit) equals the kernel.
        let start = Instant::now();
        let mut last_err = String::new();
        let store_ms = loop {
            check_stop()?;
            let kernel = check::kernel(&self.w)?;
            match check::export_lag(&self.w, &kernel) {
                Ok((generation, lag)) if lag.is_empty() => {
                    self.acked = Some(generation);
                    break Some(start.elapsed().as_secs_f64() * 1e3);
                }
                Ok((generation, lag)) => {
                    last_err = format!(
                        "generation {generation}, {} ports behind, e.g. {:?}",
                        lag.len(),
                        lag.first()
                    );
                }
                Err(e) => last_err = format!("{e:#}"),
            }
            if start.elapsed() > self.timeout {
                break None;
            }
            thread::sleep(Duration::from_millis(100));
        };
        match store_ms {
            Some(_) => {
                self.report.pass("the store catches up");
                self.touched_before = std::mem::take(&mut self.touched);
            }
            None => self.violation(format!("{fault}: the store did not catch up: {last_err}")),
        }
        if let Some((rss, hwm)) = self.w.daemon_rss_kib() {
            let at = self.secs();
            self.report.rss.push(RssSample {
                at_secs: at,
                rss_kib: rss,
                hwm_kib: hwm,
            });
        }
        println!(
            "[{:>6.0} s] {:<20} converged {:>7.0} ms, store {:>7.0} ms, {} writes seen, violations so far {}",
            self.secs(),
            fault,
            ms,
            store_ms.unwrap_or(f64::NAN),
            writes.len(),
            self.report.violations.len()
        );
        if let Some(f) = &mut self.log {
            let line = serde_json::json!({
                "at_secs": self.started.elapsed().as_secs_f64(),
                "fault": fault, "converge_ms": converged.map(|_| ms), "store_ms": store_ms,
                "writes": writes.len(), "rss_kib": self.report.rss.last().map(|s| s.rss_kib),
                "violations": self.report.violations.len(),
            });
            let _ = writeln!(f, "{line}");
        }
        Ok(())
    }

    /// Every port write MONITOR showed up to now (a marker makes sure nothing is still in transit).
    fn drain_monitor(&mut self) -> Result<Vec<watch::PortWrite>> {
        match &self.w.watch {
            Some(watch) => {
                let mut con = self.w.con(STATE_DB)?;
                watch.sync(&mut con)?;
                Ok(watch.take())
            }
            None => Ok(Vec::new()),
        }
    }

    /// The soak's foreign fields are still there, byte for byte.
    fn check_foreign(&mut self) -> Result<()> {
        if self.foreign.is_empty() {
            return Ok(());
        }
        let mut con = self.w.con(STATE_DB)?;
        let mut lost = Vec::new();
        for (p, v) in &self.foreign {
            let got: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(format!("PORT_TABLE|{p}"))
                .arg("chaos_foreign")
                .query(&mut con)?;
            if got.as_deref() != Some(v.as_slice()) {
                lost.push(p.clone());
            }
        }
        if lost.is_empty() {
            self.report.pass("foreign fields survive");
        } else {
            self.violation(format!("foreign fields lost on {lost:?}"));
            for p in lost {
                self.foreign.remove(&p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn the_schedule_depends_on_the_seed_only() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..50).map(|_| r.range(0, 10)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        let mut r = Rng::new(9);
        assert!((0..1000)
            .map(|_| r.range(5, 7))
            .all(|x| (5..=7).contains(&x)));
    }
}
