//! `--scale 512,1024,2048,4096`: the same storm at several port counts, one table row per size.
//!
//! Each size gets a fresh run (redis-server, namespace, daemon, ports phase), then `--repeat` storms.
//! Per row: the medians over the storms of CPU per kernel change and of convergence after the last
//! change, the daemon's peak RSS (VmHWM) at the end, the p99 of the store commits during the storms
//! (from the daemon's own `commit finished took_us=` debug lines: only for the built-in daemon, whose
//! log filter the benchmark sets), and the CPU per change of each daemon thread (schedstat of
//! `/proc/<pid>/task/*`), which is where the cost goes: `portsyncd` is the core loop, `netlink` the
//! reader, `redis` the writer, `store` the committer.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{bail, Result};

use super::guards::{check_stop, TempDir};
use super::observe::status_kib;
use super::report::{median, per_change_us};
use super::{Args, Bench};

/// The log filter that makes the built-in daemon print each commit's duration.
const COMMIT_LOG_FILTER: &str = "warn,portsyncd=info,portsyncd::daemon::committer=debug";

/// Threads whose CPU is shown on its own (the rest are summed as `other`).
const THREADS: [&str; 4] = ["portsyncd", "netlink", "redis", "store"];

/// Parses `512,1024,2048` (each even, 2..=4096).
pub fn parse_sizes(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize = part.parse()?;
        if n < 2 || !n.is_multiple_of(2) || n > 4096 {
            bail!("--scale: each size must be even and in 2..=4096 (got {n})");
        }
        v.push(n);
    }
    if v.is_empty() {
        bail!("--scale needs at least one size");
    }
    Ok(v)
}

/// Per thread name (summed over threads of the same name): CPU nanoseconds (schedstat field 1) and
/// the number of times it blocked and was woken again (`voluntary_ctxt_switches` in the task's
/// status). Not schedstat's count of times scheduled in: that also counts preemptions, which on a
/// loaded machine grow with the time a thread runs, not with how often it is woken.
pub fn thread_cpu_ns(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let f: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // The main thread (the core loop) is named after the binary: a renamed copy is still it.
        let main = t.file_name().to_str() == Some(pid.to_string().as_str());
        let name = if main { "portsyncd" } else { comm.trim() };
        let key = if THREADS.contains(&name) {
            name
        } else {
            "other"
        };
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let woken = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let e = out.entry(key.to_string()).or_default();
        e.0 += f.first().copied().unwrap_or(0);
        e.1 += woken;
    }
    out
}

/// The `took_us=` values of commit lines in `log` after byte `from`.
fn commit_durations_us(log: &str, from: usize) -> Vec<f64> {
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("commit finished"))
        .filter_map(|l| {
            let v = l.split("took_us=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// The p-th percentile (nearest rank) of `v`.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

struct Row {
    label: String,
    ports: usize,
    notifications: f64,
    cpu_us: f64,
    converge_ms: f64,
    rss_kib: Option<u64>,
    commits: usize,
    commit_p99_ms: f64,
    /// Thread name -> median µs per kernel change.
    threads: BTreeMap<String, f64>,
    /// Thread name -> median voluntary context switches per kernel change.
    wakeups: BTreeMap<String, f64>,
    /// Median wall time of the storm's `ip -batch` (the kernel's pace sets the batches per storm).
    storm_s: f64,
    /// Median MULTI/EXEC transactions per storm: portsyncd's STATE_DB write batches (Redis
    /// round trips), counted by redis-server itself.
    exec_batches: f64,
}

/// Calls of `cmd` redis-server has executed so far (`INFO commandstats`).
fn redis_calls(con: &mut redis::Connection, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .unwrap_or_default();
    let prefix = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One size, one daemon: a fresh bench, the ports phase, `repeat` storms.
fn measure(args: &Args, ports: usize, label: &str, template: &str) -> Result<Row> {
    let mut a = args.clone();
    a.ports = ports;
    let tmp =
        TempDir(std::env::temp_dir().join(format!("bench-storm-{}-{ports}", std::process::id())));
    fs::create_dir_all(&tmp.0)?;
    let mut bench = Bench::start(&a, template, &tmp.0)?;
    bench.ports_phase(&a)?;
    let log_from = fs::metadata(&bench.ctx.daemon_log).map_or(0, |m| m.len() as usize);
    let pid = bench.daemon.pid();
    let mut results = Vec::new();
    let mut per_thread: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut wakeups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut execs = Vec::new();
    for k in 0..a.repeat {
        check_stop()?;
        let exec0 = redis_calls(&mut bench.ctx.state, "exec");
        let before = thread_cpu_ns(pid);
        let r = bench.storm(&a, k)?;
        let after = thread_cpu_ns(pid);
        execs.push((redis_calls(&mut bench.ctx.state, "exec") - exec0) as f64);
        let n = r.notifications.max(1) as f64;
        for (name, (ns, runs)) in &after {
            let (ns0, runs0) = before.get(name).copied().unwrap_or((0, 0));
            per_thread
                .entry(name.clone())
                .or_default()
                .push(ns.saturating_sub(ns0) as f64 / 1e3 / n);
            wakeups
                .entry(name.clone())
                .or_default()
                .push(runs.saturating_sub(runs0) as f64 / n);
        }
        results.push(r);
    }
    let log = fs::read_to_string(&bench.ctx.daemon_log).unwrap_or_default();
    // Another build of portsyncd run with the same log filter prints them too; others print none.
    let mut commits = commit_durations_us(&log, log_from);
    let med = |f: &dyn Fn(&super::report::StormResult) -> f64| {
        median(&mut results.iter().map(f).collect::<Vec<_>>())
    };
    Ok(Row {
        label: label.to_string(),
        ports,
        notifications: med(&|r| r.notifications as f64),
        cpu_us: med(&per_change_us),
        converge_ms: med(&|r| r.converge_ms),
        rss_kib: status_kib(pid, "VmHWM:"),
        commits: commits.len(),
        exec_batches: median(&mut execs),
        storm_s: med(&|r| r.batch_ms / 1e3),
        commit_p99_ms: percentile(&mut commits, 99.0) / 1e3,
        threads: per_thread
            .into_iter()
            .map(|(n, mut v)| (n, median(&mut v)))
            .collect(),
        wakeups: wakeups
            .into_iter()
            .map(|(n, mut v)| (n, median(&mut v)))
            .collect(),
    })
}

/// Runs every size with every daemon (interleaved: each size with each daemon in turn), then prints
/// the table.
pub fn run(args: &Args, sizes: &[usize]) -> Result<()> {
    let builtin = super::builtin_cmdline(&format!("env RUST_LOG={COMMIT_LOG_FILTER} "))?;
    let daemons = super::plot::daemons(&args.daemon, false, &builtin);
    let mut rows = Vec::new();
    for &n in sizes {
        for (label, template) in &daemons {
            check_stop()?;
            println!();
            println!("=== {n} ports, {label} ===");
            rows.push(measure(args, n, label, template)?);
        }
    }
    println!();
    println!(
        "scale: {} change(s) per storm, medians over {} storm(s) per size; storm: wall time of the \
         storm's `ip -batch` (the kernel's pace: a slower storm means more batches); batches: MULTI/EXEC \
         transactions per storm (portsyncd's STATE_DB write batches); per-thread columns are µs of \
         CPU per kernel change",
        args.flaps, args.repeat
    );
    let names: Vec<&str> = THREADS.iter().copied().chain(["other"]).collect();
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(6).max(6);
    print!(
        "{:<width$} {:>6} {:>7} {:>7} {:>10} {:>11} {:>9} {:>8} {:>10} {:>7}",
        "daemon",
        "ports",
        "storm",
        "changes",
        "CPU/change",
        "converge",
        "peak RSS",
        "commits",
        "commit p99",
        "batches"
    );
    for n in &names {
        print!(" {n:>9}");
    }
    println!();
    for r in &rows {
        let rss = r
            .rss_kib
            .map_or("?".into(), |k| format!("{:.1}M", k as f64 / 1024.0));
        let p99 = if r.commit_p99_ms.is_nan() {
            "?".to_string()
        } else {
            format!("{:.2}ms", r.commit_p99_ms)
        };
        print!(
            "{:<width$} {:>6} {:>6.1}s {:>7.0} {:>8.1}µs {:>9.1}ms {:>9} {:>8} {:>10} {:>7.0}",
            r.label,
            r.ports,
            r.storm_s,
            r.notifications,
            r.cpu_us,
            r.converge_ms,
            rss,
            r.commits,
            p99,
            r.exec_batches
        );
        for n in &names {
            print!(" {:>9.2}", r.threads.get(*n).copied().unwrap_or(0.0));
        }
        println!();
    }
    println!();
    println!(
        "times each thread blocked and was woken (voluntary context switches), per kernel change:"
    );
    print!("{:<width$} {:>6}", "daemon", "ports");
    for n in &names {
        print!(" {n:>9}");
    }
    println!();
    for r in &rows {
        print!("{:<width$} {:>6}", r.label, r.ports);
        for n in &names {
            print!(" {:>9.2}", r.wakeups.get(*n).copied().unwrap_or(0.0));
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_checked() {
        assert_eq!(
            parse_sizes("512, 1024,2048").unwrap(),
            vec![512, 1024, 2048]
        );
        assert!(parse_sizes("513").is_err());
        assert!(parse_sizes("8192").is_err());
        assert!(parse_sizes("").is_err());
    }

    #[test]
    fn commit_lines_are_parsed_after_the_offset() {
        let log = "x commit finished took_us=900 ok=true\n\
                   y commit finished took_us=1200 ok=true\n\
                   z other took_us=5\n";
        let from = log.find('y').unwrap();
        assert_eq!(commit_durations_us(log, 0), vec![900.0, 1200.0]);
        assert_eq!(commit_durations_us(log, from), vec![1200.0]);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 99.0), 198.0);
        assert_eq!(percentile(&mut [3.0], 99.0), 3.0);
        assert!(percentile(&mut [], 99.0).is_nan());
    }
}
