//! What the benchmark observes: the kernel's truth and STATE_DB as comparable views, the convergence wait,
//! and the daemon's CPU, memory and netlink drops from /proc.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::guards::{check_stop, now_ns, Proc};
use crate::monitor::{Monitor, NlCounts, RTMGRP_LINK};
use crate::switch::kernel_links;

/// /proc/<pid>/stat counts in USER_HZ, which is 100 on every Linux architecture SONiC runs on.
const USER_HZ: f64 = 100.0;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum View {
    Absent,
    Present {
        admin_up: bool,
        oper_up: bool,
        mtu: u32,
        state_ok: bool,
    },
}

pub fn hash_views(v: &[View]) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The kernel's truth for every port, from `ip -json link show` in the namespace.
pub fn kernel_views(ns: &str, ports: &[String]) -> Result<Vec<View>> {
    let mut by_name = kernel_links(ns)?;
    Ok(ports
        .iter()
        .map(|p| match by_name.remove(p) {
            Some(l) => View::Present {
                admin_up: l.admin_up,
                oper_up: l.oper_up,
                mtu: l.mtu,
                state_ok: true,
            },
            None => View::Absent,
        })
        .collect())
}

/// What STATE_DB says, one pipelined HMGET per port.
pub fn state_views(con: &mut redis::Connection, ports: &[String]) -> Result<Vec<View>> {
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

pub struct Convergence {
    /// When STATE_DB started to equal the kernel's final truth for good.
    pub converged_ns: u64,
    /// When the `ip -batch` given to `wait_converged` exited (0 if none was given).
    pub batch_end_ns: u64,
    /// Kernel notification counts once settled.
    pub counts: NlCounts,
    pub polls: usize,
    /// Time between the last poll that differed and the first that matched: the measurement's resolution
    /// (0: STATE_DB already matched at the first poll, so the convergence time is an upper bound).
    pub resolution_ns: u64,
    /// Mean time between two polls.
    pub mean_poll_ns: u64,
    /// When each poll's answer arrived (unix ns), and STATE_DB's changes as (poll time, port index, new
    /// view); the first poll records every port. For `--plot` (see `timeline::disagreement`).
    pub poll_ns: Vec<u64>,
    pub state_changes: Vec<(u64, u32, View)>,
}

/// The kernel's truth, re-read by a thread of its own so STATE_DB polls keep a ~1 ms cadence.
#[derive(Clone, Copy)]
pub struct KernelSnap {
    pub hash: u64,
    /// Unix ns when the read started; a read that started before the last notification is stale.
    pub started_ns: u64,
}

/// Polls STATE_DB every ~1 ms (while `batch`, if any, is still applying changes) until it equals the
/// kernel's truth, the batch has ended, the kernel has been quiet for 1.2 s (veth carrier-up goes through
/// linkwatch, which can lag ~1 s) and the match has held for 200 ms. The convergence moment is then found
/// in the recorded poll history: the first poll of the final run of polls equal to the final truth.
pub fn wait_converged(
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

pub fn poll_state(
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
    let mut state_changes: Vec<(u64, u32, View)> = Vec::new();
    let mut last_views = vec![View::Absent; ctx.ports.len()];
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
        let t = now_ns();
        history.push((t, h));
        for (i, (v, last)) in views.iter().zip(&mut last_views).enumerate() {
            if v != last {
                state_changes.push((t, i as u32, v.clone()));
                *last = v.clone();
            }
        }
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
                        poll_ns: history.iter().map(|p| p.0).collect(),
                        state_changes,
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
pub fn cpu_seconds(pid: u32) -> Result<(f64, Option<f64>)> {
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

pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// True when a NETLINK_ROUTE socket other than the monitor's is in the link group (RTMGRP_LINK) with no
/// dump running and nothing queued: the daemon has finished its initial dump. Links created before that
/// would be "left over from an earlier run" to a cold-starting portsyncd (set admin-down and ignored).
pub fn daemon_listening(ns: &str, monitor_pid: u32) -> Result<bool> {
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
pub fn netlink_drops(ns: &str, monitor_pid: u32) -> Option<u64> {
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

pub struct Ctx {
    pub ns: String,
    pub ports: Vec<String>,
    pub state: redis::Connection,
    pub monitor: Monitor,
    pub daemon_log: PathBuf,
}
