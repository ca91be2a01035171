//! The real processes of a soak: a private redis-server on a unix socket, a network namespace whose
//! veth pairs are the ports, the orchagent stand-in, the state directory on `powercut-fs`, and the
//! daemon. Nothing on the host is touched; everything is removed on drop.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::guards::{check_stop, sh, signal, wait_until, Netns, Proc, TempDir};
use crate::switch;
use crate::watch::Watch;

pub const APPL_DB: i64 = 0;
pub const CONFIG_DB: i64 = 4;
pub const STATE_DB: i64 = 6;
const METRICS_PORT: u16 = 9810;

/// The state directory's disk: `powercut-fs` over a backing directory.
struct Disk {
    mnt: PathBuf,
    proc: Proc,
    stdin: ChildStdin,
    said: Receiver<String>,
}

impl Disk {
    fn mount(fs_bin: &Path, backing: &Path, mnt: &Path) -> Result<Disk> {
        let mut child = Command::new(fs_bin)
            .arg("--backing")
            .arg(backing)
            .arg("--mountpoint")
            .arg(mnt)
            .arg("--stdin-control")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting powercut-fs")?;
        let stdin = child.stdin.take().context("powercut-fs stdin")?;
        let out = child.stdout.take().context("powercut-fs stdout")?;
        let (tx, said) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let disk = Disk {
            mnt: mnt.to_path_buf(),
            proc: Proc {
                name: "powercut-fs",
                child,
            },
            stdin,
            said,
        };
        disk.expect("ready")?;
        Ok(disk)
    }

    fn expect(&self, want: &str) -> Result<()> {
        match self.said.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l == want => Ok(()),
            Ok(l) => bail!("powercut-fs said {l:?}, expected {want:?}"),
            Err(_) => bail!("powercut-fs did not say {want:?}"),
        }
    }

    fn tell(&mut self, line: &str, ack: &str) -> Result<()> {
        writeln!(self.stdin, "{line}").context("powercut-fs control")?;
        self.stdin.flush()?;
        self.expect(ack)
    }

    /// Unmounts (only durable data reaches the backing directory) and waits for the exit. After a
    /// cut the durable state is already in the backing directory, so a filesystem that does not
    /// unmount within 20 s (seen once after a power cut: the FUSE session stayed busy) is killed and
    /// detached lazily; returns whether that was needed.
    fn unmount(&mut self, mnt: &Path) -> Result<bool> {
        let _ = writeln!(self.stdin, "unmount");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.proc.exited().is_none() {
            if Instant::now() > deadline {
                eprintln!("chaos-soak: powercut-fs did not unmount within 20 s; killing it");
                let _ = self.proc.child.kill();
                let _ = self.proc.child.wait();
                let _ = Command::new("umount").arg("-l").arg(mnt).status();
                return Ok(true);
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(false)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.proc.exited().is_none() {
            let mnt = self.mnt.clone();
            let _ = self.unmount(&mnt);
        }
    }
}

/// What the soak runs: paths of the binaries and the size.
pub struct Setup {
    pub portsyncd: PathBuf,
    pub standin: PathBuf,
    pub powercut_fs: PathBuf,
    pub state_tool: PathBuf,
    pub ports: usize,
    pub resync_secs: u64,
}

/// Every process of the soak. Fields drop in declaration order: daemon first, redis last.
pub struct World {
    daemon: Option<Proc>,
    disk: Option<Disk>,
    standin: Option<Proc>,
    pub watch: Option<Watch>,
    ns: Netns,
    redis: Option<Proc>,
    pub dir: TempDir,
    pub setup: Setup,
    pub ports: Vec<String>,
    pub sock: PathBuf,
    pub url: String,
    /// Daemon starts so far (its log is appended to `daemon.log`).
    pub starts: u32,
}

impl World {
    pub fn new(setup: Setup, dir: PathBuf) -> Result<World> {
        fs::create_dir_all(dir.join("disk/state"))?;
        fs::create_dir_all(dir.join("mnt"))?;
        let sock = dir.join("redis.sock");
        let url = format!("unix://{}", sock.display());
        let ports = (0..setup.ports)
            .map(|i| format!("Ethernet{}", i * 4))
            .collect();
        let ns = Netns(format!("chaos-{}", std::process::id()));
        sh(Command::new("ip").args(["netns", "add", &ns.0]))?;
        sh(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;
        let mut w = World {
            daemon: None,
            disk: None,
            standin: None,
            watch: None,
            ns,
            redis: None,
            dir: TempDir(dir),
            setup,
            ports,
            sock,
            url,
            starts: 0,
        };
        w.start_redis()?;
        w.seed_config_db()?;
        w.start_standin()?;
        w.mount()?;
        Ok(w)
    }

    pub fn ns(&self) -> &str {
        &self.ns.0
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.0.join("mnt/state")
    }

    pub fn con(&self, db: i64) -> Result<redis::Connection> {
        let mut con = redis::Client::open(self.url.as_str())?
            .get_connection_with_timeout(Duration::from_secs(5))
            .context("connecting to redis")?;
        con.set_read_timeout(Some(Duration::from_secs(30)))?;
        redis::cmd("SELECT").arg(db).query::<()>(&mut con)?;
        Ok(con)
    }

    // --- redis-server -----------------------------------------------------------------------

    pub fn start_redis(&mut self) -> Result<()> {
        let _ = fs::remove_file(&self.sock);
        let child = switch::spawn_redis(&self.sock, &self.dir.0, &[])?;
        self.redis = Some(Proc {
            name: "redis-server",
            child,
        });
        wait_until("redis-server", Duration::from_secs(10), || {
            Ok(self.con(0).is_ok())
        })?;
        self.watch = Some(Watch::start(&self.sock)?);
        Ok(())
    }

    pub fn redis_pid(&self) -> Result<u32> {
        self.redis
            .as_ref()
            .map(Proc::pid)
            .ok_or_else(|| anyhow!("redis-server is not running"))
    }

    /// SIGKILL and a restart without data on the same socket (MONITOR reattached).
    pub fn restart_redis_empty(&mut self) -> Result<()> {
        self.watch = None;
        if let Some(mut r) = self.redis.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        self.start_redis()
    }

    /// CONFIG_DB `PORT|<port>` for every port, like a switch's port table.
    pub fn seed_config_db(&self) -> Result<()> {
        let mut con = self.con(CONFIG_DB)?;
        switch::seed_port_table(&mut con, &self.ports, &[])
    }

    // --- the orchagent stand-in ---------------------------------------------------------------

    pub fn start_standin(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join("standin.log"))?;
        let child = Command::new(&self.setup.standin)
            .args(["--redis-url", &self.url])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting orchagent-standin")?;
        self.standin = Some(Proc {
            name: "orchagent-standin",
            child,
        });
        Ok(())
    }

    /// Restarts the stand-in if it exited (it may, when redis-server went away).
    pub fn keep_standin(&mut self) -> Result<()> {
        if self.standin.as_mut().is_none_or(|p| p.exited().is_some()) {
            self.start_standin()?;
        }
        Ok(())
    }

    pub fn restart_standin(&mut self) -> Result<()> {
        self.standin = None;
        self.start_standin()
    }

    // --- the state disk -----------------------------------------------------------------------

    fn mount(&mut self) -> Result<()> {
        let d = Disk::mount(
            &self.setup.powercut_fs,
            &self.dir.0.join("disk"),
            &self.dir.0.join("mnt"),
        )?;
        self.disk = Some(d);
        Ok(())
    }

    fn disk(&mut self) -> Result<&mut Disk> {
        self.disk
            .as_mut()
            .ok_or_else(|| anyhow!("state disk not mounted"))
    }

    /// `full`, `read-only` or `writable`.
    pub fn disk_mode(&mut self, mode: &str) -> Result<()> {
        self.disk()?.tell(mode, mode)
    }

    /// Drops the power of the state disk: nothing unsynced survives; every later operation on the
    /// old mount fails.
    pub fn power_cut(&mut self) -> Result<()> {
        self.disk()?.tell("cut", "cut")
    }

    /// Unmount what is left and mount the durable state again; true if the old filesystem had to
    /// be killed.
    pub fn remount(&mut self) -> Result<bool> {
        let mut forced = false;
        if let Some(mut d) = self.disk.take() {
            let mnt = d.mnt.clone();
            forced = d.unmount(&mnt)?;
        }
        self.mount()?;
        Ok(forced)
    }

    /// `portsyncd-state <args>` on the state directory: exit code and stdout.
    pub fn state_tool(&self, args: &[&str]) -> Result<(i32, String)> {
        let out = Command::new(&self.setup.state_tool)
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args)
            .output()
            .context("running portsyncd-state")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    // --- the daemon ---------------------------------------------------------------------------

    pub fn start_daemon(&mut self) -> Result<()> {
        if self.daemon.is_some() {
            bail!("the daemon is already running");
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_log())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns.0])
            .arg(&self.setup.portsyncd)
            .args(["--redis-url", &self.url, "--state-dir"])
            .arg(self.state_dir())
            .args([
                "--resync-interval-secs",
                &self.setup.resync_secs.to_string(),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{METRICS_PORT}")])
            .args(["--log-output", "stderr", "--log-level", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting portsyncd")?;
        self.starts += 1;
        self.daemon = Some(Proc {
            name: "portsyncd",
            child,
        });
        Ok(())
    }

    pub fn daemon_log(&self) -> PathBuf {
        self.dir.0.join("daemon.log")
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Proc::pid)
    }

    /// The daemon's exit status if it exited by itself.
    pub fn daemon_exited(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.daemon.as_mut()?.exited()?;
        self.daemon = None;
        Some(st)
    }

    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    /// SIGTERM and the exit status (SIGKILL after 30 s: a daemon that ignores SIGTERM is a finding).
    pub fn stop_daemon(&mut self) -> Result<Option<i32>> {
        let Some(mut d) = self.daemon.take() else {
            return Ok(None);
        };
        signal(d.pid(), "TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            check_stop()?;
            if let Some(st) = d.exited() {
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                let _ = d.child.kill();
                let _ = d.child.wait();
                bail!("portsyncd did not exit within 30 s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sets SONiC's warm-restart flag for the next start (or clears it) and forgets the previous
    /// run's `reconciled`.
    pub fn set_warm(&self, warm: bool) -> Result<()> {
        let mut con = self.con(STATE_DB)?;
        redis::cmd("HSET")
            .arg("WARM_RESTART_ENABLE_TABLE|system")
            .arg("enable")
            .arg(if warm { "true" } else { "false" })
            .query::<()>(&mut con)?;
        redis::cmd("HDEL")
            .arg("WARM_RESTART_TABLE|portsyncd")
            .arg("state")
            .query::<()>(&mut con)?;
        Ok(())
    }

    pub fn reconciled(&self) -> Result<bool> {
        let mut con = self.con(STATE_DB)?;
        let v: Option<Vec<u8>> = redis::cmd("HGET")
            .arg("WARM_RESTART_TABLE|portsyncd")
            .arg("state")
            .query(&mut con)?;
        Ok(v.as_deref() == Some(b"reconciled"))
    }

    /// The daemon's VmRSS and VmHWM in KiB.
    pub fn daemon_rss_kib(&self) -> Option<(u64, u64)> {
        let pid = self.daemon_pid()?;
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    // --- the kernel ---------------------------------------------------------------------------

    /// Runs `ip -batch` in the namespace (waits for it).
    pub fn ip_batch(&self, commands: &str) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let file = self.dir.0.join("batch.ip");
        fs::write(&file, commands)?;
        sh(Command::new("ip")
            .args(["-n", &self.ns.0, "-force", "-batch"])
            .arg(&file))
    }

    /// The commands that create pair `a`/`a+1`, both up at MTU 9100.
    pub fn add_pair_commands(&self, a: usize) -> String {
        let (x, y) = (&self.ports[a], &self.ports[a + 1]);
        format!(
            "link add {x} mtu 9100 type veth peer name {y} mtu 9100\nlink set {x} up\nlink set {y} up\n"
        )
    }
}
