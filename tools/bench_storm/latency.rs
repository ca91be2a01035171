//! `--latency N --gap MS`: the everyday case, one port changes on an idle switch.
//!
//! N times: one `ip link set dev <port> mtu <m>` (a different port each time, the MTU toggled), then
//! `--gap` milliseconds of quiet. Measured per change, end to end: from the moment the benchmark's
//! own netlink monitor received the kernel's RTM_NEWLINK to the moment a STATE_DB subscriber received
//! the keyspace notification of the daemon's write to `PORT_TABLE|<port>`. The subscriber works as
//! swss-common's `SubscriberStateTable` does (a pattern subscription to
//! `__keyspace@<STATE_DB>__:PORT_TABLE|*`; the private redis-server has `notify-keyspace-events AKE`,
//! as SONiC's has). Both times are taken right after the receiving thread woke, on the same clock.
//! A write only counts once STATE_DB holds the new MTU (a notification of another write is skipped).

use std::collections::HashMap;
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::guards::{check_stop, now_ns, sh};
use crate::report::median;
use crate::{Args, Bench};

/// STATE_DB's number in the benchmark's database_config.json (setup.rs).
const STATE_DB: i64 = 6;

/// The latencies of one daemon, in ms, in the order measured.
pub struct LatencyResult {
    pub label: String,
    pub ms: Vec<f64>,
    /// Changes whose write was not seen within the timeout.
    pub missed: usize,
}

/// Keyspace notifications for `PORT_TABLE|*` in STATE_DB: (port, receive time in ns), from a
/// thread of its own (it ends when redis-server goes away).
fn subscribe(url: &str) -> Result<Receiver<(String, u64)>> {
    let client = redis::Client::open(url)?;
    let mut con = client
        .get_connection()
        .context("connecting the subscriber")?;
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let pattern = format!("__keyspace@{STATE_DB}__:PORT_TABLE|*");
    thread::spawn(move || {
        let mut ps = con.as_pubsub();
        if let Err(e) = ps.psubscribe(&pattern) {
            let _ = ready_tx.send(Err(anyhow!("PSUBSCRIBE {pattern}: {e}")));
            return;
        }
        let _ = ready_tx.send(Ok(()));
        while let Ok(msg) = ps.get_message() {
            let t = now_ns();
            let channel = msg.get_channel_name();
            if let Some(port) = channel.split_once("PORT_TABLE|").map(|(_, p)| p) {
                if tx.send((port.to_string(), t)).is_err() {
                    return;
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the subscriber did not start"))??;
    Ok(rx)
}

fn state_mtu(con: &mut redis::Connection, port: &str) -> Result<Option<u32>> {
    let v: Option<String> = redis::cmd("HGET")
        .arg(format!("PORT_TABLE|{port}"))
        .arg("mtu")
        .query(con)?;
    Ok(v.and_then(|v| v.parse().ok()))
}

/// Runs the N changes on a started bench (ports phase done) and returns the latencies.
pub fn run(args: &Args, bench: &mut Bench, url: &str, label: &str) -> Result<LatencyResult> {
    let n = args.latency;
    let gap = Duration::from_millis(args.gap_ms);
    let timeout = Duration::from_secs(5);
    let notes = subscribe(url)?;
    let ports = bench.ctx.ports.clone();
    let mut out = LatencyResult {
        label: label.to_string(),
        ms: Vec::with_capacity(n),
        missed: 0,
    };
    let mut mtus: HashMap<String, u32> = HashMap::new();
    // Let the ports phase's writes and commit settle before the first change.
    thread::sleep(gap.max(Duration::from_millis(500)));
    while notes.try_recv().is_ok() {}
    for k in 0..n {
        check_stop()?;
        if let Some(st) = bench.daemon.exited() {
            bail!("the daemon exited ({st}) during the latency run");
        }
        // A different port each time, spread over the table; its MTU toggled 1600 <-> 1700.
        let port = &ports[(k * 7 + k / ports.len()) % ports.len()];
        let mtu = match mtus.get(port) {
            Some(1600) => 1700,
            _ => 1600,
        };
        mtus.insert(port.clone(), mtu);
        let t_before = now_ns();
        sh(Command::new("ip").args([
            "-n",
            &bench.ns.0,
            "link",
            "set",
            "dev",
            port,
            "mtu",
            &mtu.to_string(),
        ]))?;
        // The kernel's notification, as the monitor received it.
        let t_kernel = {
            let deadline = Instant::now() + timeout;
            loop {
                let ev = bench.ctx.monitor.events(t_before)?;
                if let Some(e) = ev.iter().find(|e| &e.name == port) {
                    break Some(e.t_ns);
                }
                if Instant::now() > deadline {
                    break None;
                }
                thread::sleep(Duration::from_micros(200));
            }
        };
        // The daemon's write, as the subscriber received it.
        let deadline = Instant::now() + timeout;
        let mut seen = None;
        while seen.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((p, t)) = notes.recv_timeout(left) else {
                break;
            };
            // A daemon that writes no `mtu` field: its first write after the change counts.
            if &p == port
                && t >= t_before
                && state_mtu(&mut bench.ctx.state, port)?.is_none_or(|m| m == mtu)
            {
                seen = Some(t);
            }
        }
        match (t_kernel, seen) {
            (Some(tk), Some(ts)) => out.ms.push((ts as f64 - tk as f64) / 1e6),
            _ => out.missed += 1,
        }
        thread::sleep(gap);
        while notes.try_recv().is_ok() {}
    }
    Ok(out)
}

/// The p-th percentile (nearest rank).
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// One row per daemon: median, p90, p99, max (ms).
pub fn print(args: &Args, results: &[LatencyResult]) {
    println!();
    println!(
        "latency: {} lone MTU changes per daemon, {} ms apart; kernel notification (the benchmark's \
         monitor) -> STATE_DB PORT_TABLE write (keyspace notification to a subscriber), ms",
        args.latency, args.gap_ms
    );
    println!(
        "{:<28} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "daemon", "n", "min", "median", "p90", "p99", "max", "missed"
    );
    for r in results {
        let min = r.ms.iter().copied().fold(f64::NAN, f64::min);
        println!(
            "{:<28} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7}",
            r.label,
            r.ms.len(),
            min,
            median(&mut r.ms.clone()),
            percentile(&r.ms, 90.0),
            percentile(&r.ms, 99.0),
            percentile(&r.ms, 100.0),
            r.missed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
