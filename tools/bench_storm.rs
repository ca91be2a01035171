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

#![deny(unsafe_code)]

#[path = "common/guards.rs"]
mod guards;
#[path = "bench_storm/latency.rs"]
mod latency;
#[path = "bench_storm/monitor.rs"]
mod monitor;
#[path = "bench_storm/observe.rs"]
mod observe;
#[path = "bench_storm/plot.rs"]
mod plot;
#[path = "common/plot_page.rs"]
mod plot_page;
#[path = "bench_storm/repeat.rs"]
mod repeat;
#[path = "bench_storm/report.rs"]
mod report;
#[path = "bench_storm/scale.rs"]
mod scale;
#[path = "bench_storm/setup.rs"]
mod setup;
#[path = "common/switch.rs"]
mod switch;
#[path = "bench_storm/timeline.rs"]
mod timeline;
#[path = "bench_storm/warm.rs"]
mod warm;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use guards::{check_stop, now_ns, sh, signal, tail, wait_until, Netns, Proc, TempDir, STOP};
use monitor::{Monitor, MONITOR_ARG};
use observe::{
    cpu_seconds, daemon_listening, kernel_views, netlink_drops, status_kib, wait_converged, Ctx,
};
use report::{median, ms, per_change_us, print_storm, row, StormResult};
use setup::{
    builtin_consumer, connect, database_config, ip_batch, spawn_ip_batch, storm_batch, Consumer,
};

#[derive(Parser, Debug, Clone)]
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
    /// `--redis-url {url} --state-dir {state} --metrics-enabled false --log-output stderr` (also
    /// spelled `builtin`). Repeatable: each daemon runs in turn, in a fresh namespace and Redis, in
    /// every mode, and each one's rows are printed.
    #[arg(long)]
    daemon: Vec<String>,
    /// Latency mode: N lone MTU changes, one port at a time, `--gap` ms apart; prints the median,
    /// p90, p99 and max of kernel notification -> STATE_DB write seen by a keyspace subscriber,
    /// per daemon (see tools/bench_storm/latency.rs). No storm is run.
    #[arg(long, default_value_t = 0)]
    latency: usize,
    /// Quiet time after each change of `--latency`, in ms.
    #[arg(long = "gap", default_value_t = 200)]
    gap_ms: u64,
    /// Draw the first storm to this SVG file: the kernel's link notifications and the ports where
    /// STATE_DB disagrees with the kernel, over time. portsyncd runs first and every `--daemon` after it,
    /// all on the same axes.
    #[arg(long)]
    plot: Option<PathBuf>,
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
    /// After the storms, warm-restart the daemon K times (SIGTERM, SONiC's warm flag, start again):
    /// time from process start to `WARM_RESTART_TABLE|portsyncd state reconciled`, and the Redis
    /// writes of each restart.
    #[arg(long, default_value_t = 0)]
    warm_restarts: usize,
    #[command(flatten)]
    rep: repeat::RepeatArgs,
    /// Port counts to run one after the other (e.g. `512,1024,2048,4096`): one table row per size
    /// (see tools/bench_storm/scale.rs); `--ports` is then ignored.
    #[arg(long)]
    scale: Option<String>,
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(MONITOR_ARG) {
        if let Err(e) = monitor::monitor_main() {
            eprintln!("bench-storm monitor: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("bench-storm: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
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
    if let Some(sizes) = &args.scale {
        return scale::run(args, &scale::parse_sizes(sizes)?);
    }
    if args.latency > 0 {
        return run_latency(args);
    }
    if args.rep.cold_repeat > 0 {
        let tmp = TempDir(std::env::temp_dir().join(format!("bench-storm-{}", std::process::id())));
        fs::create_dir_all(&tmp.0)?;
        return repeat::run(args, &tmp.0);
    }
    let portsyncd = builtin_cmdline("")?;
    let mut traces = Vec::new();
    for (i, (label, cmd)) in plot::daemons(&args.daemon, args.plot.is_some(), &portsyncd)
        .into_iter()
        .enumerate()
    {
        let tmp =
            TempDir(std::env::temp_dir().join(format!("bench-storm-{}-{i}", std::process::id())));
        fs::create_dir_all(&tmp.0)?;
        let result = Bench::start(args, &cmd, &tmp.0).and_then(|mut bench| bench.run(args));
        match result {
            Ok(Some(mut trace)) => {
                trace.label = label;
                traces.push(trace);
            }
            Ok(None) => {}
            Err(e) => {
                let log = tail(&tmp.0.join("daemon.log"));
                if !log.is_empty() {
                    eprintln!("bench-storm: last lines of the daemon's log:\n{log}");
                }
                return Err(e);
            }
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "bench-storm: {} ports, {} link changes{}",
            args.ports,
            args.flaps,
            if args.overrun {
                ", daemon SIGSTOPped during the storm"
            } else {
                ""
            }
        );
        plot::draw_storm(path, &traces, &title)?;
        println!();
        println!("  plot written to {}", path.display());
    }
    Ok(())
}

/// The sibling `portsyncd`'s command line for the benchmark (`extra`: more options).
pub fn builtin_cmdline(env: &str) -> Result<String> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no directory for the current executable"))?;
    Ok(format!(
        "{env}{} --redis-url {{url}} --state-dir {{state}} --metrics-enabled false --log-output stderr",
        exe_dir.join("portsyncd").display()
    ))
}

/// `--latency`: every daemon in turn, each in a fresh namespace and Redis; one row each.
fn run_latency(args: &Args) -> Result<()> {
    let portsyncd = builtin_cmdline("")?;
    let mut results = Vec::new();
    for (i, (label, cmd)) in plot::daemons(&args.daemon, false, &portsyncd)
        .into_iter()
        .enumerate()
    {
        check_stop()?;
        let tmp =
            TempDir(std::env::temp_dir().join(format!("bench-storm-{}-{i}", std::process::id())));
        fs::create_dir_all(&tmp.0)?;
        let result = Bench::start(args, &cmd, &tmp.0).and_then(|mut bench| {
            bench.ports_phase(args)?;
            let url = bench.url.clone();
            latency::run(args, &mut bench, &url, &label)
        });
        match result {
            Ok(r) => {
                latency::print(args, std::slice::from_ref(&r));
                results.push(r);
            }
            Err(e) => {
                let log = tail(&tmp.0.join("daemon.log"));
                if !log.is_empty() {
                    eprintln!("bench-storm: last lines of the daemon's log:\n{log}");
                }
                return Err(e);
            }
        }
    }
    if results.len() > 1 {
        latency::print(args, &results);
    }
    Ok(())
}

/// Everything a run owns. Fields drop in declaration order: the daemon first, redis-server last.
struct Bench {
    daemon: Proc,
    /// The daemon's command line (for restarts).
    cmdline: String,
    ctx: Ctx,
    _standin: Option<Proc>,
    _consumer: Option<Consumer>,
    ns: Netns,
    _redis: Proc,
    dir: PathBuf,
    /// The private redis-server (`unix://…`).
    url: String,
    monitor_pid: u32,
    /// The first storm, when `--plot` asks for it.
    trace: Option<plot::StormTrace>,
}

impl Bench {
    /// redis-server + CONFIG_DB, namespace, consumer, monitor, daemon; returns once the daemon has
    /// published APPL_DB and finished its initial netlink dump.
    fn start(args: &Args, template: &str, dir: &Path) -> Result<Bench> {
        let exe_dir = std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("no directory for the current executable"))?;
        let sock = dir.join("redis.sock");
        let url = format!("unix://{}", sock.display());
        let ports: Vec<String> = (0..args.ports)
            .map(|i| format!("Ethernet{}", i * 4))
            .collect();

        let redis = start_redis(&sock, dir)?;
        seed_config_db(&url, &ports)?;

        let ns = Netns(format!("psd-bench-{}", std::process::id()));
        sh(Command::new("ip").args(["netns", "add", &ns.0]))?;
        sh(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;

        // The consumer of APPL_DB PORT_TABLE.
        let standin_path = match args.standin.as_str() {
            "builtin" => None,
            "auto" => Some(exe_dir.join("orchagent-standin")).filter(|p| p.exists()),
            p => Some(PathBuf::from(p)),
        };
        let (standin, consumer, consumer_desc) = match standin_path {
            Some(p) => {
                let child = Command::new(&p)
                    .args(["--redis-url", &url])
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(dir.join("standin.log"))?)
                    .process_group(0)
                    .spawn()
                    .with_context(|| format!("starting {}", p.display()))?;
                let desc = p.display().to_string();
                (
                    Some(Proc {
                        name: "orchagent-standin",
                        child,
                    }),
                    None,
                    desc,
                )
            }
            None => (
                None,
                Some(builtin_consumer(url.clone())),
                "built-in Lua consumer".into(),
            ),
        };

        let monitor = Monitor::start(&ns.0)?;
        let monitor_pid = monitor.pid();

        // A SONiC database_config.json for implementations that read one instead of --redis-url.
        let dbconfig = dir.join("database_config.json");
        fs::write(&dbconfig, database_config(&sock))?;
        let cmdline = template
            .replace("{url}", &url)
            .replace("{sock}", &sock.display().to_string())
            .replace("{dbconfig}", &dbconfig.display().to_string())
            .replace("{state}", &dir.join("state").display().to_string())
            .replace("{dir}", &dir.display().to_string());
        let daemon_log = dir.join("daemon.log");
        let log = fs::File::create(&daemon_log)?;
        let daemon = Proc {
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
        if args.latency > 0 {
            println!(
                "bench-storm: {} ports ({} veth pairs), {} lone MTU changes {} ms apart",
                args.ports,
                args.ports / 2,
                args.latency,
                args.gap_ms
            );
        } else {
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
        }
        println!("  daemon:   {cmdline}");
        println!("  consumer: {consumer_desc}");

        let ctx = Ctx {
            ns: ns.0.clone(),
            ports,
            state: connect(&url, 6)?,
            monitor,
            daemon_log,
        };
        let mut bench = Bench {
            daemon,
            cmdline: cmdline.clone(),
            ctx,
            _standin: standin,
            _consumer: consumer,
            ns,
            _redis: redis,
            dir: dir.to_path_buf(),
            url: url.clone(),
            monitor_pid,
            trace: None,
        };
        bench.wait_ready(args, &url)?;
        Ok(bench)
    }

    fn timeout(args: &Args) -> Duration {
        Duration::from_secs(args.timeout_secs)
    }

    /// Waits for APPL_DB (cold start + consumer) and for the end of the daemon's initial dump: links
    /// created before that would be "left over from an earlier run" to a cold start (set admin-down and
    /// ignored), see `daemon_listening`.
    fn wait_ready(&mut self, args: &Args, url: &str) -> Result<()> {
        let mut appl = connect(url, 0)?;
        let (daemon, ctx) = (&mut self.daemon, &self.ctx);
        let t_appl = wait_until(
            "APPL_DB PORT_TABLE with every port",
            Self::timeout(args),
            || {
                if let Some(st) = daemon.exited() {
                    bail!("the daemon exited ({st}) during start-up");
                }
                let mut pipe = redis::pipe();
                for p in &ctx.ports {
                    pipe.cmd("EXISTS").arg(format!("PORT_TABLE:{p}"));
                }
                let e: Vec<i64> = pipe.query(&mut appl)?;
                Ok(e.iter().all(|&x| x == 1))
            },
        )?;
        let (ns, monitor_pid) = (&self.ns.0, self.monitor_pid);
        let t_listen = wait_until(
            "the daemon's initial netlink dump",
            Self::timeout(args),
            || {
                if !daemon_listening(ns, monitor_pid)? {
                    return Ok(false);
                }
                thread::sleep(Duration::from_millis(300));
                daemon_listening(ns, monitor_pid)
            },
        )?;
        println!();
        println!("  start-up");
        row(
            "daemon start -> every port in APPL_DB (consumed)",
            t_appl.as_secs_f64() * 1e3,
            "ms",
        );
        row(
            "  then: daemon netlink socket idle in link group (+300 ms)",
            t_listen.as_secs_f64() * 1e3,
            "ms",
        );
        Ok(())
    }

    fn run(&mut self, args: &Args) -> Result<Option<plot::StormTrace>> {
        self.ports_phase(args)?;
        let mut results = Vec::new();
        for k in 0..args.repeat {
            check_stop()?;
            results.push(self.storm(args, k)?);
        }
        self.summary(args, &results);
        let mut warm = Vec::new();
        for k in 0..args.warm_restarts {
            check_stop()?;
            let r = warm::restart(
                &mut self.daemon,
                &self.ns.0,
                &self.cmdline,
                &self.ctx.daemon_log,
                &mut self.ctx.state,
                &self.dir,
                Self::timeout(args),
            )?;
            warm::print(k, &r);
            warm.push(r);
        }
        warm::summary(&warm);
        Ok(self.trace.take())
    }

    /// Writes the `ip -batch` file that creates N/2 veth pairs (both ends ports) and sets them up.
    fn write_create_batch(&self) -> Result<PathBuf> {
        let mut batch = String::new();
        for pair in self.ctx.ports.chunks(2) {
            let _ = writeln!(
                batch,
                "link add {} type veth peer name {}",
                pair[0], pair[1]
            );
        }
        for p in &self.ctx.ports {
            let _ = writeln!(batch, "link set dev {p} up");
        }
        let batch_file = self.dir.join("create.batch");
        fs::write(&batch_file, &batch)?;
        Ok(batch_file)
    }

    /// Creates N/2 veth pairs (both ends ports) and sets them up in one batch.
    fn ports_phase(&mut self, args: &Args) -> Result<()> {
        let batch_file = self.write_create_batch()?;
        let t0 = now_ns();
        let creating = spawn_ip_batch(&self.ns.0, &batch_file)?;
        let conv = wait_converged(
            &mut self.ctx,
            Self::timeout(args),
            &mut self.daemon,
            Some(creating),
        )?;
        row(
            "ip -batch: create + up of all links",
            ms(conv.batch_end_ns.saturating_sub(t0)),
            "ms",
        );
        row(
            "link creation start -> STATE_DB converged",
            ms(conv.converged_ns.saturating_sub(t0)),
            "ms",
        );
        row(
            "  of which after the kernel's last notification",
            ms(conv.converged_ns.saturating_sub(conv.counts.last_ns)),
            "ms",
        );
        Ok(())
    }

    /// One storm: generate, apply (with the daemon stopped under --overrun), wait for convergence.
    fn storm(&mut self, args: &Args, k: usize) -> Result<StormResult> {
        let timeout = Self::timeout(args);
        let dpid = self.daemon.pid();
        let kernel = kernel_views(&self.ns.0, &self.ctx.ports)?;
        let storm = storm_batch(
            &self.ctx.ports,
            &kernel,
            args.flaps,
            args.seed.wrapping_add(k as u64),
        );
        let storm_file = self.dir.join(format!("storm{k}.batch"));
        fs::write(&storm_file, storm)?;
        let before = self.ctx.monitor.counts()?;
        let cpu0 = cpu_seconds(dpid)?;
        let tb0 = now_ns();
        let (running, mut tb1, t_cont) = if !args.overrun {
            (Some(spawn_ip_batch(&self.ns.0, &storm_file)?), 0, None)
        } else {
            signal(dpid, "STOP")?;
            ip_batch(&self.ns.0, &storm_file)?;
            let tb1 = now_ns();
            // Let the kernel finish (linkwatch) so the whole storm lands while the daemon is stopped.
            let monitor = &mut self.ctx.monitor;
            wait_until("the kernel to go quiet", timeout, || {
                Ok(now_ns().saturating_sub(monitor.counts()?.last_ns) >= 1_200_000_000)
            })?;
            signal(dpid, "CONT")?;
            (None, tb1, Some(now_ns()))
        };
        let conv = wait_converged(&mut self.ctx, timeout, &mut self.daemon, running)?;
        if args.plot.is_some() && k == 0 {
            let events = self.ctx.monitor.events(tb0)?;
            self.trace = Some(plot::StormTrace {
                label: String::new(),
                start_ns: tb0,
                disagreement: timeline::disagreement(
                    &self.ctx.ports,
                    &kernel,
                    &events,
                    &conv.state_changes,
                    &conv.poll_ns,
                ),
                notifications: events.iter().map(|e| (e.t_ns, 1)).collect(),
                converged_ns: conv.converged_ns,
            });
        }
        if !args.overrun {
            tb1 = conv.batch_end_ns;
        }
        let cpu1 = cpu_seconds(dpid)?;
        let last = conv.counts.last_ns;
        let r = StormResult {
            batch_ms: ms(tb1 - tb0),
            notifications: (conv.counts.newlink + conv.counts.dellink)
                - (before.newlink + before.dellink),
            lost: conv.counts.enobufs - before.enobufs,
            last_after_batch_ms: ms(last.saturating_sub(tb1)),
            converge_ms: ms(conv.converged_ns.saturating_sub(t_cont.unwrap_or(last))),
            cpu_s: cpu1.0 - cpu0.0,
            cpu_sched_s: cpu1.1.zip(cpu0.1).map(|(a, b)| a - b),
        };
        println!();
        println!(
            "  storm {} of {} ({} polls of STATE_DB, {:.1} ms apart on average; {})",
            k + 1,
            args.repeat,
            conv.polls,
            ms(conv.mean_poll_ns),
            if conv.resolution_ns == 0 {
                "matched at the first poll: the time below is an upper bound".to_string()
            } else {
                format!("resolution {:.1} ms", ms(conv.resolution_ns))
            }
        );
        print_storm(&r, args.overrun, args.flaps);
        Ok(r)
    }

    fn summary(&self, args: &Args, results: &[StormResult]) {
        let dpid = self.daemon.pid();
        println!();
        if args.repeat > 1 {
            println!("  medians over {} storms", args.repeat);
            let med = |f: &dyn Fn(&StormResult) -> f64| {
                median(&mut results.iter().map(f).collect::<Vec<_>>())
            };
            row(
                "converged after the last change",
                med(&|r| r.converge_ms),
                "ms",
            );
            row(
                "daemon CPU per kernel link notification",
                med(&per_change_us),
                "µs",
            );
            row(
                "daemon CPU per `ip link set` command",
                med(&|r| r.cpu_best() * 1e6 / args.flaps as f64),
                "µs",
            );
        }
        let show = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        println!(
            "  {:<58} {:>9} KiB",
            "daemon peak RSS (VmHWM)",
            show(status_kib(dpid, "VmHWM:"))
        );
        println!(
            "  {:<58} {:>9} KiB",
            "daemon RSS now (VmRSS)",
            show(status_kib(dpid, "VmRSS:"))
        );
        println!(
            "  {:<58} {:>9}",
            "netlink drops counted by the kernel (daemon side)",
            show(netlink_drops(&self.ns.0, self.monitor_pid))
        );
    }
}

/// redis-server, private, on a unix socket; SONiC's keyspace notifications on.
fn start_redis(sock: &Path, dir: &Path) -> Result<Proc> {
    let redis = Proc {
        name: "redis-server",
        child: switch::spawn_redis(sock, dir, &["--notify-keyspace-events", "AKE"])?,
    };
    wait_until(
        "redis-server",
        Duration::from_secs(10),
        || Ok(sock.exists()),
    )?;
    Ok(redis)
}

/// CONFIG_DB `PORT|<port>` like a real switch's port table (FEC on).
fn seed_config_db(url: &str, ports: &[String]) -> Result<()> {
    let mut config = loop {
        check_stop()?;
        match connect(url, 4) {
            Ok(c) => break c,
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    };
    switch::seed_port_table(&mut config, ports, &[("fec", "rs")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{hash_views, View};

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
