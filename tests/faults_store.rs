//! The store under the faults a switch really has (issue 7): a full state disk that is freed again, a
//! read-only state dir, a store of a newer schema, the offline tool running while a daemon starts, a
//! hung fsync, and a rolled-back sled. Real daemon, redis-server and veths in a private netns; Redis
//! effects are judged from MONITOR and STATE_DB, not from the daemon's counters.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::daemon::{wait_until, Daemon};
use common::monitor::Monitor;
use common::rig::{rig_with, Rig, T};
use portsyncd::store::{PortRecord, Snapshot, Store, StoreConfig, StoreReader};

const TOOL: &str = env!("CARGO_BIN_EXE_portsyncd-state");
const UP: &str = "portsyncd_state_store_up";

fn degraded(reason: &str) -> String {
    format!("portsyncd_state_store_degraded{{reason=\"{reason}\"}}")
}

/// A tmpfs of `size` mounted on `<temp dir>/state`, to be the state directory itself (the daemon's log
/// goes next to it, off the small disk); unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mnt = tmp.path().join("state");
        std::fs::create_dir(&mnt).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs");
        Tmpfs { mnt, _tmp: tmp }
    }

    fn remount(&self, opt: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.mnt)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {opt}");
    }

    /// Fills the filesystem up (until ENOSPC); returns the filler's path.
    fn fill(&self) -> PathBuf {
        let path = self.mnt.join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = [0xa5u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn tool(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(TOOL);
    cmd.arg("--state-dir").arg(state).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run portsyncd-state")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir` but the pid lock (which names the daemon holding it), with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if e.file_name() != "portsyncd.pid" {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn quarantined(state: &Path) -> Vec<String> {
    std::fs::read_dir(state)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("quarantine"))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_metric(d: &Daemon, series: &str, want: f64, timeout: Duration) {
    assert!(
        wait_until(timeout, || d.metric(series) == want),
        "{series} != {want}\n{}\n{}",
        d.metrics(),
        d.log_text()
    );
}

/// Waits until STATE_DB shows `port` with `field` = `value` (what Redis received).
fn wait_state(rig: &Rig, d: &Daemon, port: &str, field: &str, value: &str) {
    assert!(
        wait_until(T, || rig.state(port).get(field).map(String::as_str)
            == Some(value)),
        "{port} {field} != {value}: {:?}\n{}",
        rig.state(port),
        d.log_text()
    );
}

fn start_synced(rig: &Rig) -> Daemon {
    let d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    d
}

#[test]
fn full_state_disk_keeps_publishing_never_quarantines_and_saves_again_once_freed() {
    let (mut rig, names) = rig_with(48);
    let disk = Tmpfs::new("1m");
    rig.state_dir = disk.mnt.clone();
    rig.first_run(&names, &[], false);
    let mon = Monitor::start(&rig.redis.socket, disk._tmp.path().join("monitor.full"));
    let mut d = rig.warm_restart(&names, &[]);
    wait_metric(&d, UP, 1.0, T);

    let filler = disk.fill();
    // sled writes into space its log already holds, and reuses records it already has, until it
    // needs more: give every port a new MTU (a new record each) per round until it does.
    let mut flaps = 0;
    while d.metric(&degraded("no_space")) != 1.0 {
        assert!(flaps < 100, "sled never ran out of space\n{}", d.log_text());
        let mtu = (2000 + flaps).to_string();
        rig.ns.ip_batch(
            &names[1..]
                .iter()
                .map(|p| format!("link set {p} mtu {mtu}\n"))
                .collect::<String>(),
        );
        wait_state(&rig, &d, &names[names.len() - 1], "mtu", &mtu);
        flaps += 1;
        std::thread::sleep(Duration::from_millis(250)); // > the commit quiet time
    }
    eprintln!("full disk: the store degraded (no_space) after {flaps} flaps");
    rig.ns.set_down("Ethernet0");
    wait_state(&rig, &d, "Ethernet0", "admin_status", "down");
    assert_eq!(d.metric(UP), 0.0);
    assert!(d.metric("portsyncd_state_save_failures_total") >= 1.0);
    let before = mon.state_port_writes().len();
    rig.ns.set_mtu("Ethernet0", 9000);
    wait_state(&rig, &d, "Ethernet0", "mtu", "9000");
    assert_eq!(
        mon.state_port_writes().len(),
        before + 1,
        "one write for one change"
    );
    assert_eq!(quarantined(&rig.state_dir), Vec::<String>::new());

    // Space comes back: the store is reopened (backoff at most 60 s) and the newest state saved.
    let commits = d.metric("portsyncd_state_commits_total");
    std::fs::remove_file(&filler).expect("free the disk");
    wait_metric(&d, UP, 1.0, Duration::from_secs(90));
    assert_eq!(d.metric(&degraded("no_space")), 0.0);
    assert!(wait_until(T, || d.metric("portsyncd_state_commits_total") > commits));
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    assert!(d.log_text().contains("final state committed"));
    assert_eq!(quarantined(&rig.state_dir), Vec::<String>::new());

    // The tool opens it, and the newest generation holds the changes made while the disk was full.
    let o = tool(&rig.state_dir, &["verify"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = StoreReader::open(&rig.state_dir, 1 << 20).expect("open a copy");
    let newest = r.generations().expect("generations")[0].number;
    let (_, snap) = r.load(newest).expect("newest valid");
    assert!(!snap.ports["Ethernet0"].admin_up);
    assert_eq!(snap.ports["Ethernet0"].mtu, 9000);
    drop(r);

    // A warm restart from it writes no port at all. (sled wants a fresh segment at open, which 1 MiB
    // no longer holds: a bigger disk, as an operator would give it. The store is the same.)
    disk.remount("size=8m");
    let mon = Monitor::start(&rig.redis.socket, disk._tmp.path().join("monitor.warm"));
    let d = rig.warm_restart(&names, &[]);
    assert!(
        d.log_text()
            .contains(&format!("source=Newest generation={newest}")),
        "{}",
        d.log_text()
    );
    assert_eq!(mon.state_port_writes(), Vec::<String>::new());
    eprintln!(
        "full disk: generation {newest} after freeing; warm restart: 0 STATE_DB PORT_TABLE writes"
    );
}

#[test]
fn a_read_only_state_dir_runs_without_persistence_and_exits_0() {
    let (mut rig, names) = rig_with(2);
    let disk = Tmpfs::new("4m");
    rig.state_dir = disk.mnt.clone();
    rig.first_run(&names, &[], false);
    disk.remount("ro");
    let mut d = rig.warm_restart(&names, &[]);
    rig.ns.set_down("Ethernet0");
    wait_state(&rig, &d, "Ethernet0", "admin_status", "down");
    wait_metric(&d, &degraded("read_only"), 1.0, T);
    assert_eq!(d.metric(UP), 0.0);
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    disk.remount("rw");
}

#[test]
fn a_newer_schema_runs_publishes_exits_0_and_leaves_the_store_byte_for_byte() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    std::fs::write(rig.state_dir.join("sled/portsyncd-schema"), b"99\n").expect("marker");
    let before = files(&rig.state_dir);
    let mut d = rig.warm_restart(&names, &[]);
    rig.ns.set_down("Ethernet0");
    wait_state(&rig, &d, "Ethernet0", "admin_status", "down");
    wait_metric(&d, &degraded("newer_schema"), 1.0, T);
    assert_eq!(d.metric(UP), 0.0);
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    let after = files(&rig.state_dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert!(before == after, "store files changed");
    eprintln!(
        "newer schema: {} files byte-for-byte unchanged",
        after.len()
    );
}

#[test]
fn a_daemon_starts_while_the_offline_tool_has_the_store_open() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    // inspect, paused for 15 s with the store open (test hook of fault-injection builds).
    let mut inspect = Command::new(TOOL)
        .arg("--state-dir")
        .arg(&rig.state_dir)
        .arg("inspect")
        .env("PORTSYNCD_STATE_TEST_PAUSE_MS", "15000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inspect");
    let mut err = BufReader::new(inspect.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read");
    assert!(line.contains("pausing"), "{line}");
    let mut d = rig.warm_restart(&names, &[]);
    rig.ns.set_down("Ethernet0");
    wait_state(&rig, &d, "Ethernet0", "admin_status", "down");
    assert_eq!(inspect.wait().expect("inspect").code(), Some(0));
    // And while the daemon runs, the tool reads a copy and names it.
    let o = tool(&rig.state_dir, &["inspect", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("portsyncd (pid {}) is running", d.pid())),
        "{}",
        text(&o)
    );
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// A running `powercut-fs` with stdin control; unmounted on drop.
struct FuseDisk {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl FuseDisk {
    fn start(backing: &Path, mnt: &Path) -> FuseDisk {
        let mut child = Command::new(env!("CARGO_BIN_EXE_powercut-fs"))
            .arg("--backing")
            .arg(backing)
            .arg("--mountpoint")
            .arg(mnt)
            .args(["--stdin-control", "--write-through"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn powercut-fs");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut fs = FuseDisk {
            child,
            stdin,
            lines,
        };
        fs.expect("ready");
        fs
    }

    fn expect(&mut self, want: &str) {
        let got = self.lines.recv_timeout(T).expect("powercut-fs line");
        assert_eq!(got, want);
    }

    fn send(&mut self, line: &str, ack: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write control");
        stdin.flush().expect("flush");
        self.expect(ack);
    }
}

impl Drop for FuseDisk {
    fn drop(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = writeln!(s, "release-fsync");
            let _ = writeln!(s, "unmount");
        }
        if !wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `VmHWM` / `VmRSS` of `pid`, in KiB.
fn mem_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_hung_fsync_keeps_memory_bounded_and_sigterm_still_exits() {
    if !common::powercut::fuse_available() {
        return;
    }
    const PORTS: usize = 256;
    const FLAPS: usize = 40;
    let (mut rig, names) = rig_with(PORTS);
    // Declared before the disk so that, on a failure, the disk is released (and unmounted) before
    // the daemon is reaped: threads blocked on a hung disk keep a process from being reaped.
    let mut daemon: Option<Daemon> = None;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (backing, mnt) = (tmp.path().join("disk"), tmp.path().join("state"));
    std::fs::create_dir(&backing).expect("mkdir");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mut disk = FuseDisk::start(&backing, &mnt);
    rig.state_dir = mnt.clone();
    let d = daemon.insert(start_synced(&rig));
    let batch = |state: &str| {
        names
            .iter()
            .map(|p| format!("link set {p} {state}\n"))
            .collect::<String>()
    };
    rig.add_ports(&names);
    assert!(rig.wait_converged(&names, Duration::from_secs(60)));
    assert!(wait_until(T, || d.metric("portsyncd_state_commits_total") >= 1.0));
    let commits = d.metric("portsyncd_state_commits_total");
    let hwm_before = mem_kib(d.pid(), "VmHWM:");

    disk.send("hang-fsync", "fsync-hung");
    for i in 0..FLAPS {
        rig.ns
            .ip_batch(&batch(if i % 2 == 0 { "down" } else { "up" }));
        let want = if i % 2 == 0 { "down" } else { "up" };
        let last = &names[PORTS - 1];
        assert!(wait_until(T, || rig
            .state(last)
            .get("admin_status")
            .map(String::as_str)
            == Some(want)));
        std::thread::sleep(Duration::from_millis(300)); // > the commit quiet time: one snapshot each
    }
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    let hwm_after = mem_kib(d.pid(), "VmHWM:");
    let rss_after = mem_kib(d.pid(), "VmRSS:");
    // The disk is still hung: at most one commit started after the hang.
    assert!(d.metric("portsyncd_state_commits_total") <= commits + 1.0);
    let growth = hwm_after.saturating_sub(hwm_before);
    eprintln!(
        "hung fsync, {PORTS} ports, {FLAPS} flaps: VmHWM {hwm_before} -> {hwm_after} KiB (+{growth} KiB), VmRSS {rss_after} KiB"
    );
    // One snapshot of 256 ports is about 0.3 MiB; an unbounded queue would hold one per flap.
    assert!(
        growth < 4 * 1024,
        "peak RSS grew by {growth} KiB with a hung disk"
    );
    // SIGTERM with the disk still hung: the final commit is given up after its grace and portsyncd
    // stops; its threads blocked in the disk let the process be reaped once the disk answers.
    let t0 = std::time::Instant::now();
    common::daemon::signal(d.pid(), libc::SIGTERM);
    assert!(d.wait_log("portsyncd stopped", T), "{}", d.log_text());
    eprintln!("stop with a hung disk took {:?}", t0.elapsed());
    assert!(d.log_text().contains("did not finish in time"));
    disk.send("release-fsync", "fsync-released");
    let st = d.wait(T).expect("reaped once the disk answers");
    assert_eq!(st.code(), Some(0), "{}", d.log_text());
}

fn port(name: &str, admin_up: bool) -> PortRecord {
    PortRecord {
        name: name.into(),
        ifindex: 3,
        admin_up,
        oper_up: admin_up,
        flags: 0x1003,
        mtu: 9100,
        published: Default::default(),
    }
}

#[test]
fn verify_reports_a_rolled_back_sled() {
    let t = tempfile::tempdir().expect("tempdir");
    let state = t.path().join("state");
    let cfg = StoreConfig::new(&state);
    let (mut s, _) = Store::open(cfg).expect("open");
    for g in 1..=3u64 {
        let mut snap = Snapshot::default();
        snap.ports.insert(
            format!("Ethernet{g}"),
            port(&format!("Ethernet{g}"), g % 2 == 0),
        );
        snap.counters
            .insert("portsyncd_state_commits_total".into(), g - 1);
        assert_eq!(s.commit(&snap).expect("commit"), g);
    }
    drop(s);
    // Damage a message in the middle of sled's log: the one carrying generation 2's manifest.
    let db = state.join("sled/db");
    let mut bytes = std::fs::read(&db).expect("read db");
    let key = portsyncd::store::generation::manifest_key(2);
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("generation 2's manifest key in sled's log");
    bytes[at + key.len() + 4] ^= 0xff;
    std::fs::write(&db, &bytes).expect("write db");
    let gens = StoreReader::open(&state, 1 << 20)
        .expect("sled still opens")
        .generations()
        .expect("generations");
    assert_eq!(
        gens.iter().map(|g| g.number).collect::<Vec<_>>(),
        [1],
        "sled recovery stops before the damage"
    );
    let o = tool(&state, &["verify"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ROLLBACK"), "{}", text(&o));
    assert!(
        text(&o).contains("the JSON export holds generation 3"),
        "{}",
        text(&o)
    );
}
