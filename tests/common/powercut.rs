//! Power-cut harness: runs a writer on `powercut-fs`, cuts the power at a random moment, remounts
//! what was durable and asks a verifier what survived.
//!
//! Protocol, so any commit path can be plugged in:
//! - the **writer** gets a directory inside the mount and loops forever; after each write it
//!   considers durable it prints `ack <n>` (a line, flushed), `n` increasing;
//! - the **verifier** gets the same directory on a fresh mount of the durable state and prints
//!   `newest <n>` (the newest number it finds, after its own consistency checks) or `none`;
//!   anything else (a panic, `error ...`, a non-zero exit) is a failed verification. Lines starting
//!   with `note ` are kept in [`Outcome::notes`] (e.g. which recovery rung the state came from).
//!
//! A run *loses acknowledged writes* when the verifier's newest is below the last `ack`, or it found
//! nothing, or it failed. The directory the writer gets already exists on the durable disk (as a
//! state directory created at install time would); whatever the writer creates inside it is its own
//! responsibility to make durable.
//!
//! `tests/powercut.rs` plugs in the sled control and the store this way:
//! ```ignore
//! let writer = |dir: &Path| child("store-writer", dir);     // loops Store::commit, prints "ack <gen>"
//! let verifier = |dir: &Path| child("store-verifier", dir); // Store::open, prints "newest <gen>"
//! let tally = Harness::from_env().run_cuts(20, &writer, &verifier);
//! ```

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The `powercut-fs` binary built with this package.
pub const FS_BIN: &str = env!("CARGO_BIN_EXE_powercut-fs");

/// Name of the directory (inside the mount) handed to writer and verifier.
const DATA_DIR: &str = "data";

/// True if FUSE tests can run here (root and `/dev/fuse`). Otherwise panics, unless
/// `PORTSYNCD_SKIP_FUSE=1`, in which case it prints why and returns false.
pub fn fuse_available() -> bool {
    let is_root = fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                == Some("0")
        })
        .unwrap_or(false);
    let has_dev = Path::new("/dev/fuse").exists();
    if is_root && has_dev {
        return true;
    }
    let why =
        format!("power-cut tests need root and /dev/fuse (root: {is_root}, /dev/fuse: {has_dev})");
    if std::env::var("PORTSYNCD_SKIP_FUSE").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {why} (PORTSYNCD_SKIP_FUSE=1)");
        return false;
    }
    panic!("{why}; set PORTSYNCD_SKIP_FUSE=1 to skip deliberately");
}

/// What the verifier reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Newest(u64),
    Empty,
    Failed(String),
}

/// One power cut.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The last number the writer acknowledged before the cut.
    pub last_ack: u64,
    pub verdict: Verdict,
    /// How long after the writer's first ack the power was cut.
    pub cut_after: Duration,
    /// The verifier's `note ...` lines, without the prefix.
    pub notes: Vec<String>,
}

impl Outcome {
    /// True if an acknowledged write did not survive the cut.
    pub fn lost(&self) -> bool {
        match self.verdict {
            Verdict::Newest(n) => n < self.last_ack,
            Verdict::Empty | Verdict::Failed(_) => true,
        }
    }
}

/// The counts over several cuts.
#[derive(Debug, Default)]
pub struct Tally {
    pub runs: usize,
    pub lost: usize,
    pub verify_failed: usize,
    pub outcomes: Vec<Outcome>,
}

impl Tally {
    /// One line, for the test log.
    pub fn summary(&self, label: &str) -> String {
        let acks: u64 = self.outcomes.iter().map(|o| o.last_ack).sum();
        format!(
            "{label}: lost acknowledged writes in {}/{} runs ({} verifier failures; {} acks in total)",
            self.lost, self.runs, self.verify_failed, acks
        )
    }

    /// How many runs' verifier printed `note <note>` (exactly).
    pub fn count_note(&self, note: &str) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.notes.iter().any(|n| n == note))
            .count()
    }
}

/// Small deterministic generator (xorshift64*), so a failing sequence of cuts can be replayed
/// with `POWERCUT_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough value in `[0, bound)`.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

/// Harness settings.
#[derive(Debug, Clone)]
pub struct Harness {
    pub fs_bin: PathBuf,
    /// Fault hook of `powercut-fs`: no cache, every change durable at once.
    pub write_through: bool,
    /// Cut in torn mode: a random subset of unsynced pages reaches the disk (`--torn-seed`).
    pub torn: bool,
    /// The cut falls uniformly within this long after the writer's first ack.
    pub max_cut_delay: Duration,
    /// Limit for a writer's first ack, for the verifier, and for mount/unmount steps.
    pub step_timeout: Duration,
    /// Power cuts per run on the same disk (default 1): after each but the last, the power comes
    /// back and a new writer continues on what survived (it gets the last ack in
    /// `POWERCUT_PREVIOUS_ACK`); the verifier runs after the last.
    pub cuts_per_run: usize,
    /// Process crashes before each cut (default 0): the writer is SIGKILLed at a random moment and
    /// a new one started on the same mount (the kernel kept what it had), this many times, before
    /// the writer that sees the power cut.
    pub kills_per_cut: usize,
    pub rng: Rng,
}

/// Env variable a writer of a later phase gets: the last ack before the previous cut.
pub const PREVIOUS_ACK_ENV: &str = "POWERCUT_PREVIOUS_ACK";

impl Harness {
    /// Defaults; the seed comes from `POWERCUT_SEED` or the clock (printed either way).
    pub fn from_env() -> Self {
        let seed = std::env::var("POWERCUT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ u64::from(std::process::id())
            });
        eprintln!("powercut: POWERCUT_SEED={seed}");
        Self {
            fs_bin: PathBuf::from(FS_BIN),
            write_through: false,
            torn: false,
            max_cut_delay: Duration::from_millis(1200),
            step_timeout: Duration::from_secs(60),
            cuts_per_run: 1,
            kills_per_cut: 0,
            rng: Rng::new(seed),
        }
    }

    /// Run `runs` cuts; a run whose machinery fails (not the verifier) panics with its context.
    pub fn run_cuts(
        &mut self,
        runs: usize,
        writer: &dyn Fn(&Path) -> Command,
        verifier: &dyn Fn(&Path) -> Command,
    ) -> Tally {
        // One simulated disk at a time per test binary: the tests of a file run in parallel, and
        // several FUSE filesystems with sled writers on 2 busy cores made runs time out in CI.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tally = Tally::default();
        for i in 0..runs {
            let outcome = self
                .run_once(writer, verifier)
                .unwrap_or_else(|e| panic!("power-cut run {i}: harness failure: {e:#}"));
            eprintln!(
                "powercut run {i}: cut {:?} after first ack, last ack {}, verifier {:?} {:?}{}",
                outcome.cut_after,
                outcome.last_ack,
                outcome.verdict,
                outcome.notes,
                if outcome.lost() { "  <- LOST" } else { "" }
            );
            tally.runs += 1;
            tally.lost += usize::from(outcome.lost());
            tally.verify_failed += usize::from(matches!(outcome.verdict, Verdict::Failed(_)));
            tally.outcomes.push(outcome);
        }
        tally
    }

    /// One run: mount, write, cut, remount, verify.
    pub fn run_once(
        &mut self,
        writer: &dyn Fn(&Path) -> Command,
        verifier: &dyn Fn(&Path) -> Command,
    ) -> anyhow::Result<Outcome> {
        let tmp = tempfile::tempdir()?;
        let disk = tmp.path().join("disk");
        let mnt = tmp.path().join("mnt");
        fs::create_dir_all(disk.join(DATA_DIR))?;
        fs::create_dir(&mnt)?;

        let mut last_ack = 0;
        let mut cut_after = Duration::ZERO;
        let mut writers = 0;
        for _ in 0..self.cuts_per_run.max(1) {
            // Power on, write until the cut (with process crashes before it, if asked).
            let torn_seed = self.torn.then(|| self.rng.next_u64());
            let mut fs1 = MountedFs::start(self, &disk, &mnt, torn_seed)?;
            for kill in 0..=self.kills_per_cut {
                let mut cmd = writer(&mnt.join(DATA_DIR));
                if writers > 0 {
                    cmd.env(PREVIOUS_ACK_ENV, last_ack.to_string());
                }
                let err = tmp.path().join(format!("writer-{writers}.err"));
                writers += 1;
                let mut w = LineChild::spawn(cmd, &err)?;
                let first = w.next_ack(self.step_timeout)?;
                cut_after = Duration::from_millis(
                    self.rng.below(self.max_cut_delay.as_millis() as u64 + 1),
                );
                let started = Instant::now();
                last_ack = last_ack.max(first);
                while started.elapsed() < cut_after {
                    last_ack = last_ack.max(w.ack_before(started + cut_after)?);
                }
                if kill == self.kills_per_cut {
                    // Power cut, then the writer dies with it.
                    fs1.cut()?;
                }
                w.kill();
                last_ack = last_ack.max(w.drain_acks());
            }
            fs1.unmount(self.step_timeout)?;
        }

        // Power back on: a fresh mount of what was durable.
        let mut fs2 = MountedFs::start(self, &disk, &mnt, None)?;
        let (verdict, notes) = run_verifier(
            verifier(&mnt.join(DATA_DIR)),
            &tmp.path().join("verifier.err"),
            self.step_timeout,
        );
        fs2.unmount(self.step_timeout)?;
        Ok(Outcome {
            last_ack,
            verdict,
            cut_after,
            notes,
        })
    }
}

/// A child whose stdout lines arrive on a channel.
struct LineChild {
    child: Child,
    lines: Receiver<String>,
    err_path: PathBuf,
}

impl LineChild {
    fn spawn(mut cmd: Command, err_path: &Path) -> anyhow::Result<Self> {
        let err = fs::File::create(err_path)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout pipe"))?;
        Ok(Self {
            child,
            lines: spawn_line_reader(stdout),
            err_path: err_path.to_owned(),
        })
    }

    fn stderr_tail(&self) -> String {
        let text = fs::read_to_string(&self.err_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The next `ack` within `timeout`.
    fn next_ack(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(n) = parse_ack(&line) {
                        return Ok(n);
                    }
                }
                Err(_) => anyhow::bail!(
                    "writer gave no ack within {timeout:?} (exit: {:?}); stderr:\n{}",
                    self.child.try_wait().ok().flatten(),
                    self.stderr_tail()
                ),
            }
        }
    }

    /// The highest ack seen until `deadline` (0 if none); fails if the writer dies first.
    fn ack_before(&mut self, deadline: Instant) -> anyhow::Result<u64> {
        let mut best = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(best);
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => best = best.max(parse_ack(&line).unwrap_or(0)),
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(best),
                Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!(
                    "writer exited before the cut ({:?}); stderr:\n{}",
                    self.child.wait().ok(),
                    self.stderr_tail()
                ),
            }
        }
    }

    fn kill(&mut self) {
        // Already gone is fine: it may have hit EIO after the cut.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After the child is dead: the highest ack still in the pipe.
    fn drain_acks(&mut self) -> u64 {
        self.lines
            .iter()
            .filter_map(|l| parse_ack(&l))
            .max()
            .unwrap_or(0)
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        // A run that failed half-way must not leave a writer running on a mount.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn parse_ack(line: &str) -> Option<u64> {
    line.trim().strip_prefix("ack ")?.trim().parse().ok()
}

fn spawn_line_reader(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The verifier's verdict and its `note` lines.
fn run_verifier(cmd: Command, err_path: &Path, timeout: Duration) -> (Verdict, Vec<String>) {
    let mut notes = Vec::new();
    let verdict = verify(cmd, err_path, timeout, &mut notes);
    (verdict, notes)
}

fn verify(cmd: Command, err_path: &Path, timeout: Duration, notes: &mut Vec<String>) -> Verdict {
    let mut child = match LineChild::spawn(cmd, err_path) {
        Ok(c) => c,
        Err(e) => return Verdict::Failed(format!("spawn: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let mut verdict = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match child.lines.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim();
                if line == "none" {
                    verdict = Some(Verdict::Empty);
                } else if let Some(n) = line
                    .strip_prefix("newest ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    verdict = Some(Verdict::Newest(n));
                } else if line.starts_with("error") {
                    verdict = Some(Verdict::Failed(line.to_owned()));
                } else if let Some(note) = line.strip_prefix("note ") {
                    notes.push(note.trim().to_owned());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                child.kill();
                return Verdict::Failed(format!("verifier hung for {timeout:?}"));
            }
        }
    }
    let status = child.child.wait();
    match (status, verdict) {
        (Ok(s), Some(v)) if s.success() => v,
        (Ok(s), v) => Verdict::Failed(format!(
            "verifier exit {s}, said {v:?}; stderr:\n{}",
            child.stderr_tail()
        )),
        (Err(e), _) => Verdict::Failed(format!("wait: {e}")),
    }
}

/// A running `powercut-fs`; unmounted (lazily, if need be) and reaped on drop.
struct MountedFs {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    mnt: PathBuf,
}

impl MountedFs {
    fn start(h: &Harness, disk: &Path, mnt: &Path, torn_seed: Option<u64>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(&h.fs_bin);
        cmd.arg("--backing")
            .arg(disk)
            .arg("--mountpoint")
            .arg(mnt)
            .arg("--stdin-control");
        if h.write_through {
            cmd.arg("--write-through");
        }
        if let Some(seed) = torn_seed {
            cmd.arg("--torn-seed").arg(seed.to_string());
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout pipe"))?;
        let mut fs = Self {
            child,
            stdin,
            lines: spawn_line_reader(stdout),
            mnt: mnt.to_owned(),
        };
        fs.expect_line("ready", h.step_timeout)?;
        Ok(fs)
    }

    fn expect_line(&mut self, want: &str, timeout: Duration) -> anyhow::Result<()> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) if line.trim() == want => Ok(()),
            Ok(line) => anyhow::bail!("powercut-fs said {line:?}, expected {want:?}"),
            Err(e) => anyhow::bail!(
                "powercut-fs did not say {want:?}: {e} (exit: {:?})",
                self.child.try_wait()
            ),
        }
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Cut the power and wait until the durable state is on the backing disk.
    fn cut(&mut self) -> anyhow::Result<()> {
        self.send("cut")?;
        self.expect_line("cut", Duration::from_secs(30))
    }

    /// Persist durable state, unmount, and wait for the process to exit successfully.
    fn unmount(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.send("unmount")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "powercut-fs exited with {status}");
                anyhow::ensure!(
                    !is_mounted(&self.mnt),
                    "{} still mounted",
                    self.mnt.display()
                );
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "powercut-fs did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for MountedFs {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn is_mounted(mnt: &Path) -> bool {
    // Canonicalize the parent only: a dead FUSE mount point itself fails stat() with ENOTCONN.
    let (Some(parent), Some(name)) = (mnt.parent(), mnt.file_name()) else {
        return false;
    };
    let Ok(parent) = parent.canonicalize() else {
        return false;
    };
    let canon = parent.join(name);
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .any(|l| l.split_whitespace().nth(4).map(OsStr::new) == Some(canon.as_os_str()))
}
