//! The real `portsyncd` binary (and the orchagent stand-in) as child processes for integration tests.
//!
//! The daemon runs inside a test's private network namespace (`ip netns exec`, which execs, so the
//! child's pid is the daemon's); Redis is reached over a unix socket, which crosses namespaces.

// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` (e.g. libc::SIGSTOP) to `pid`.
pub fn signal(pid: u32, sig: i32) {
    let name = match sig {
        libc::SIGKILL => "KILL",
        libc::SIGTERM => "TERM",
        libc::SIGSTOP => "STOP",
        libc::SIGCONT => "CONT",
        libc::SIGINT => "INT",
        _ => panic!("unsupported signal {sig}"),
    };
    let st = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{name} {pid}");
}

/// A running portsyncd.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    pub netns: String,
    pub metrics_port: u16,
}

static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn next_metrics_port() -> u16 {
    // Each netns has its own loopback, so ports only need to differ within one test's namespace.
    19810 + PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000
}

impl Daemon {
    /// Starts `portsyncd --redis-url URL --state-dir DIR ... extra` in `netns`, logging to `log`.
    pub fn start(netns: &str, redis_url: &str, state_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_with_env(netns, redis_url, state_dir, extra, &[])
    }

    pub fn start_with_env(
        netns: &str,
        redis_url: &str,
        state_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let metrics_port = next_metrics_port();
        let log = state_dir.with_extension(format!("log.{}", metrics_port));
        let out = File::create(&log).expect("create daemon log");
        let err = out.try_clone().expect("clone log");
        let listen = format!("127.0.0.1:{metrics_port}");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_portsyncd")])
            .args(["--redis-url", redis_url])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--metrics-listen", &listen, "--log-level", "debug"])
            .args(["--log-output", "stderr"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn portsyncd");
        Daemon {
            child: Some(child),
            log,
            netns: netns.to_string(),
            metrics_port,
        }
    }

    /// Starts `portsyncd ARGS` in `netns` with exactly the given arguments (no `--log-level` or
    /// `--log-output` added), stdout to `log` and stderr to `log` + `.stderr`.
    pub fn start_raw(netns: &str, log: &Path, args: &[&str]) -> Daemon {
        let out = File::create(log).expect("create daemon log");
        let err = File::create(log.with_extension("stderr")).expect("create daemon stderr");
        let child = Command::new("ip")
            .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_portsyncd")])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("PORTSYNCD_LOG_LEVEL")
            .env_remove("PORTSYNCD_LOG_OUTPUT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn portsyncd");
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
            netns: netns.to_string(),
            metrics_port: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().contains(needle))
    }

    /// SIGTERM, then waits for the exit status (panics after 20 s).
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        self.wait(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("portsyncd did not exit after SIGTERM\n{}", self.log_text()))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET /metrics from inside the namespace.
    pub fn metrics(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-sf",
                "--max-time",
                "5",
            ])
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One metric series' value (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        parse_metric(&self.metrics(), series)
    }
}

/// The value of `series` (exact name with labels) in a Prometheus text page.
pub fn parse_metric(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The orchagent stand-in, consuming APPL_DB `PORT_TABLE`.
pub struct Standin(Child);

impl Standin {
    pub fn start(redis_url: &str) -> Standin {
        let child = Command::new(env!("CARGO_BIN_EXE_orchagent-standin"))
            .args(["--redis-url", redis_url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn orchagent-standin");
        Standin(child)
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-cli -s SOCKET -n DB ARGS...`, stdout as text.
pub fn cli(socket: &Path, db: u32, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(socket)
        .args(["-n", &db.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HGETALL as a map.
pub fn hgetall(socket: &Path, db: u32, key: &str) -> BTreeMap<String, String> {
    let text = cli(socket, db, &["--no-raw", "HGETALL", key]);
    let vals: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (_, v) = l.split_once(") ")?;
            Some(v.trim().trim_matches('"').to_string())
        })
        .collect();
    vals.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

pub const APPL_DB: u32 = 0;
pub const CONFIG_DB: u32 = 4;
pub const STATE_DB: u32 = 6;

/// STATE_DB `PORT_TABLE|name`.
pub fn state_port(socket: &Path, name: &str) -> BTreeMap<String, String> {
    hgetall(socket, STATE_DB, &format!("PORT_TABLE|{name}"))
}

/// Seeds CONFIG_DB `PORT|<name>` for each name like a real switch's port table.
pub fn seed_config_ports(socket: &Path, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let lanes = format!("{},{},{},{}", i * 4, i * 4 + 1, i * 4 + 2, i * 4 + 3);
        let alias = format!("etp{}", i + 1);
        let index = (i + 1).to_string();
        cli(
            socket,
            CONFIG_DB,
            &[
                "HSET",
                &format!("PORT|{name}"),
                "admin_status",
                "up",
                "alias",
                &alias,
                "index",
                &index,
                "lanes",
                &lanes,
                "mtu",
                "9100",
                "speed",
                "100000",
                "fec",
                "rs",
            ],
        );
    }
}

/// `(state, oper, admin, mtu)` of a STATE_DB entry, for compact assertions.
pub fn summary(m: &BTreeMap<String, String>) -> (String, String, String, String) {
    let g = |k: &str| m.get(k).cloned().unwrap_or_default();
    (
        g("state"),
        g("netdev_oper_status"),
        g("admin_status"),
        g("mtu"),
    )
}

/// Asserts `series == value` for each pair in a metrics page, showing the page on failure.
pub fn assert_metrics(page: &str, want: &[(&str, f64)]) {
    for (series, value) in want {
        assert_eq!(parse_metric(page, series), *value, "{series}\n{page}");
    }
}
