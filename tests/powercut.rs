//! Simulated power cuts (issue 3): a writer commits in a loop on `powercut-fs`, the power is cut at
//! a random moment, and a verifier checks on the durable state that every acknowledged write
//! survived. See `docs/powercut.md`.
//!
//! - Negative control: sled `insert` + `flush()` per write. `flush()` ends in `sync_file_range`,
//!   which never reaches the filesystem as an fsync, so acknowledged writes must be lost.
//! - The store's real commit path: `Store::commit` of whole snapshots (64..=2048 ports, every port
//!   stamped with its generation), `ack` after each `Ok`; the verifier's `Store::open` must bring
//!   back at least the last acknowledged generation, exactly as committed. Run beside the control
//!   (same harness, same cuts), with torn cuts, and with sled destroyed (the JSON export alone).
//! - Sled-level: the control + `sync_all()` on sled's `db` file loses nothing either.
//!
//! Runs as root with `/dev/fuse`; fails loudly otherwise unless `PORTSYNCD_SKIP_FUSE=1`.
//! - Repeated cuts on one disk at 1024 ports (`POWERCUT_PORTS`), where a third of the records change
//!   per generation: each new writer continues on what the last cut left (orphaned record batches
//!   included, in torn mode), and must find at least the last acknowledged generation.
//!
//! `POWERCUT_RUNS` (default 20: control and store 20 each, store torn 10, the rest 5),
//! `POWERCUT_PORTS` (the repeated-cuts test's size; set for the other store tests, their snapshots
//! get this many ports plus `gen % 25`, a third changing per generation) and `POWERCUT_SEED` tune and
//! replay. See docs/powercut.md for the long runs.

// Only the harness: the rest of `tests/common` serves other tests and needs their binaries.
#[path = "common/powercut.rs"]
mod powercut_harness;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "common/store_commit.rs"]
mod store_commit;

use portsyncd::store::{
    PortRecord, Recovered, RecoverySource, Snapshot, Store, StoreConfig, SLED_DIR,
};
use powercut_harness::{fuse_available, Harness, Tally, Verdict, PREVIOUS_ACK_ENV};
use store_commit::commit_as_daemon;

const ROLE_ENV: &str = "POWERCUT_ROLE";
const DIR_ENV: &str = "POWERCUT_DIR";
const ENTRY: &str = "child_process_entry_point";

/// A command re-running this test binary as a writer or verifier child.
fn child(role: &str, dir: &Path) -> Command {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        ENTRY,
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env(ROLE_ENV, role)
    .env(DIR_ENV, dir);
    cmd
}

fn runs() -> usize {
    std::env::var("POWERCUT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Not a test: the entry point of the child processes the power-cut tests spawn. Without
/// `POWERCUT_ROLE` it returns at once.
#[test]
fn child_process_entry_point() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("POWERCUT_DIR"));
    let code = match role.as_str() {
        "sled-flush-writer" => report(sled_writer(&dir, false)),
        "sled-sync-writer" => report(sled_writer(&dir, true)),
        "sled-verifier" => report(sled_verifier(&dir)),
        "store-writer" => report(store_writer(&dir)),
        "store-verifier" => report(store_verifier(&dir, SledFate::Kept)),
        "store-verifier-without-sled" => report(store_verifier(&dir, SledFate::Destroyed)),
        other => {
            eprintln!("unknown role {other}");
            2
        }
    };
    std::process::exit(code);
}

fn report(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child failed: {e:#}");
            1
        }
    }
}

/// Commits `1, 2, 3, ...` forever, printing `ack <n>` once a write counts as done.
///
/// Both writers make the freshly created database durable once (sled writes `conf` without any
/// fsync and never fsyncs its directory), so they differ only in what follows `flush()`.
fn sled_writer(dir: &Path, sync_db: bool) -> anyhow::Result<()> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(8 << 20)
        .open()?;
    File::open(dir.join("conf"))?.sync_all()?;
    let db_file = File::open(dir.join("db"))?;
    db_file.sync_all()?;
    File::open(dir)?.sync_all()?;

    let mut out = std::io::stdout().lock();
    for seq in 1u64.. {
        db.insert(seq.to_be_bytes(), &seq.to_be_bytes())?;
        db.flush()?;
        if sync_db {
            db_file.sync_all()?;
        }
        writeln!(out, "ack {seq}")?;
        out.flush()?;
    }
    Ok(())
}

/// Prints `newest <n>` if keys `1..=n` are all present and intact, `none` if empty, `error ...`
/// otherwise (a failed or panicking open, a hole, a wrong value).
fn sled_verifier(dir: &Path) -> anyhow::Result<()> {
    let verdict = match std::panic::catch_unwind(|| sled::Config::new().path(dir).open()) {
        Err(_) => "error sled::open panicked".to_owned(),
        Ok(Err(e)) => format!("error sled::open: {e}"),
        Ok(Ok(db)) => check_sequence(&db),
    };
    println!("{verdict}");
    Ok(())
}

fn check_sequence(db: &sled::Db) -> String {
    let mut count = 0u64;
    let mut newest = None;
    for item in db.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => return format!("error iteration: {e}"),
        };
        let Ok(key) = <[u8; 8]>::try_from(k.as_ref()) else {
            return format!("error key of {} bytes", k.len());
        };
        if v.as_ref() != key {
            return format!(
                "error value of key {} is {:?}",
                u64::from_be_bytes(key),
                v.as_ref()
            );
        }
        count += 1;
        newest = Some(u64::from_be_bytes(key));
    }
    match newest {
        None => "none".to_owned(),
        Some(n) if n == count => format!("newest {n}"),
        Some(n) => format!("error {count} keys but the newest is {n}: a hole"),
    }
}

/// The sled-level fix the store builds on: the same loop plus `sync_all()` of sled's `db` loses
/// nothing acknowledged. (The control's losses are counted beside the store's, in
/// `store_commit_path_survives_power_cuts`; fewer runs here, to keep the suite short.)
#[test]
fn sled_sync_all_keeps_acknowledged_writes() {
    if !fuse_available() {
        return;
    }
    let mut harness = Harness::from_env();
    let synced = harness.run_cuts(
        runs().div_ceil(4),
        &|d| child("sled-sync-writer", d),
        &|d| child("sled-verifier", d),
    );
    let synced_line = synced.summary("synced (insert + flush + db.sync_all)");
    println!("{synced_line}");
    assert_eq!(
        synced.lost, 0,
        "the synced path lost acknowledged writes. {synced_line}"
    );
}

/// The harness's own check: on a disk with no cache (`--write-through`), the same control loses
/// nothing. So the control's losses above come from dropping unsynced data, and the test above
/// would fail if `powercut-fs` made everything durable.
#[test]
fn without_a_cache_the_control_loses_nothing() {
    if !fuse_available() {
        return;
    }
    let mut harness = Harness::from_env();
    harness.write_through = true;
    let verifier = |d: &Path| child("sled-verifier", d);
    let tally = harness.run_cuts(runs().min(5), &|d| child("sled-flush-writer", d), &verifier);
    let line = tally.summary("control on a write-through disk");
    println!("{line}");
    assert_eq!(tally.lost, 0, "{line}");
}

/// Torn cuts: the disk wrote back a random subset of the unsynced pages before dying. The synced
/// path still loses nothing acknowledged, and the verifier (sled's recovery plus the sequence
/// check) never sees a hole or a wrong value, for either writer: a torn log tail is cut off, not
/// replayed as garbage.
#[test]
fn torn_cuts_never_lose_synced_writes_nor_show_wrong_data() {
    if !fuse_available() {
        return;
    }
    let runs = runs().div_ceil(4);
    let mut harness = Harness::from_env();
    harness.torn = true;
    let verifier = |d: &Path| child("sled-verifier", d);
    let control = harness.run_cuts(runs, &|d| child("sled-flush-writer", d), &verifier);
    let synced = harness.run_cuts(runs, &|d| child("sled-sync-writer", d), &verifier);
    let control_line = control.summary("torn control (insert + flush)");
    let synced_line = synced.summary("torn synced (insert + flush + db.sync_all)");
    println!("{control_line}\n{synced_line}");
    for o in control.outcomes.iter().chain(&synced.outcomes) {
        if let Verdict::Failed(why) = &o.verdict {
            assert!(
                !why.contains("hole") && !why.contains("value of key"),
                "wrong data after a torn cut: {why}"
            );
        }
    }
    assert_eq!(synced.lost, 0, "{synced_line}");
}

// ---- The store's real commit path -------------------------------------------------------------

/// The store as the daemon would open it, in `<dir>/state` (created, and made durable, by the store).
fn store_config(dir: &Path) -> StoreConfig {
    let state = dir.join("state");
    StoreConfig {
        json_export: Some(state.join("port_state.json")),
        dir: state,
        generations: 3,
        recovery: true,
        max_age: Duration::from_secs(7 * 86_400),
        cache_capacity_bytes: 8 << 20,
    }
}

/// Env variable: a fixed size (plus `gen % 25`) with records shared between generations.
const PORTS_ENV: &str = "POWERCUT_PORTS";

fn fixed_ports() -> Option<usize> {
    std::env::var(PORTS_ENV).ok().and_then(|s| s.parse().ok())
}

/// Ports in generation `gen`: varies over `MIN_PORTS..=MAX_PORTS` so generations differ in size
/// (with `POWERCUT_PORTS=N`: `N + gen % 25`).
fn port_count(gen: u64) -> usize {
    if let Some(n) = fixed_ports() {
        return n + (gen % 25) as usize;
    }
    let span = (MAX_PORTS - MIN_PORTS + 1) as u64;
    MIN_PORTS + (gen.wrapping_mul(389) % span) as usize
}

const MIN_PORTS: usize = 64;
const MAX_PORTS: usize = 2048;

fn port_name(i: usize) -> String {
    format!("Ethernet{}", i * 4)
}

/// The snapshot committed as generation `gen`: every port carries `gen` (MTU, flags, a published
/// field) and the counters do too, so a state mixing two generations is detected. With
/// `POWERCUT_PORTS`, port `i` carries `(i + gen) / 3` instead: a third of the records change per
/// generation, the rest are shared (the counters still name `gen`, and the size varies).
fn snapshot_for(gen: u64) -> Snapshot {
    let mut snap = Snapshot::default();
    let shared = fixed_ports().is_some();
    for i in 0..port_count(gen) {
        let v = if shared { (gen + i as u64) / 3 } else { gen };
        let g32 = u32::try_from(v).unwrap_or(u32::MAX);
        let name = port_name(i);
        let up = (v + i as u64).is_multiple_of(2);
        let mut published = BTreeMap::new();
        published.insert("generation".to_owned(), v.to_string());
        published.insert(
            "oper_status".to_owned(),
            if up { "up" } else { "down" }.into(),
        );
        snap.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: true,
                oper_up: up,
                flags: g32,
                mtu: g32,
                published,
            },
        );
    }
    snap.counters.insert("commits_total".to_owned(), gen);
    snap
}

/// Why `snap` is not exactly what generation `gen` committed (None: it is).
fn mismatch(gen: u64, snap: &Snapshot) -> Option<String> {
    let want = snapshot_for(gen);
    if snap == &want {
        return None;
    }
    if snap.ports.len() != want.ports.len() {
        return Some(format!(
            "{} ports, generation {gen} had {}",
            snap.ports.len(),
            want.ports.len()
        ));
    }
    if snap.counters != want.counters {
        return Some(format!("counters {:?}", snap.counters));
    }
    let (name, port) = snap
        .ports
        .iter()
        .find(|(name, port)| want.ports.get(*name) != Some(port))?;
    Some(format!("port {name} is {port:?}"))
}

/// Commits generations forever, printing `ack <generation>` after each `Ok`. The first writer of
/// a run starts on a fresh store; a later one (after a cut, `POWERCUT_PREVIOUS_ACK` set) must
/// recover exactly a committed generation, at least the last one acknowledged before the cut.
fn store_writer(dir: &Path) -> anyhow::Result<()> {
    let (mut store, recovered) = Store::open(store_config(dir))?;
    match std::env::var(PREVIOUS_ACK_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        None => anyhow::ensure!(
            recovered.generation.is_none(),
            "fresh store recovered {recovered:?}"
        ),
        Some(prev) => {
            let verdict = judge(&recovered, SledFate::Kept);
            anyhow::ensure!(
                verdict.starts_with("newest ") && recovered.generation >= Some(prev),
                "after the cut: {verdict}, generation {:?}, last ack {prev}, steps {:?}",
                recovered.generation,
                recovered.steps
            );
            for info in store.generations()? {
                anyhow::ensure!(
                    info.is_valid(),
                    "after the cut generation {} is invalid: {:?}",
                    info.number,
                    info.problem
                );
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let mut prev = None;
    loop {
        let gen = store.next_generation();
        let committed = commit_as_daemon(&mut store, &mut prev, snapshot_for(gen))?;
        anyhow::ensure!(committed == gen, "committed {committed}, expected {gen}");
        // The JSON export is a rung of the ladder; a silent export failure would make the
        // sled-destroyed verifier report a loss that is not the commit path's.
        anyhow::ensure!(
            store.export_failures() == 0,
            "JSON export failed at generation {gen}"
        );
        writeln!(out, "ack {committed}")?;
        out.flush()?;
    }
}

/// What the verifier does to sled's files before opening the store.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SledFate {
    Kept,
    /// The `db` file is overwritten with garbage: the state must come from the JSON export.
    Destroyed,
}

/// Opens the store on the durable state and prints `newest <generation>` if the recovered state is
/// exactly what that generation committed, `none` on a cold start, `error ...` otherwise. Notes the
/// recovery rung (`note source=...`) and each step down.
fn store_verifier(dir: &Path, fate: SledFate) -> anyhow::Result<()> {
    let cfg = store_config(dir);
    if fate == SledFate::Destroyed {
        let db = cfg.dir.join(SLED_DIR).join("db");
        match std::fs::OpenOptions::new().write(true).open(&db) {
            Ok(f) => {
                let len = f.metadata()?.len() as usize;
                f.write_all_at(&garbage(len), 0)?;
                f.sync_all()?;
            }
            // The cut already took it: destroyed all the same.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("note sled db absent"),
            Err(e) => return Err(e.into()),
        }
    }
    let verdict = match std::panic::catch_unwind(|| Store::open(cfg)) {
        Err(_) => "error Store::open panicked".to_owned(),
        Ok(Err(e)) => format!("error Store::open: {e}"),
        Ok(Ok((_store, rec))) => {
            println!("note source={:?}", rec.source);
            for step in &rec.steps {
                println!("note step down from {}: {}", step.from, step.reason);
            }
            judge(&rec, fate)
        }
    };
    println!("{verdict}");
    Ok(())
}

/// `len` pseudo-random bytes (fixed seed): what a dead disk might return.
fn garbage(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The verdict line for what `Store::open` recovered. The content must be exactly one committed
/// generation (its counters name it). A state that did not come straight from the newest
/// generation in sled is noted as a step down the ladder (expected only when sled was destroyed).
fn judge(rec: &Recovered, fate: SledFate) -> String {
    match (&rec.snapshot, rec.generation) {
        (None, None) if rec.source == RecoverySource::ColdStart => "none".to_owned(),
        (Some(snap), Some(gen)) => {
            let content_gen = snap.counters.get("commits_total").copied().unwrap_or(0);
            if let Some(why) = mismatch(content_gen, snap) {
                println!("note {WRONG_CONTENT}");
                return format!(
                    "error generation {gen} from {:?}: {why}",
                    rec.source
                );
            }
            // Without sled, a store may re-import the export as a new generation (migration
            // 0001 takes it for the legacy file): what survived is the content's generation.
            if content_gen != gen {
                println!("note generation {content_gen} came back as generation {gen}");
            }
            let straight = rec.source == RecoverySource::Newest
                && rec.steps.is_empty()
                && content_gen == gen;
            if !straight && fate == SledFate::Kept {
                // sled itself would not open (or opened empty) and was quarantined: sled's own
                // weakness under torn writes, told apart from a step down inside an open sled.
                if rec.steps.iter().any(|s| s.from == "sled store") {
                    println!("note {SLED_GAVE_UP}");
                } else {
                    println!("note {STEPPED_DOWN}");
                }
            }
            format!("newest {content_gen}")
        }
        _ => format!(
            "error inconsistent recovery: source {:?}, generation {:?}, snapshot present {}, stale {}",
            rec.source,
            rec.generation,
            rec.snapshot.is_some(),
            rec.stale
        ),
    }
}

/// Verifier note: the recovered snapshot is not exactly what a committed generation held.
const WRONG_CONTENT: &str = "wrong-content";
/// Verifier note: sled was kept and opened, yet the state came from a lower rung of the ladder (an
/// older generation, the JSON export, a re-import): an open sled lost synced data.
const STEPPED_DOWN: &str = "stepped-down";
/// Verifier note: sled was kept, but would not open or opened empty, and was quarantined; the state
/// came from the JSON export.
const SLED_GAVE_UP: &str = "sled-gave-up";

fn store_tally_line(label: &str, t: &Tally) -> String {
    let wrong = t.count_note(WRONG_CONTENT);
    let stepped_down = t.count_note(STEPPED_DOWN);
    let sled_gave_up = t.count_note(SLED_GAVE_UP);
    let acked_lost: u64 = t
        .outcomes
        .iter()
        .map(|o| match o.verdict {
            Verdict::Newest(n) => o.last_ack.saturating_sub(n),
            Verdict::Empty | Verdict::Failed(_) => o.last_ack,
        })
        .sum();
    format!(
        "{}; wrong states {wrong}; recovered below sled's newest generation {stepped_down}; \
         sled unreadable and quarantined {sled_gave_up}; acknowledged writes lost in total {acked_lost}",
        t.summary(label)
    )
}

fn assert_store_clean(t: &Tally, line: &str) {
    for o in &t.outcomes {
        if let Verdict::Failed(why) = &o.verdict {
            panic!(
                "store verification failed: {why} (notes {:?}). {line}",
                o.notes
            );
        }
    }
    assert_eq!(t.lost, 0, "the store lost acknowledged generations. {line}");
}

/// Issue 3's demand: the negative control (sled `insert` + `flush()`) and the store's real commit
/// path, under the same harness and the same cut distribution. The control must lose acknowledged
/// writes (or the harness is blind); the store must lose no acknowledged generation and never
/// recover a state that is not exactly one committed generation.
#[test]
fn store_commit_path_survives_power_cuts() {
    if !fuse_available() {
        return;
    }
    let runs = runs();
    let mut harness = Harness::from_env();
    let control = harness.run_cuts(runs, &|d| child("sled-flush-writer", d), &|d| {
        child("sled-verifier", d)
    });
    let store = harness.run_cuts(runs, &|d| child("store-writer", d), &|d| {
        child("store-verifier", d)
    });
    let control_line = store_tally_line("control (sled insert + flush)", &control);
    let store_line = store_tally_line("store commit path", &store);
    println!("{control_line}\n{store_line}");
    assert!(
        control.lost >= 1,
        "the negative control lost nothing: the harness cannot see unsynced writes. {control_line}"
    );
    assert_store_clean(&store, &store_line);
    assert_eq!(
        store.count_note(STEPPED_DOWN) + store.count_note(SLED_GAVE_UP),
        0,
        "a clean cut (no torn pages) sent the store down its recovery ladder. {store_line}"
    );
}

/// The same with torn cuts: part of the unsynced pages (sled's log tail, a half-written JSON temp
/// file) reach the disk. Still no acknowledged generation lost, no mixed or torn state accepted,
/// and no step down inside an open sled. sled itself, though, does not always survive a torn cut:
/// about 1 cut in 200 leaves it refusing to open or opening empty (the same rate with and without
/// the store on top, docs/powercut.md); the store then quarantines it and the JSON export must hold
/// the last acknowledged generation, which `assert_store_clean` checks. More than a tenth of the
/// cuts doing so is a regression (before sled's `conf` was fsynced at creation it was about 15 %).
#[test]
fn store_commit_path_survives_torn_cuts() {
    if !fuse_available() {
        return;
    }
    let mut harness = Harness::from_env();
    harness.torn = true;
    let store = harness.run_cuts(runs().div_ceil(2), &|d| child("store-writer", d), &|d| {
        child("store-verifier", d)
    });
    let line = store_tally_line("torn, store commit path", &store);
    println!("{line}");
    assert_store_clean(&store, &line);
    assert_eq!(
        store.count_note(STEPPED_DOWN),
        0,
        "a torn cut sent an open sled down its recovery ladder. {line}"
    );
    // About 1 cut in 200 is sled's own rate; allowing one in ten keeps a chance of a false alarm
    // near 0.1 % at 10 cuts, and a regression to the old 15 % still fails about half the runs.
    let cuts = store.outcomes.len();
    assert!(
        store.count_note(SLED_GAVE_UP) <= cuts.div_ceil(10),
        "sled would not open after more than a tenth of {cuts} torn cuts. {line}"
    );
}

/// The last rung but one: after the cut sled's log is destroyed (overwritten with garbage), and the JSON export
/// alone must still hold the last acknowledged generation, exactly.
#[test]
fn store_json_export_survives_power_cuts_without_sled() {
    if !fuse_available() {
        return;
    }
    let mut harness = Harness::from_env();
    let store = harness.run_cuts(runs().div_ceil(4), &|d| child("store-writer", d), &|d| {
        child("store-verifier-without-sled", d)
    });
    let line = store_tally_line("store, sled destroyed after the cut (JSON export)", &store);
    println!("{line}");
    assert_store_clean(&store, &line);
}

/// Repeated torn cuts on one disk at 1024 ports (or `POWERCUT_PORTS`), most records shared between
/// generations, each cut preceded by process crashes (SIGKILL, a new writer on the same mount): each
/// writer continues on whatever survived, including record batches of a commit whose manifest did
/// not, and commits the same content again. No acknowledged generation may be lost at any crash or
/// cut, and every generation must stay valid.
#[test]
fn store_survives_repeated_torn_cuts_at_1024_ports() {
    if !fuse_available() {
        return;
    }
    let ports = fixed_ports().unwrap_or(1024).to_string();
    let mut harness = Harness::from_env();
    harness.torn = true;
    harness.cuts_per_run = std::env::var("POWERCUT_CUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    harness.kills_per_cut = 3;
    harness.max_cut_delay = Duration::from_millis(600);
    let with_ports = |mut c: Command| {
        c.env(PORTS_ENV, &ports);
        c
    };
    let store = harness.run_cuts(
        runs().div_ceil(4),
        &|d| with_ports(child("store-writer", d)),
        &|d| with_ports(child("store-verifier", d)),
    );
    let line = store_tally_line(
        &format!("repeated torn cuts, {ports} ports, store commit path"),
        &store,
    );
    println!("{line}");
    assert_store_clean(&store, &line);
}
