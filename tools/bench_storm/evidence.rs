//! The evidence of a failing `--cold-repeat` run: the ports that differ in the kernel, STATE_DB and
//! APPL_DB; the daemon's log around them and its warnings; its metrics; `/proc/net/netlink`; the
//! netlink monitor's counts. Written to a directory of its own, its head printed.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::METRICS_ADDR;
use crate::observe::{kernel_views, netlink_drops, state_views, View};
use crate::setup::connect;
use crate::Bench;

/// Daemon log lines kept per differing port.
const LOG_LINES_PER_PORT: usize = 40;
/// Differing ports whose log lines are kept.
const PORTS_WITH_LOG: usize = 8;

/// Writes what a failing run looked like to `out/`: the differing ports in the kernel, STATE_DB and
/// APPL_DB; the daemon's log around them and its warnings; its metrics; `/proc/net/netlink`; the
/// monitor's counts; the whole daemon log.
pub fn dump_evidence(bench: &mut Bench, out: &Path, what: &str) -> Result<()> {
    fs::create_dir_all(out)?;
    let ports = bench.ctx.ports.clone();
    let kernel = kernel_views(&bench.ns.0, &ports)?;
    let state = state_views(&mut bench.ctx.state, &ports)?;
    let mut appl = connect(&redis_url(&bench.dir), 0)?;
    let mut pipe = redis::pipe();
    for p in &ports {
        pipe.cmd("EXISTS").arg(format!("PORT_TABLE:{p}"));
    }
    let appl_exists: Vec<i64> = pipe.query(&mut appl)?;
    let mut r = String::new();
    let _ = writeln!(r, "failure: {what}");
    let _ = writeln!(
        r,
        "load: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let differing: Vec<usize> = (0..ports.len())
        .filter(|&i| kernel[i] != state[i])
        .collect();
    let _ = writeln!(
        r,
        "\n{} of {} ports differ (kernel | STATE_DB | APPL_DB PORT_TABLE):",
        differing.len(),
        ports.len()
    );
    for &i in &differing {
        let _ = writeln!(
            r,
            "  {:<14} kernel {:<48} state {:<48} appl {}",
            ports[i],
            view(&kernel[i]),
            view(&state[i]),
            if appl_exists[i] == 1 {
                "present"
            } else {
                "ABSENT"
            }
        );
    }
    let _ = writeln!(
        r,
        "\nkernel notifications seen by the monitor: {:?}",
        bench.ctx.monitor.counts()?
    );
    let _ = writeln!(
        r,
        "netlink drops of the daemon's socket (/proc/net/netlink): {:?}",
        netlink_drops(&bench.ns.0, bench.monitor_pid)
    );
    let _ = writeln!(
        r,
        "\n/proc/net/netlink in the namespace:\n{}",
        in_ns(&bench.ns.0, &["cat", "/proc/net/netlink"])
    );
    let metrics = in_ns(
        &bench.ns.0,
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            &format!("http://{METRICS_ADDR}/metrics"),
        ],
    );
    let _ = writeln!(
        r,
        "\ndaemon metrics (portsyncd_netlink_*, portsyncd_state_db_*, initial sync):"
    );
    for l in metrics.lines().filter(|l| {
        !l.starts_with('#')
            && (l.contains("netlink") || l.contains("state_db") || l.contains("initial_sync_total"))
    }) {
        let _ = writeln!(r, "  {l}");
    }
    let log = fs::read_to_string(&bench.ctx.daemon_log).unwrap_or_default();
    let _ = writeln!(r, "\ndaemon warnings and netlink lines:");
    for l in log.lines().filter(|l| {
        l.contains("WARN")
            || l.contains("ERROR")
            || l.contains("dump")
            || l.contains("overrun")
            || l.contains("old netdev")
            || l.contains("initial sync")
    }) {
        let _ = writeln!(r, "  {l}");
    }
    for &i in differing.iter().take(PORTS_WITH_LOG) {
        let needle = format!("ifname={} ", ports[i]);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&needle) || l.ends_with(&needle[..needle.len() - 1]))
            .collect();
        let _ = writeln!(
            r,
            "\ndaemon log lines of {} ({} lines, last {LOG_LINES_PER_PORT}):",
            ports[i],
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(LOG_LINES_PER_PORT)..] {
            let _ = writeln!(r, "  {l}");
        }
    }
    fs::write(out.join("report.txt"), &r)?;
    fs::write(out.join("daemon.log"), &log)?;
    fs::write(out.join("metrics.txt"), &metrics)?;
    let _ = fs::copy(bench.dir.join("create.batch"), out.join("create.batch"));
    // The head of the report on stdout: the ports and the counters.
    let head: Vec<&str> = r.lines().take(40).collect();
    println!(
        "  evidence ({}):\n    {}",
        out.display(),
        head.join("\n    ")
    );
    Ok(())
}

fn redis_url(dir: &Path) -> String {
    format!("unix://{}", dir.join("redis.sock").display())
}

fn in_ns(ns: &str, cmd: &[&str]) -> String {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("({e})"))
}

fn view(v: &View) -> String {
    match v {
        View::Absent => "absent".into(),
        View::Present {
            admin_up,
            oper_up,
            mtu,
            state_ok,
        } => format!(
            "admin {} oper {} mtu {mtu}{}",
            if *admin_up { "up" } else { "down" },
            if *oper_up { "up" } else { "down" },
            if *state_ok { "" } else { " state!=ok" }
        ),
    }
}
