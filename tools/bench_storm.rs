//! `bench-storm`: measures a portsyncd implementation on a storm of kernel link changes.
//!
//! Everything runs in a private network namespace and a private `redis-server` on a unix socket in a temp
//! dir; nothing on the host is touched, and both are removed on exit (Drop guards; SIGINT/SIGTERM stop the
//! run at the next check and the guards run).
//!
//! 1. CONFIG_DB gets N ports `Ethernet0, Ethernet4, ...`; a ConsumerStateTable stand-in runs (the
//!    `orchagent-standin` binary beside this one when present, else a built-in Lua consumer with the same
//!    moves); the daemon starts inside the namespace (the namespace has no `Ethernet*` netdev yet, as in
//!    SONiC, where host interfaces are created after portsyncd started).
//! 2. Ports phase: N/2 veth pairs whose *both* ends are ports (`Ethernet<8i>` <-> `Ethernet<8i+4>`) are
//!    created and set up with one `ip -batch`; measured: time until STATE_DB matches the kernel.
//! 3. Storm (K times): M pre-generated `link set` changes (admin up/down, MTU) applied with one `ip -batch`
//!    as fast as `ip` goes. Measured: time from the kernel's last link notification to the first moment
//!    STATE_DB equals the kernel's final truth for good; the daemon's CPU time per kernel link
//!    notification; with `--overrun` the daemon is SIGSTOPped for the storm and the time is measured from
//!    SIGCONT.
//!
//! Kernel notifications are counted by a netlink monitor of our own (this binary re-executed inside the
//! namespace), so "per change" means per RTM_NEWLINK/RTM_DELLINK the kernel really sent. The kernel truth is
//! `ip -json link show`: admin = IFF_UP, oper = operstate UP/UNKNOWN (which is what IFF_RUNNING reports).

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

const MONITOR_ARG: &str = "__netlink-monitor";
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
/// /proc/<pid>/stat counts in USER_HZ, which is 100 on every Linux architecture SONiC runs on.
const USER_HZ: f64 = 100.0;

#[derive(Parser, Debug)]
#[command(
    name = "bench-storm",
    about = "Measure a portsyncd implementation on a storm of link changes in a private netns",
    after_help = "Run as root. The daemon command may use {url} (unix:///…/redis.sock), {sock} (the socket \
                  path), {dbconfig} (a SONiC database_config.json for that socket), {state} (a fresh \
                  state dir) and {dir} (the temp dir); it runs under `sh -c` inside the namespace."
)]
struct Args {
    /// Number of ports (netdevs); N/2 veth pairs, both ends are ports. Even, 2..=4096.
    #[arg(long, default_value_t = 512)]
    ports: usize,
    /// Link changes per storm (`ip link set` admin up/down or MTU commands).
    #[arg(long, default_value_t = 2688)]
    flaps: usize,
    /// The daemon's command line; default: the sibling `portsyncd` binary with
    /// `--redis-url {url} --state-dir {state} --metrics-enabled false`.
    #[arg(long)]
    daemon: Option<String>,
    /// SIGSTOP the daemon during the storm, SIGCONT after it; time is measured from SIGCONT.
    #[arg(long)]
    overrun: bool,
    /// Run the storm K times and print medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Consumer of APPL_DB PORT_TABLE: `auto` (sibling orchagent-standin if present, else built-in),
    /// `builtin`, or a path to an orchagent-standin binary.
    #[arg(long, default_value = "auto")]
    standin: String,
    /// Give up on a convergence after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Seed of the storm generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(MONITOR_ARG) {
        if let Err(e) = monitor_main() {
            eprintln!("bench-storm monitor: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench-storm: {e:#}");
            std::process::exit(1);
        }
    }
}

// ------------------------------------------------------------------------------------------- guards

/// Set by SIGINT/SIGTERM; every wait loop checks it so the Drop guards run.
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
fn check_stop() -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process: SIGCONT + SIGTERM on drop, SIGKILL after 3 s.
struct Proc {
    name: &'static str,
    child: Child,
}
impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}
impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = signal(self.pid(), "CONT");
        let _ = signal(self.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "bench-storm: {} did not stop on SIGTERM, killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with kill(1) (keeps this tool free of `unsafe`).
fn signal(pid: u32, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    if !st.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

fn sh(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// -------------------------------------------------------------------------------- netlink monitor

/// Inside the namespace: counts RTM_NEWLINK/RTM_DELLINK; answers each stdin line with
/// `<newlink> <dellink> <enobufs> <unix ns of the last notification>`.
fn monitor_main() -> Result<()> {
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let mut sock = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
    let _ = sock.set_rx_buf_sz(64 << 20); // capped by net.core.rmem_max; ENOBUFS are counted
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("bind RTMGRP_LINK")?;
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let c = Arc::clone(&counts);
    thread::spawn(move || {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            buf.clear();
            match sock.recv(&mut buf, 0) {
                Ok(_) => {
                    let mut off = 0usize;
                    while off + 16 <= buf.len() {
                        let len = u32::from_ne_bytes([
                            buf[off],
                            buf[off + 1],
                            buf[off + 2],
                            buf[off + 3],
                        ]) as usize;
                        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                        match ty {
                            RTM_NEWLINK => c[0].fetch_add(1, Ordering::Relaxed),
                            RTM_DELLINK => c[1].fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                        if len < 16 {
                            break;
                        }
                        off += (len + 3) & !3;
                    }
                    c[3].store(now_ns(), Ordering::Relaxed);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    c[2].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("bench-storm monitor: recv: {e}");
                    return;
                }
            }
        }
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        line?;
        let v: Vec<u64> = counts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        writeln!(out, "{} {} {} {}", v[0], v[1], v[2], v[3])?;
        out.flush()?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default)]
struct NlCounts {
    newlink: u64,
    dellink: u64,
    enobufs: u64,
    last_ns: u64,
}

struct Monitor {
    _proc: Proc,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}
impl Monitor {
    fn start(ns: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .arg(MONITOR_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("starting the netlink monitor")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("monitor stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("monitor stdout"))?,
        );
        let mut m = Monitor {
            _proc: Proc {
                name: "netlink monitor",
                child,
            },
            stdin,
            stdout,
        };
        let mut line = String::new();
        m.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("netlink monitor did not start: {line:?}");
        }
        Ok(m)
    }
    fn counts(&mut self) -> Result<NlCounts> {
        writeln!(self.stdin, "?")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if v.len() != 4 {
            bail!("monitor answered {line:?}");
        }
        Ok(NlCounts {
            newlink: v[0],
            dellink: v[1],
            enobufs: v[2],
            last_ns: v[3],
        })
    }
}

// ------------------------------------------------------------------------------ port state views

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum View {
    Absent,
    Present {
        admin_up: bool,
        oper_up: bool,
        mtu: u32,
        state_ok: bool,
    },
}

fn hash_views(v: &[View]) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The kernel's truth for every port, from `ip -json link show` in the namespace.
fn kernel_views(ns: &str, ports: &[String]) -> Result<Vec<View>> {
    let out = Command::new("ip")
        .args(["-n", ns, "-json", "link", "show"])
        .output()?;
    if !out.status.success() {
        bail!(
            "ip -json link show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("ip -json output")?;
    let mut by_name = std::collections::HashMap::new();
    for l in &links {
        let Some(name) = l["ifname"].as_str() else {
            continue;
        };
        let admin_up = l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        let oper_up = matches!(l["operstate"].as_str(), Some("UP") | Some("UNKNOWN"));
        let mtu = l["mtu"].as_u64().unwrap_or(0) as u32;
        by_name.insert(
            name.to_string(),
            View::Present {
                admin_up,
                oper_up,
                mtu,
                state_ok: true,
            },
        );
    }
    Ok(ports
        .iter()
        .map(|p| by_name.remove(p).unwrap_or(View::Absent))
        .collect())
}

/// What STATE_DB says, one pipelined HMGET per port.
fn state_views(con: &mut redis::Connection, ports: &[String]) -> Result<Vec<View>> {
    let mut pipe = redis::pipe();
    for p in ports {
        pipe.cmd("HMGET").arg(format!("PORT_TABLE|{p}")).arg(&[
            "admin_status",
            "netdev_oper_status",
            "mtu",
            "state",
        ]);
    }
    let rows: Vec<Vec<Option<String>>> = pipe.query(con).context("STATE_DB HMGET")?;
    Ok(rows
        .into_iter()
        .map(|r| match r.as_slice() {
            [None, None, None, None] => View::Absent,
            [a, o, m, s] => View::Present {
                admin_up: a.as_deref() == Some("up"),
                oper_up: o.as_deref() == Some("up"),
                mtu: m.as_deref().and_then(|m| m.parse().ok()).unwrap_or(0),
                state_ok: s.as_deref() == Some("ok"),
            },
            _ => View::Absent,
        })
        .collect())
}

struct Convergence {
    /// When STATE_DB started to equal the kernel's final truth for good.
    converged_ns: u64,
    /// When the `ip -batch` given to `wait_converged` exited (0 if none was given).
    batch_end_ns: u64,
    /// Kernel notification counts once settled.
    counts: NlCounts,
    polls: usize,
    /// Time between the last poll that differed and the first that matched: the measurement's resolution
    /// (0: STATE_DB already matched at the first poll, so the convergence time is an upper bound).
    resolution_ns: u64,
    /// Mean time between two polls.
    mean_poll_ns: u64,
}

/// The kernel's truth, re-read by a thread of its own so STATE_DB polls keep a ~1 ms cadence.
#[derive(Clone, Copy)]
struct KernelSnap {
    hash: u64,
    /// Unix ns when the read started; a read that started before the last notification is stale.
    started_ns: u64,
}

/// Polls STATE_DB every ~1 ms (while `batch`, if any, is still applying changes) until it equals the
/// kernel's truth, the batch has ended, the kernel has been quiet for 1.2 s (veth carrier-up goes through
/// linkwatch, which can lag ~1 s) and the match has held for 200 ms. The convergence moment is then found
/// in the recorded poll history: the first poll of the final run of polls equal to the final truth.
fn wait_converged(
    ctx: &mut Ctx,
    timeout: Duration,
    daemon: &mut Proc,
    mut batch: Option<Child>,
) -> Result<Convergence> {
    let kernel: std::sync::Mutex<Option<KernelSnap>> = std::sync::Mutex::new(None);
    let done = AtomicBool::new(false);
    let (ns, ports) = (ctx.ns.clone(), ctx.ports.clone());
    thread::scope(|scope| {
        let reader = scope.spawn(|| -> Result<()> {
            while !done.load(Ordering::Relaxed) {
                let (started_ns, t) = (now_ns(), Instant::now());
                let hash = hash_views(&kernel_views(&ns, &ports)?);
                if let Ok(mut k) = kernel.lock() {
                    *k = Some(KernelSnap { hash, started_ns });
                }
                // `ip -json` costs CPU that the daemon under test would like to have: idle twice as
                // long as a read took (and at least 20 ms).
                thread::sleep(Duration::from_millis(20).max(t.elapsed() * 2));
            }
            Ok(())
        });
        let result = poll_state(ctx, timeout, daemon, &mut batch, &kernel, &reader);
        done.store(true, Ordering::Relaxed);
        if let Some(mut b) = batch {
            let _ = b.kill();
            let _ = b.wait();
        }
        result
    })
}

fn poll_state(
    ctx: &mut Ctx,
    timeout: Duration,
    daemon: &mut Proc,
    batch: &mut Option<Child>,
    kernel: &std::sync::Mutex<Option<KernelSnap>>,
    reader: &thread::ScopedJoinHandle<'_, Result<()>>,
) -> Result<Convergence> {
    const QUIET_NS: u64 = 1_200_000_000;
    let deadline = Instant::now() + timeout;
    let mut history: Vec<(u64, u64)> = Vec::with_capacity(16384);
    let mut matched_since: Option<Instant> = None;
    let mut counts = ctx.monitor.counts()?;
    let mut counts_read = Instant::now();
    let mut batch_end_ns = 0u64;
    loop {
        check_stop()?;
        if let Some(st) = daemon.exited() {
            bail!("the daemon exited ({st}); see {}", ctx.daemon_log.display());
        }
        if reader.is_finished() {
            bail!("reading the kernel's links failed (`ip -json link show`)");
        }
        if let Some(b) = batch.as_mut() {
            if let Some(st) = b.try_wait()? {
                batch_end_ns = now_ns();
                if !st.success() {
                    bail!("ip -batch failed ({st})");
                }
                *batch = None;
            }
        }
        let views = state_views(&mut ctx.state, &ctx.ports)?;
        let h = hash_views(&views);
        history.push((now_ns(), h));
        if counts_read.elapsed() >= Duration::from_millis(50) {
            counts = ctx.monitor.counts()?;
            counts_read = Instant::now();
        }
        let snap = kernel.lock().ok().and_then(|k| *k);
        let fresh = snap.filter(|k| batch.is_none() && k.started_ns > counts.last_ns);
        if fresh.is_some_and(|k| k.hash == h) {
            let since = *matched_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(200)
                && now_ns().saturating_sub(counts.last_ns) >= QUIET_NS
            {
                counts = ctx.monitor.counts()?;
                if now_ns().saturating_sub(counts.last_ns) >= QUIET_NS {
                    let mut first = history.len() - 1;
                    while first > 0 && history[first - 1].1 == h {
                        first -= 1;
                    }
                    let resolution_ns = if first > 0 {
                        history[first].0 - history[first - 1].0
                    } else {
                        0
                    };
                    let span = history[history.len() - 1].0 - history[0].0;
                    return Ok(Convergence {
                        converged_ns: history[first].0,
                        batch_end_ns,
                        counts,
                        polls: history.len(),
                        resolution_ns,
                        mean_poll_ns: span / (history.len() as u64).max(2).saturating_sub(1),
                    });
                }
            }
        } else {
            matched_since = None;
        }
        if Instant::now() > deadline {
            let k = kernel_views(&ctx.ns, &ctx.ports)?;
            let wrong = k.iter().zip(&views).filter(|(a, b)| a != b).count();
            bail!(
                "STATE_DB not converged after {timeout:?}: {wrong} of {} ports differ from the kernel",
                k.len()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------- /proc readers

/// (utime+stime seconds from /proc/<pid>/stat, on-CPU seconds summed over /proc/<pid>/task/*/schedstat).
fn cpu_seconds(pid: u32) -> Result<(f64, Option<f64>)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after ")": index 0 is field 3 (state); utime is field 14, stime field 15.
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let mut sched = 0u64;
    let mut have_sched = false;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                {
                    sched += ns;
                    have_sched = true;
                }
            }
        }
    }
    Ok((ticks / USER_HZ, have_sched.then_some(sched as f64 / 1e9)))
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// True when a NETLINK_ROUTE socket other than the monitor's is in the link group (RTMGRP_LINK) with no
/// dump running and nothing queued: the daemon has finished its initial dump. Links created before that
/// would be "left over from an earlier run" to a cold-starting portsyncd (set admin-down and ignored).
fn daemon_listening(ns: &str, monitor_pid: u32) -> Result<bool> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/netlink"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 10
            && f[1] == "0"
            && f[2] != monitor_pid.to_string()
            && u32::from_str_radix(f[3], 16).is_ok_and(|g| g & RTMGRP_LINK != 0)
            && f[4] == "0"
            && f[6] == "0"
    }))
}

/// Drops the kernel counted on NETLINK_ROUTE sockets in the namespace, the monitor's excluded.
fn netlink_drops(ns: &str, monitor_pid: u32) -> Option<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/netlink"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 9 && f[1] == "0" && f[2] != monitor_pid.to_string() {
            total += f[8].parse::<u64>().unwrap_or(0);
        }
    }
    Some(total)
}

// ----------------------------------------------------------------------------------- the storm

/// xorshift64*: a small deterministic generator, good enough to pick ports and changes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// M `link set` commands, each a real change of the simulated kernel state (admin toggle or a new MTU).
fn storm_batch(ports: &[String], kernel: &[View], m: usize, seed: u64) -> String {
    const MTUS: [u32; 4] = [1500, 9000, 9100, 9216];
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut sim: Vec<(bool, u32)> = kernel
        .iter()
        .map(|v| match v {
            View::Present { admin_up, mtu, .. } => (*admin_up, *mtu),
            View::Absent => (false, 1500),
        })
        .collect();
    let mut out = String::with_capacity(m * 32);
    for _ in 0..m {
        let i = rng.below(ports.len());
        if rng.below(100) < 85 {
            sim[i].0 = !sim[i].0;
            let _ = writeln!(
                out,
                "link set dev {} {}",
                ports[i],
                if sim[i].0 { "up" } else { "down" }
            );
        } else {
            let choices: Vec<u32> = MTUS.iter().copied().filter(|&x| x != sim[i].1).collect();
            sim[i].1 = choices[rng.below(choices.len())];
            let _ = writeln!(out, "link set dev {} mtu {}", ports[i], sim[i].1);
        }
    }
    out
}

fn ip_batch(ns: &str, file: &Path) -> Result<()> {
    sh(Command::new("ip").args(["-n", ns, "-batch"]).arg(file))
}

/// Starts `ip -batch` without waiting, so STATE_DB can be polled while the kernel changes.
fn spawn_ip_batch(ns: &str, file: &Path) -> Result<Child> {
    Command::new("ip")
        .args(["-n", ns, "-batch"])
        .arg(file)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting ip -batch")
}

// ---------------------------------------------------------------------------------------- setup

struct Ctx {
    ns: String,
    ports: Vec<String>,
    state: redis::Connection,
    monitor: Monitor,
    daemon_log: PathBuf,
}

const CONSUMER_LUA: &str = r"
local ks = redis.call('SPOP', KEYS[1], ARGV[1])
for _, k in ipairs(ks) do
  local dst = ARGV[2] .. ':' .. k
  if redis.call('SREM', KEYS[2], k) == 1 then redis.call('DEL', dst) end
  local fv = redis.call('HGETALL', '_' .. dst)
  if #fv > 0 then redis.call('HSET', dst, unpack(fv)) end
  redis.call('DEL', '_' .. dst)
end
return #ks
";

/// The built-in consumer's thread; stopped and joined on drop (before redis-server goes away).
struct Consumer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}
impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The built-in ConsumerStateTable stand-in: one atomic Lua pop-and-move every millisecond.
fn builtin_consumer(url: String) -> Consumer {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = thread::spawn(move || {
        let stop = flag;
        let run = || -> Result<()> {
            let mut con = redis::Client::open(url.as_str())?.get_connection()?;
            redis::cmd("SELECT").arg(0).query::<()>(&mut con)?;
            let script = redis::Script::new(CONSUMER_LUA);
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = script
                    .key("PORT_TABLE_KEY_SET")
                    .key("PORT_TABLE_DEL_SET")
                    .arg(1024)
                    .arg("PORT_TABLE")
                    .invoke(&mut con)?;
                if n == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            if !stop.load(Ordering::Relaxed) {
                eprintln!("bench-storm: built-in consumer stopped: {e:#}");
            }
        }
    });
    Consumer {
        stop,
        thread: Some(thread),
    }
}

fn connect(url: &str, db: i64) -> Result<redis::Connection> {
    let mut con = redis::Client::open(url)?
        .get_connection()
        .context("connecting to redis")?;
    redis::cmd("SELECT").arg(db).query::<()>(&mut con)?;
    Ok(con)
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        check_stop()?;
        if f()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct StormResult {
    batch_ms: f64,
    notifications: u64,
    lost: u64,
    last_after_batch_ms: f64,
    converge_ms: f64,
    cpu_s: f64,
    cpu_sched_s: Option<f64>,
}

fn run(args: &Args) -> Result<()> {
    let tmp = TempDir(std::env::temp_dir().join(format!("bench-storm-{}", std::process::id())));
    fs::create_dir_all(&tmp.0)?;
    let result = run_in(args, &tmp.0);
    if result.is_err() {
        let log = tail(&tmp.0.join("daemon.log"));
        if !log.is_empty() {
            eprintln!("bench-storm: last lines of the daemon's log:\n{log}");
        }
    }
    result
}

fn run_in(args: &Args, dir: &Path) -> Result<()> {
    if args.ports < 2 || !args.ports.is_multiple_of(2) || args.ports > 4096 {
        bail!("--ports must be even and in 2..=4096 (got {})", args.ports);
    }
    if args.flaps == 0 || args.repeat == 0 {
        bail!("--flaps and --repeat must be at least 1");
    }
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once; the first one sets STOP and the guards clean up.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&STOP))?;
        signal_hook::flag::register(sig, Arc::clone(&STOP))?;
    }

    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no directory for the current executable"))?;
    let pid = std::process::id();
    let sock = dir.join("redis.sock");
    let url = format!("unix://{}", sock.display());
    let state_dir = dir.join("state");

    // redis-server, private, on a unix socket; SONiC's keyspace notifications on.
    let _redis = Proc {
        name: "redis-server",
        child: Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--notify-keyspace-events",
                "AKE",
                "--logfile",
                "redis.log",
                "--dir",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting redis-server")?,
    };
    wait_until(
        "redis-server",
        Duration::from_secs(10),
        || Ok(sock.exists()),
    )?;
    let mut config = loop {
        check_stop()?;
        match connect(&url, 4) {
            Ok(c) => break c,
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    };
    let ports: Vec<String> = (0..args.ports)
        .map(|i| format!("Ethernet{}", i * 4))
        .collect();
    let mut pipe = redis::pipe();
    for (i, p) in ports.iter().enumerate() {
        let lanes = format!("{},{},{},{}", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4);
        pipe.cmd("HSET").arg(format!("PORT|{p}")).arg(&[
            ("alias", format!("etp{}", i + 1)),
            ("lanes", lanes),
            ("speed", "100000".into()),
            ("mtu", "9100".into()),
            ("admin_status", "up".into()),
            ("index", (i + 1).to_string()),
            ("fec", "rs".into()),
        ]);
    }
    pipe.query::<()>(&mut config).context("seeding CONFIG_DB")?;

    let ns = Netns(format!("psd-bench-{pid}"));
    sh(Command::new("ip").args(["netns", "add", &ns.0]))?;
    sh(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;

    // The consumer of APPL_DB PORT_TABLE.
    let standin_path = match args.standin.as_str() {
        "builtin" => None,
        "auto" => Some(exe_dir.join("orchagent-standin")).filter(|p| p.exists()),
        p => Some(PathBuf::from(p)),
    };
    let (_standin, _consumer, consumer_desc) = match standin_path {
        Some(p) => {
            let child = Command::new(&p)
                .args(["--redis-url", &url])
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("standin.log"))?)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", p.display()))?;
            (
                Some(Proc {
                    name: "orchagent-standin",
                    child,
                }),
                None,
                p.display().to_string(),
            )
        }
        None => (
            None,
            Some(builtin_consumer(url.clone())),
            "built-in Lua consumer".into(),
        ),
    };

    let monitor = Monitor::start(&ns.0)?;
    let monitor_pid = monitor._proc.pid();

    // The daemon under test.
    let template = args.daemon.clone().unwrap_or_else(|| {
        format!(
            "{} --redis-url {{url}} --state-dir {{state}} --metrics-enabled false",
            exe_dir.join("portsyncd").display()
        )
    });
    let cmdline = template
        .replace("{url}", &url)
        .replace("{sock}", &sock.display().to_string())
        .replace("{state}", &state_dir.display().to_string())
        .replace("{dir}", &dir.display().to_string());
    // A SONiC database_config.json for implementations that read one instead of --redis-url.
    let dbconfig = dir.join("database_config.json");
    fs::write(&dbconfig, database_config(&sock))?;
    let cmdline = cmdline.replace("{dbconfig}", &dbconfig.display().to_string());
    let daemon_log = dir.join("daemon.log");
    let log = fs::File::create(&daemon_log)?;
    let mut daemon = Proc {
        name: "daemon",
        child: Command::new("ip")
            .args(["netns", "exec", &ns.0, "sh", "-c"])
            .arg(format!("exec {cmdline}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting the daemon")?,
    };
    let dpid = daemon.pid();
    println!(
        "bench-storm: {} ports ({} veth pairs), {} changes per storm, {} storm(s){}",
        args.ports,
        args.ports / 2,
        args.flaps,
        args.repeat,
        if args.overrun {
            ", daemon SIGSTOPped during each storm"
        } else {
            ""
        }
    );
    println!("  daemon:   {cmdline}");
    println!("  consumer: {consumer_desc}");

    let mut appl = connect(&url, 0)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let t_appl = wait_until(
        "APPL_DB PORT_TABLE with every port (cold start + consumer)",
        timeout,
        || {
            if let Some(st) = daemon.exited() {
                bail!(
                    "the daemon exited ({st}) during start-up: {}",
                    tail(&daemon_log)
                );
            }
            let mut pipe = redis::pipe();
            for p in &ports {
                pipe.cmd("EXISTS").arg(format!("PORT_TABLE:{p}"));
            }
            let e: Vec<i64> = pipe.query(&mut appl)?;
            Ok(e.iter().all(|&x| x == 1))
        },
    )?;

    // The initial dump must be over before any Ethernet netdev exists (see daemon_listening).
    let t_listen = wait_until(
        "the daemon's netlink socket (link group, dump done)",
        timeout,
        || {
            if !daemon_listening(&ns.0, monitor_pid)? {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(300));
            daemon_listening(&ns.0, monitor_pid)
        },
    )?;

    let mut ctx = Ctx {
        ns: ns.0.clone(),
        ports: ports.clone(),
        state: connect(&url, 6)?,
        monitor,
        daemon_log: daemon_log.clone(),
    };

    // Ports phase: create N/2 veth pairs (both ends ports) and set them up in one batch.
    let mut batch = String::new();
    for pair in ports.chunks(2) {
        let _ = writeln!(
            batch,
            "link add {} type veth peer name {}",
            pair[0], pair[1]
        );
    }
    for p in &ports {
        let _ = writeln!(batch, "link set dev {p} up");
    }
    let batch_file = dir.join("create.batch");
    fs::write(&batch_file, &batch)?;
    let t0 = now_ns();
    let creating = spawn_ip_batch(&ns.0, &batch_file)?;
    let conv = wait_converged(&mut ctx, timeout, &mut daemon, Some(creating))?;
    let create_ms = conv.batch_end_ns.saturating_sub(t0) as f64 / 1e6;
    let ports_ms = (conv.converged_ns.saturating_sub(t0)) as f64 / 1e6;
    let init_after_last_ms = conv.converged_ns.saturating_sub(conv.counts.last_ns) as f64 / 1e6;

    println!();
    println!("  {:<58} {:>12}", "start-up", "");
    println!(
        "  {:<58} {:>9.1} ms",
        "daemon start -> every port in APPL_DB (consumed)",
        t_appl.as_secs_f64() * 1e3
    );
    println!(
        "  {:<58} {:>9.1} ms",
        "  then: daemon netlink socket idle in link group (+300 ms)",
        t_listen.as_secs_f64() * 1e3
    );
    println!(
        "  {:<58} {:>9.1} ms",
        "ip -batch: create + up of all links", create_ms
    );
    println!(
        "  {:<58} {:>9.1} ms",
        "link creation start -> STATE_DB converged", ports_ms
    );
    println!(
        "  {:<58} {:>9.1} ms",
        "  of which after the kernel's last notification", init_after_last_ms
    );

    // Storms.
    let mut results = Vec::new();
    for k in 0..args.repeat {
        check_stop()?;
        let kernel = kernel_views(&ns.0, &ports)?;
        let storm = storm_batch(
            &ports,
            &kernel,
            args.flaps,
            args.seed.wrapping_add(k as u64),
        );
        let storm_file = dir.join(format!("storm{k}.batch"));
        fs::write(&storm_file, storm)?;
        let before = ctx.monitor.counts()?;
        let cpu0 = cpu_seconds(dpid)?;
        if args.overrun {
            signal(dpid, "STOP")?;
        }
        let tb0 = now_ns();
        let mut running = None;
        let mut tb1 = 0;
        let mut t_ref_ns = None;
        if !args.overrun {
            running = Some(spawn_ip_batch(&ns.0, &storm_file)?);
        } else {
            ip_batch(&ns.0, &storm_file)?;
            tb1 = now_ns();
            // Let the kernel finish (linkwatch) so the whole storm lands while the daemon is stopped.
            wait_until("the kernel to go quiet", timeout, || {
                Ok(now_ns().saturating_sub(ctx.monitor.counts()?.last_ns) >= 1_200_000_000)
            })?;
            signal(dpid, "CONT")?;
            t_ref_ns = Some(now_ns());
        }
        let conv = wait_converged(&mut ctx, timeout, &mut daemon, running)?;
        if !args.overrun {
            tb1 = conv.batch_end_ns;
        }
        let cpu1 = cpu_seconds(dpid)?;
        let last = conv.counts.last_ns;
        let reference = t_ref_ns.unwrap_or(last);
        let r = StormResult {
            batch_ms: (tb1 - tb0) as f64 / 1e6,
            notifications: (conv.counts.newlink + conv.counts.dellink)
                - (before.newlink + before.dellink),
            lost: conv.counts.enobufs - before.enobufs,
            last_after_batch_ms: last.saturating_sub(tb1) as f64 / 1e6,
            converge_ms: conv.converged_ns.saturating_sub(reference) as f64 / 1e6,
            cpu_s: cpu1.0 - cpu0.0,
            cpu_sched_s: cpu1.1.zip(cpu0.1).map(|(a, b)| a - b),
        };
        println!();
        println!(
            "  storm {} of {} ({} polls of STATE_DB, {:.1} ms apart on average; {})",
            k + 1,
            args.repeat,
            conv.polls,
            conv.mean_poll_ns as f64 / 1e6,
            if conv.resolution_ns == 0 {
                "matched at the first poll: the time below is an upper bound".to_string()
            } else {
                format!("resolution {:.1} ms", conv.resolution_ns as f64 / 1e6)
            }
        );
        print_storm(&r, args);
        results.push(r);
    }

    let rss_hwm = status_kib(dpid, "VmHWM:");
    let rss = status_kib(dpid, "VmRSS:");
    let drops = netlink_drops(&ns.0, monitor_pid);
    println!();
    if args.repeat > 1 {
        println!("  medians over {} storms", args.repeat);
        let med = |f: &dyn Fn(&StormResult) -> f64| {
            median(&mut results.iter().map(f).collect::<Vec<_>>())
        };
        let cpu_per = |r: &StormResult| per_change_us(r);
        println!(
            "  {:<58} {:>9.1} ms",
            "converged after the last change",
            med(&|r| r.converge_ms)
        );
        println!(
            "  {:<58} {:>9.1} µs",
            "daemon CPU per kernel link notification",
            med(&cpu_per)
        );
        println!(
            "  {:<58} {:>9.1} µs",
            "daemon CPU per `ip link set` command",
            med(&|r| r.cpu_best() * 1e6 / args.flaps as f64)
        );
    }
    println!(
        "  {:<58} {:>9} KiB",
        "daemon peak RSS (VmHWM)",
        rss_hwm.map_or("?".into(), |v| v.to_string())
    );
    println!(
        "  {:<58} {:>9} KiB",
        "daemon RSS now (VmRSS)",
        rss.map_or("?".into(), |v| v.to_string())
    );
    println!(
        "  {:<58} {:>9}",
        "netlink drops counted by the kernel (daemon side)",
        drops.map_or("?".into(), |v| v.to_string())
    );

    // Guards drop in reverse order: daemon, monitor, consumer, namespace, redis-server.
    Ok(())
}

impl StormResult {
    /// schedstat (ns resolution, all threads) when the kernel has it, else utime+stime (10 ms ticks).
    fn cpu_best(&self) -> f64 {
        self.cpu_sched_s.unwrap_or(self.cpu_s)
    }
}

fn per_change_us(r: &StormResult) -> f64 {
    if r.notifications == 0 {
        return f64::NAN;
    }
    r.cpu_best() * 1e6 / r.notifications as f64
}

fn print_storm(r: &StormResult, args: &Args) {
    let reference = if args.overrun {
        "SIGCONT"
    } else {
        "the kernel's last notification"
    };
    println!("  {:<58} {:>9.1} ms", "ip -batch of the storm", r.batch_ms);
    println!(
        "  {:<58} {:>9}",
        "kernel link notifications (RTM_NEWLINK/DELLINK)", r.notifications
    );
    if r.lost > 0 {
        println!(
            "  {:<58} {:>9}",
            "  monitor overruns (ENOBUFS): count is a lower bound", r.lost
        );
    }
    println!(
        "  {:<58} {:>9.1} ms",
        "last notification after the batch ended (linkwatch)", r.last_after_batch_ms
    );
    println!(
        "  {:<58} {:>9.1} ms",
        format!("STATE_DB converged after {reference}"),
        r.converge_ms
    );
    println!(
        "  {:<58} {:>9.1} ms",
        "daemon CPU, utime+stime (/proc/pid/stat)",
        r.cpu_s * 1e3
    );
    if let Some(s) = r.cpu_sched_s {
        println!(
            "  {:<58} {:>9.1} ms",
            "daemon CPU, schedstat (all threads)",
            s * 1e3
        );
    }
    println!(
        "  {:<58} {:>9.1} µs",
        "daemon CPU per kernel link notification",
        per_change_us(r)
    );
    if args.overrun {
        println!(
            "  (with --overrun the daemon never reads the notifications the kernel dropped, so the"
        );
        println!("   per-change CPU figures are not comparable with a run without it)");
    }
    println!(
        "  {:<58} {:>9.1} µs",
        "daemon CPU per `ip link set` command",
        r.cpu_best() * 1e6 / args.flaps as f64
    );
}

/// SONiC's DB layout with every database on one redis instance at `sock`.
fn database_config(sock: &Path) -> String {
    let dbs = [
        ("APPL_DB", 0, ":"),
        ("ASIC_DB", 1, ":"),
        ("COUNTERS_DB", 2, ":"),
        ("LOGLEVEL_DB", 3, ":"),
        ("CONFIG_DB", 4, "|"),
        ("FLEX_COUNTER_DB", 5, "|"),
        ("STATE_DB", 6, "|"),
    ];
    let databases: serde_json::Map<String, serde_json::Value> = dbs
        .iter()
        .map(|(name, id, sep)| {
            (
                name.to_string(),
                serde_json::json!({"id": id, "separator": sep, "instance": "redis"}),
            )
        })
        .collect();
    serde_json::json!({
        "INSTANCES": {"redis": {"hostname": "127.0.0.1", "port": 6379, "unix_socket_path": sock}},
        "DATABASES": databases,
        "VERSION": "1.0"
    })
    .to_string()
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("Ethernet{}", i * 4)).collect()
    }

    fn up(mtu: u32) -> View {
        View::Present {
            admin_up: true,
            oper_up: true,
            mtu,
            state_ok: true,
        }
    }

    /// Replays the batch on the starting state; every command must change something.
    #[test]
    fn storm_commands_are_all_real_changes() {
        let p = ports(8);
        let start: Vec<View> = (0..8)
            .map(|i| if i == 3 { View::Absent } else { up(1500) })
            .collect();
        let batch = storm_batch(&p, &start, 500, 7);
        let mut sim: std::collections::HashMap<&str, (bool, u32)> = p
            .iter()
            .map(|n| (n.as_str(), (n != "Ethernet12", 1500)))
            .collect();
        let lines: Vec<&str> = batch.lines().collect();
        assert_eq!(lines.len(), 500);
        let mut mtu_changes = 0;
        for l in lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(&f[..3], &["link", "set", "dev"], "{l}");
            let st = sim.get_mut(f[3]).expect("a known port");
            match f[4] {
                "up" => {
                    assert!(!st.0, "{l}: already up");
                    st.0 = true;
                }
                "down" => {
                    assert!(st.0, "{l}: already down");
                    st.0 = false;
                }
                "mtu" => {
                    let m: u32 = f[5].parse().unwrap();
                    assert_ne!(m, st.1, "{l}: same mtu");
                    st.1 = m;
                    mtu_changes += 1;
                }
                other => panic!("unexpected command {other}"),
            }
        }
        assert!(
            mtu_changes > 20 && mtu_changes < 150,
            "about 15% MTU changes, got {mtu_changes}"
        );
    }

    #[test]
    fn storms_depend_on_the_seed_only() {
        let p = ports(16);
        let k = vec![up(9100); 16];
        assert_eq!(storm_batch(&p, &k, 100, 3), storm_batch(&p, &k, 100, 3));
        assert_ne!(storm_batch(&p, &k, 100, 3), storm_batch(&p, &k, 100, 4));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn database_config_points_every_db_at_the_socket() {
        let v: serde_json::Value =
            serde_json::from_str(&database_config(Path::new("/tmp/x/redis.sock"))).unwrap();
        assert_eq!(
            v["INSTANCES"]["redis"]["unix_socket_path"],
            "/tmp/x/redis.sock"
        );
        assert_eq!(v["DATABASES"]["APPL_DB"]["id"], 0);
        assert_eq!(v["DATABASES"]["CONFIG_DB"]["separator"], "|");
        assert_eq!(v["DATABASES"]["STATE_DB"]["id"], 6);
        assert_eq!(v["DATABASES"]["STATE_DB"]["instance"], "redis");
    }

    #[test]
    fn hash_tells_views_apart() {
        let a = vec![up(1500), View::Absent];
        let mut b = a.clone();
        assert_eq!(hash_views(&a), hash_views(&b));
        b[0] = up(9100);
        assert_ne!(hash_views(&a), hash_views(&b));
    }
}
