//! `--warm-restarts K`: SIGTERM the daemon and start it again with SONiC's warm-restart flag set,
//! K times, timing process start -> `WARM_RESTART_TABLE|portsyncd state reconciled` and counting the
//! writes Redis saw meanwhile: per command (`INFO commandstats`, every database), and the STATE_DB
//! `PORT_TABLE|*` writes alone, from `redis-cli MONITOR` (nothing changed in the kernel between the
//! restarts, so a warm restart must make none).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::guards::{signal, wait_until, Proc};
use crate::report::{median, row};

/// One warm restart.
pub struct WarmResult {
    /// Process spawn -> `state reconciled` seen in STATE_DB.
    pub to_reconciled_ms: f64,
    /// The daemon's own figure for its initial sync (the EOIU wait), from its log.
    pub sync_ms: f64,
    /// Redis command counts (commandstats deltas) during the restart.
    pub writes: BTreeMap<&'static str, u64>,
    /// STATE_DB `PORT_TABLE|*` writes during the restart (MONITOR lines); None: MONITOR failed.
    pub state_port_writes: Option<usize>,
}

/// Write commands, as MONITOR quotes them (in the client's spelling: compared in lower case).
const WRITE_CMDS: [&str; 6] = [
    "\"hset\"",
    "\"hmset\"",
    "\"hdel\"",
    "\"del\"",
    "\"unlink\"",
    "\"evalsha\"",
];

/// `redis-cli MONITOR` into a file while it lives.
struct RedisMonitor {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl RedisMonitor {
    fn start(sock: &Path, file: std::path::PathBuf) -> Result<RedisMonitor> {
        let out = fs::File::create(&file)?;
        let child = Command::new("redis-cli")
            .arg("-s")
            .arg(sock)
            .arg("monitor")
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("redis-cli monitor")?;
        let m = RedisMonitor { child, file };
        // MONITOR prints OK once it is attached.
        wait_until("redis-cli MONITOR", Duration::from_secs(5), || {
            Ok(fs::read_to_string(&m.file).is_ok_and(|t| t.starts_with("OK")))
        })?;
        Ok(m)
    }

    /// STATE_DB (database 6 in the benchmark's layout) writes of `PORT_TABLE|*` keys so far.
    fn state_port_writes(&self) -> usize {
        fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("[6 ") && l.contains("\"PORT_TABLE|"))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                WRITE_CMDS.iter().any(|c| l.contains(c))
            })
            .count()
    }
}

impl Drop for RedisMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const COUNTED: [&str; 4] = ["hset", "del", "evalsha", "publish"];

fn command_calls(con: &mut redis::Connection) -> Result<BTreeMap<&'static str, u64>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con)?;
    let mut out = BTreeMap::new();
    for name in COUNTED {
        let prefix = format!("cmdstat_{name}:calls=");
        let calls = info
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        out.insert(name, calls);
    }
    Ok(out)
}

fn last_sync_ms(log: &Path) -> Option<f64> {
    let text = fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("initial sync complete"))?;
    let v = line.split("sync_ms=").nth(1)?.split_whitespace().next()?;
    v.parse().ok()
}

/// Stops `daemon` (SIGTERM, waits for its exit) and starts `cmdline` in `ns` as the new daemon.
pub fn restart(
    daemon: &mut Proc,
    ns: &str,
    cmdline: &str,
    log: &Path,
    state: &mut redis::Connection,
    dir: &Path,
    timeout: Duration,
) -> Result<WarmResult> {
    signal(daemon.pid(), "TERM")?;
    wait_until("the daemon to exit after SIGTERM", timeout, || {
        Ok(daemon.exited().is_some())
    })?;
    redis::cmd("HSET")
        .arg("WARM_RESTART_ENABLE_TABLE|system")
        .arg("enable")
        .arg("true")
        .query::<()>(state)?;
    redis::cmd("HDEL")
        .arg("WARM_RESTART_TABLE|portsyncd")
        .arg("state")
        .query::<()>(state)?;
    let monitor = RedisMonitor::start(&dir.join("redis.sock"), dir.join("warm-monitor.txt")).ok();
    let before = command_calls(state)?;
    let out = fs::File::create(log)?;
    let t0 = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("exec {cmdline}"))
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("restarting the daemon")?;
    *daemon = Proc {
        name: "daemon",
        child,
    };
    let mut reconciled = None;
    wait_until(
        "WARM_RESTART_TABLE|portsyncd state reconciled",
        timeout,
        || {
            if let Some(st) = daemon.exited() {
                bail!("the daemon exited ({st}) during the warm restart");
            }
            let s: Option<String> = redis::cmd("HGET")
                .arg("WARM_RESTART_TABLE|portsyncd")
                .arg("state")
                .query(state)?;
            if s.as_deref() == Some("reconciled") {
                reconciled = Some(t0.elapsed());
                return Ok(true);
            }
            std::thread::sleep(Duration::from_micros(500));
            Ok(false)
        },
    )?;
    let to_reconciled = reconciled.unwrap_or_default();
    // Let anything after `reconciled` (PortInitDone, a commit) land before counting.
    std::thread::sleep(Duration::from_millis(300));
    let after = command_calls(state)?;
    let state_port_writes = monitor.as_ref().map(RedisMonitor::state_port_writes);
    drop(monitor);
    let writes = COUNTED
        .iter()
        .map(|n| (*n, after[n].saturating_sub(before[n])))
        .collect();
    Ok(WarmResult {
        to_reconciled_ms: to_reconciled.as_secs_f64() * 1e3,
        sync_ms: last_sync_ms(log).unwrap_or(f64::NAN),
        writes,
        state_port_writes,
    })
}

pub fn print(k: usize, r: &WarmResult) {
    println!();
    println!("  warm restart {}", k + 1);
    row(
        "process start -> state reconciled",
        r.to_reconciled_ms,
        "ms",
    );
    row("  of which the initial sync (EOIU wait)", r.sync_ms, "ms");
    row(
        "  excluding the EOIU wait",
        r.to_reconciled_ms - r.sync_ms,
        "ms",
    );
    let w: Vec<String> = r.writes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  {:<58} {}",
        "Redis calls during the restart",
        w.join(", ")
    );
    println!(
        "  {:<58} {:>9}",
        "STATE_DB PORT_TABLE writes during the restart (MONITOR)",
        r.state_port_writes
            .map_or("?".to_string(), |n| n.to_string())
    );
}

pub fn summary(results: &[WarmResult]) {
    if results.len() < 2 {
        return;
    }
    let med =
        |f: &dyn Fn(&WarmResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
    println!();
    println!("  medians over {} warm restarts", results.len());
    row(
        "process start -> state reconciled",
        med(&|r| r.to_reconciled_ms),
        "ms",
    );
    row(
        "  excluding the EOIU wait",
        med(&|r| r.to_reconciled_ms - r.sync_ms),
        "ms",
    );
    let most = results.iter().filter_map(|r| r.state_port_writes).max();
    println!(
        "  {:<58} {:>9}",
        "STATE_DB PORT_TABLE writes in a restart, most (MONITOR)",
        most.map_or("?".to_string(), |n| n.to_string())
    );
}
