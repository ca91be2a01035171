//! `bench-store`: commit latency (p50, p99) for 64, 512 and 2048 ports, open + recover time, open +
//! verify-all time, disk bytes and peak RSS. Each port count runs in its own child process so VmHWM is
//! that run's alone. Prints numbers; asserts nothing. Commits as the daemon does: the first a full
//! set, then only the ports that changed (`Store::commit_changes`).
//!
//! `bench-store [--dir DIR] [--commits N] [--plot FILE.svg]` (DIR must be on a real disk: fsync on tmpfs
//! is free). With `--plot`, the daemon's usual commit (one port changes, JSON export on) and the worst
//! case (every record changes) run at 16 to 4096 ports instead, and their p50/p99 go to FILE.svg.

#![deny(unsafe_code)]

#[path = "bench_store/plot.rs"]
mod plot;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portsyncd::store::{PortRecord, SledBackend, Snapshot, Store, StoreConfig, StoreReader};

/// The state after `round` commits. `all`: every port's record changes each round (the worst case,
/// e.g. the first commit after a cold start). Otherwise one port flaps per round (the daemon's usual
/// commit: one link event).
fn snapshot(ports: usize, round: u64, all: bool) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..ports {
        let name = format!("Ethernet{}", i * 4);
        let down = if all {
            (i as u64 + round).is_multiple_of(7)
        } else {
            i as u64 == round % ports as u64 && round % 2 == 1
        };
        let published = [
            ("admin_status", "up"),
            ("oper_status", if down { "down" } else { "up" }),
            ("mtu", "9100"),
            ("netdev_oper_status", if down { "down" } else { "up" }),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let flags = if all {
            0x11043 ^ (round as u32) << 20
        } else if down {
            0x1003
        } else {
            0x11043
        };
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 10,
                admin_up: true,
                oper_up: !down,
                flags,
                mtu: 9100,
                published,
            },
        );
    }
    s.counters
        .insert("starts_total{mode=\"warm\"}".into(), round);
    s
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run_one(
    dir: &Path,
    ports: usize,
    commits: usize,
    export: bool,
    high_throughput: bool,
    all: bool,
) -> anyhow::Result<()> {
    let state = dir.join(format!(
        "bench-{ports}-{}-{}",
        if export { "export" } else { "noexport" },
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let cfg = StoreConfig {
        json_export: if export {
            Some(state.join("port_state.json"))
        } else {
            None
        },
        cache_capacity_bytes: std::env::var("BENCH_CACHE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2 << 20),
        ..StoreConfig::new(&state)
    };
    let rss_before = vm_hwm_kib();
    let (mut store, _) = if high_throughput {
        // Same commit path over a HighThroughput sled (no pid lock, no ladder extras).
        std::fs::create_dir_all(state.join("sled"))?;
        let b = SledBackend::open_with_mode(
            &state.join("sled"),
            cfg.cache_capacity_bytes,
            sled::Mode::HighThroughput,
        )?;
        Store::with_backend(Box::new(b), cfg.clone())?
    } else {
        Store::open(cfg.clone())?
    };
    let mut lat = Vec::with_capacity(commits);
    let mut prev: Option<Snapshot> = None;
    for i in 0..commits {
        let snap = snapshot(ports, i as u64, all);
        // As the daemon commits: the first a full set, then the changed ports only.
        let changed: Vec<(&str, Option<&PortRecord>)> = match &prev {
            Some(p) => snap
                .ports
                .iter()
                .filter(|(n, r)| p.ports.get(*n) != Some(*r))
                .map(|(n, r)| (n.as_str(), Some(r)))
                .collect(),
            None => snap
                .ports
                .iter()
                .map(|(n, r)| (n.as_str(), Some(r)))
                .collect(),
        };
        let t = Instant::now();
        store.commit_changes(prev.is_none(), changed, &snap.counters)?;
        lat.push(t.elapsed());
        prev = Some(snap);
    }
    drop(store);
    lat.sort();
    if high_throughput {
        println!(
            "ports={ports:5} export={export:5} change={} sled=HighThroughput commit_p50_ms={:.3} commit_p99_ms={:.3} disk_bytes={} vm_hwm_kib={}",
            if all { "all" } else { "one" },
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            dir_bytes(&state),
            vm_hwm_kib()
        );
        std::fs::remove_dir_all(&state)?;
        return Ok(());
    }
    let t = Instant::now();
    let (store, rec) = Store::open(cfg.clone())?;
    let open_recover = t.elapsed();
    assert!(rec.snapshot.is_some());
    drop(store);
    let t = Instant::now();
    let reader = StoreReader::open(&state, cfg.cache_capacity_bytes)?;
    let gens = reader.generations()?;
    let open_verify = t.elapsed();
    assert!(gens.iter().all(|g| g.is_valid()));
    drop(reader);
    println!(
        "ports={ports:5} export={:5} change={} sled=LowSpace commits={commits} commit_p50_ms={:.3} commit_p99_ms={:.3} commit_max_ms={:.3} \
         open_recover_ms={:.2} open_verify_all_ms={:.2} ({} generations) disk_bytes={} vm_hwm_kib={} (at start {})",
        export,
        if all { "all" } else { "one" },
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat[lat.len() - 1]),
        ms(open_recover),
        ms(open_verify),
        gens.len(),
        dir_bytes(&state),
        vm_hwm_kib(),
        rss_before,
    );
    std::fs::remove_dir_all(&state)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(opt("--dir").unwrap_or_else(|| "/var/tmp".into()));
    let commits: usize = opt("--commits").and_then(|c| c.parse().ok()).unwrap_or(300);
    if let Some(p) = opt("--child-ports") {
        let export = opt("--child-export").as_deref() == Some("1");
        let ht = opt("--child-mode").as_deref() == Some("ht");
        let all = opt("--child-change").as_deref() == Some("all");
        return run_one(&dir, p.parse()?, commits, export, ht, all);
    }
    println!(
        "bench-store: dir={} commits per size={commits}",
        dir.display()
    );
    if let Some(svg) = opt("--plot") {
        return plot_sweep(&dir, commits, Path::new(&svg));
    }
    // (JSON export on, sled mode, change per commit). "one": one port flaps per commit (the daemon's
    // usual commit); "all": every record changes every commit (worst case, sled churn).
    let runs = [
        (true, "lowspace", "one"),
        (false, "lowspace", "one"),
        (true, "lowspace", "all"),
        (false, "ht", "one"),
    ];
    for (export, mode, change) in runs {
        for ports in [64, 512, 2048] {
            let n = if change == "all" {
                (commits / 4).max(10)
            } else {
                commits
            };
            let status = Command::new(std::env::current_exe()?)
                .args(["--dir", &dir.to_string_lossy(), "--commits", &n.to_string()])
                .args([
                    "--child-ports",
                    &ports.to_string(),
                    "--child-export",
                    if export { "1" } else { "0" },
                ])
                .args(["--child-mode", mode, "--child-change", change])
                .status()?;
            anyhow::ensure!(status.success(), "child for {ports} ports failed");
        }
    }
    Ok(())
}

/// One child run; returns its result line (also printed).
fn child(
    dir: &Path,
    ports: usize,
    commits: usize,
    export: bool,
    change: &str,
) -> anyhow::Result<String> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--dir",
            &dir.to_string_lossy(),
            "--commits",
            &commits.to_string(),
        ])
        .args(["--child-ports", &ports.to_string()])
        .args(["--child-export", if export { "1" } else { "0" }])
        .args(["--child-mode", "lowspace", "--child-change", change])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "child for {ports} ports failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    Ok(text)
}

/// `--plot`: p50/p99 commit latency at 16..4096 ports, drawn to `svg`.
fn plot_sweep(dir: &Path, commits: usize, svg: &Path) -> anyhow::Result<()> {
    let kinds = [
        (
            "one port changes per commit (the daemon's usual commit)",
            "one",
            commits,
        ),
        (
            "every record changes (worst case)",
            "all",
            (commits / 4).max(10),
        ),
    ];
    let mut series = Vec::new();
    for (label, change, n) in kinds {
        let mut points = Vec::new();
        for ports in [16, 64, 256, 512, 1024, 2048, 4096] {
            let line = child(dir, ports, n, true, change)?;
            points.push(
                plot::parse(ports, &line)
                    .ok_or_else(|| anyhow::anyhow!("no latency in the child's line {line:?}"))?,
            );
        }
        series.push((label.to_string(), points));
    }
    let title = format!(
        "bench-store: commit latency against port count (sled LowSpace, JSON export on, {})",
        dir.display()
    );
    plot::draw(svg, &title, &series)?;
    println!("plot written to {}", svg.display());
    Ok(())
}
