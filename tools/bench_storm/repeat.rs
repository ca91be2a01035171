//! `--cold-repeat N`: the 2048-port cold start and a storm, N times, each from scratch (fresh
//! redis-server, fresh namespace, fresh daemon with an empty state dir). Every run where STATE_DB did
//! not equal the kernel within `--converge-limit-secs` (10 s) is reported, with its evidence dumped to a
//! directory of its own; at the end, the distribution of the convergence times.
//!
//! A run: the daemon starts and finishes its initial dump (`Bench::start`), then all N/2 veth pairs are
//! created and set up with one `ip -batch`; measured from the batch's start to the moment STATE_DB
//! equals `ip -json link show` for good. Then one storm of `--flaps` changes; measured from the kernel's
//! last notification.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[path = "evidence.rs"]
mod evidence;

use evidence::dump_evidence;

use crate::guards::{check_stop, now_ns, signal, wait_until, TempDir};
use crate::observe::{kernel_views, netlink_drops, wait_converged};
use crate::report::ms;
use crate::setup::{spawn_ip_batch, storm_batch};
use crate::{Args, Bench};

/// What the convergence wait needs after the batch beyond the limit: linkwatch's tail, 1.2 s of
/// kernel quiet, 200 ms of holding.
const SETTLE: Duration = Duration::from_secs(5);
/// Where the daemon's metrics listen inside the namespace (each run has a namespace of its own).
pub const METRICS_ADDR: &str = "127.0.0.1:9810";

#[derive(ClapArgs, Debug, Clone)]
pub struct RepeatArgs {
    /// Repeat the whole cold start (fresh redis, namespace and daemon; links created in one
    /// `ip -batch` after the daemon's initial dump) and one storm N times; report every run that did
    /// not converge within --converge-limit-secs and the distribution of convergence times.
    #[arg(long, default_value_t = 0)]
    pub cold_repeat: usize,
    /// A run that has not converged after this many seconds is a failure (its evidence is dumped).
    #[arg(long, default_value_t = 10)]
    pub converge_limit_secs: u64,
    /// With --cold-repeat: the daemon's --log-level (debug keeps every STATE_DB write in the log).
    #[arg(long, default_value = "debug")]
    pub daemon_log_level: String,
    /// With --cold-repeat: SIGSTOP the daemon when the storm starts and SIGCONT it after this many
    /// milliseconds while the storm goes on: the backlog overruns the daemon's receive buffer (with
    /// enough --flaps) and changes keep coming while it works through it.
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    /// Set when the daemon is this build's portsyncd (its log lines are known).
    #[arg(skip)]
    pub own_daemon: bool,
    /// With --cold-repeat: where the evidence of failing runs goes (default: a directory in /tmp
    /// named after this process).
    #[arg(long)]
    pub evidence_dir: Option<PathBuf>,
}

struct RunResult {
    /// Link creation start -> STATE_DB converged (None: not converged within --timeout-secs).
    create_ms: Option<f64>,
    /// The kernel's last notification of the creation -> STATE_DB converged.
    create_after_kernel_ms: Option<f64>,
    /// The storm's last notification -> STATE_DB converged; None: not within the limit.
    storm_ms: Option<f64>,
    load: String,
    failure: Option<String>,
}

/// Runs `args.rep.cold_repeat` cold starts and storms and prints the report.
pub fn run(args: &Args, tmp: &Path) -> Result<()> {
    let n = args.rep.cold_repeat;
    let limit = Duration::from_secs(args.rep.converge_limit_secs);
    let evidence = args.rep.evidence_dir.clone().unwrap_or_else(|| {
        PathBuf::from(format!("/tmp/bench-storm-evidence-{}", std::process::id()))
    });
    let exe = std::env::current_exe()?.with_file_name("portsyncd");
    let builtin = format!(
        "{} --redis-url {{url}} --state-dir {{state}} --metrics-listen {METRICS_ADDR} --log-level {} --log-output stderr",
        exe.display(),
        args.rep.daemon_log_level
    );
    // Every daemon in turn (`builtin`, or none given: this build's portsyncd).
    for (label, template) in crate::plot::daemons(&args.daemon, false, &builtin) {
        let mut per_run = args.clone();
        per_run.rep.own_daemon = template == builtin;
        per_run.repeat = 1;
        println!("=== {label} ===");
        run_one(&per_run, &template, tmp, n, limit, &evidence.join(&label))?;
    }
    Ok(())
}

/// The cold starts of one daemon.
fn run_one(
    per_run: &Args,
    template: &str,
    tmp: &Path,
    n: usize,
    limit: Duration,
    evidence: &Path,
) -> Result<()> {
    let args = per_run;
    println!(
        "bench-storm: {n} cold starts of {} ports + one storm of {} changes each; limit {:?}",
        args.ports, args.flaps, limit
    );
    let mut results = Vec::with_capacity(n);
    for k in 0..n {
        check_stop()?;
        let dir = TempDir(tmp.join(format!("run{k}")));
        fs::create_dir_all(&dir.0)?;
        let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let r = match one_run(
            args,
            template,
            &dir.0,
            limit,
            &evidence.join(format!("run{k}")),
            load.clone(),
        ) {
            Ok(r) => r,
            Err(e) => RunResult {
                create_ms: None,
                create_after_kernel_ms: None,
                storm_ms: None,
                load,
                failure: Some(format!("run aborted: {e:#}")),
            },
        };
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
        println!(
            "== run {:>2}/{n}: {}: creation -> converged {:>9} ({:>7} after the kernel's last \
             notification), storm -> converged {:>9}, load {}{}",
            k + 1,
            if r.failure.is_some() { "FAILED" } else { "ok" },
            show(r.create_ms),
            show(r.create_after_kernel_ms),
            show(r.storm_ms),
            r.load,
            r.failure
                .as_deref()
                .map_or(String::new(), |f| format!("\n   {f}"))
        );
        results.push(r);
    }
    summary(&results, limit, evidence);
    Ok(())
}

fn one_run(
    args: &Args,
    template: &str,
    dir: &Path,
    limit: Duration,
    evidence: &Path,
    load: String,
) -> Result<RunResult> {
    let mut bench = Bench::start(args, template, dir)?;
    if args.rep.own_daemon {
        // Bench::start judged the end of the initial dump from /proc/net/netlink (any daemon); ours
        // also says so. A link created before that would be an "old netdev" to a cold start.
        let log = bench.ctx.daemon_log.clone();
        wait_until(
            "the daemon's initial sync",
            Duration::from_secs(args.timeout_secs),
            || Ok(fs::read_to_string(&log)?.contains("initial sync complete")),
        )?;
    }
    let mut result = RunResult {
        create_ms: None,
        create_after_kernel_ms: None,
        storm_ms: None,
        load,
        failure: None,
    };
    let limit_ms = limit.as_secs_f64() * 1e3;
    let timeout = Duration::from_secs(args.timeout_secs);
    // 1. Every link, created and set up in one batch after the initial dump.
    let batch_file = bench.write_create_batch()?;
    match apply_and_wait(&mut bench, &batch_file, 0, limit, timeout) {
        Ok(p) => {
            result.create_ms = Some(ms(p.converged_ns.saturating_sub(p.started_ns)));
            result.create_after_kernel_ms = Some(p.after_kernel_ms);
            if p.after_kernel_ms > limit_ms {
                result.failure = Some(format!(
                    "creation converged {:.0} ms after the kernel's last notification; evidence in {}",
                    p.after_kernel_ms,
                    evidence.display()
                ));
                dump_evidence(&mut bench, evidence, "creation (converged late)")?;
                return Ok(result);
            }
        }
        Err(e) => {
            dump_evidence(&mut bench, evidence, &format!("creation: {e:#}"))?;
            result.failure = Some(format!(
                "creation: {e:#}; evidence in {}",
                evidence.display()
            ));
            return Ok(result);
        }
    }
    // 2. One storm (the daemon stopped for its first --stall-ms).
    let kernel = kernel_views(&bench.ns.0, &bench.ctx.ports)?;
    let storm = storm_batch(&bench.ctx.ports, &kernel, args.flaps, args.seed);
    let storm_file = dir.join("storm.batch");
    fs::write(&storm_file, storm)?;
    match apply_and_wait(&mut bench, &storm_file, args.rep.stall_ms, limit, timeout) {
        Ok(p) if p.after_kernel_ms <= limit_ms => result.storm_ms = Some(p.after_kernel_ms),
        Ok(p) => {
            result.failure = Some(format!(
                "storm converged {:.0} ms after the kernel's last notification; evidence in {}",
                p.after_kernel_ms,
                evidence.display()
            ));
            dump_evidence(&mut bench, evidence, "storm (converged late)")?;
        }
        Err(e) => {
            result.failure = Some(format!("storm: {e:#}; evidence in {}", evidence.display()));
            dump_evidence(&mut bench, evidence, &format!("storm: {e:#}"))?;
        }
    }
    Ok(result)
}

struct Phase {
    started_ns: u64,
    converged_ns: u64,
    after_kernel_ms: f64,
}

/// Applies `batch` with `ip -batch` (the daemon SIGSTOPped for its first `stall_ms`), waits for the
/// batch to end (under load it may take far longer than the limit: the kernel's time, not the
/// daemon's), then waits for STATE_DB to equal the kernel: up to `limit` plus the settling time
/// after the kernel's last notification, and at most `timeout` after the batch.
fn apply_and_wait(
    bench: &mut Bench,
    batch: &Path,
    stall_ms: u64,
    limit: Duration,
    timeout: Duration,
) -> Result<Phase> {
    let before = bench.ctx.monitor.counts()?;
    let started_ns = now_ns();
    let dpid = bench.daemon.pid();
    if stall_ms > 0 {
        signal(dpid, "STOP")?;
    }
    let child = spawn_ip_batch(&bench.ns.0, batch);
    if stall_ms > 0 {
        thread::sleep(Duration::from_millis(stall_ms));
        signal(dpid, "CONT")?;
    }
    let st = child?.wait()?;
    if !st.success() {
        bail!("ip -batch failed ({st})");
    }
    let batch_ms = ms(now_ns().saturating_sub(started_ns));
    // The limit counts from the kernel's last notification: while the kernel is still notifying
    // (linkwatch can trail a large batch by many seconds under load), keep waiting, up to
    // --timeout-secs after the batch.
    let give_up = Instant::now() + timeout;
    let conv = loop {
        match wait_converged(&mut bench.ctx, limit + SETTLE, &mut bench.daemon, None) {
            Ok(c) => break c,
            Err(e) => {
                let last = bench.ctx.monitor.counts()?.last_ns;
                let quiet = Duration::from_nanos(now_ns().saturating_sub(last));
                if quiet >= limit || Instant::now() >= give_up {
                    return Err(e);
                }
            }
        }
    };
    println!(
        "  {}: ip -batch {batch_ms:.0} ms, {} kernel notifications, daemon socket drops {:?}",
        batch
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("batch"),
        conv.counts.newlink + conv.counts.dellink - before.newlink - before.dellink,
        netlink_drops(&bench.ns.0, bench.monitor_pid)
    );
    Ok(Phase {
        started_ns,
        converged_ns: conv.converged_ns,
        after_kernel_ms: ms(conv.converged_ns.saturating_sub(conv.counts.last_ns)),
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn distribution(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        println!("  {name:<40} no run converged");
        return;
    }
    println!(
        "  {name:<40} n={:<3} min {:>7.0}  median {:>7.0}  p90 {:>7.0}  max {:>7.0} ms",
        v.len(),
        v[0],
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        v[v.len() - 1]
    );
}

fn summary(results: &[RunResult], limit: Duration, evidence: &Path) {
    let failed: Vec<(usize, &RunResult)> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.failure.is_some())
        .collect();
    println!();
    println!(
        "cold-repeat summary: {} runs, {} converged within {limit:?} (creation and storm), {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    for (k, r) in &failed {
        println!(
            "  run {}: {}",
            k + 1,
            r.failure.as_deref().unwrap_or_default()
        );
    }
    if !failed.is_empty() {
        println!("  evidence under {}", evidence.display());
    }
    distribution(
        "link creation start -> STATE_DB converged",
        results.iter().filter_map(|r| r.create_ms).collect(),
    );
    distribution(
        "  after the kernel's last notification",
        results
            .iter()
            .filter_map(|r| r.create_after_kernel_ms)
            .collect(),
    );
    let slow = results
        .iter()
        .filter(|r| r.create_ms.is_some_and(|v| v > limit.as_secs_f64() * 1e3))
        .count();
    if slow > 0 {
        println!(
            "  {slow} run(s) took longer than {limit:?} from the batch's start, with the kernel still \
             notifying (see the load on each run's line)"
        );
    }
    distribution(
        "storm: last notification -> converged",
        results.iter().filter_map(|r| r.storm_ms).collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
