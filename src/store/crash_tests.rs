//! Crash points: the test binary re-runs itself as a child that aborts at one named step of the commit
//! protocol (see [`CrashPoint`]); the parent then reopens the store. The recovered generation must be the
//! old one or the new one — never a mix — and from `AfterFlush` on (the data reached the kernel) a
//! process crash must keep the new one. Snapshots have 1024 ports, two thirds of the records shared
//! with the generation before, and a commit writes its records in several batches, so a crash between
//! batches leaves orphans that the retried commit writes again (issue 15's orphan bug).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use super::fault::{CrashPoint, CRASH_ENV};
use super::*;

const DIR_ENV: &str = "PORTSYNCD_STORE_CRASH_DIR";

/// Ports in every snapshot: four record batches, so a commit can crash between them.
const PORTS: usize = 1024;

/// The snapshot committed as generation `gen`. Port `i`'s record depends only on `(i + gen) / 3`, so
/// each generation changes a third of the records (341 or 342: two record batches and the manifest
/// alone, i.e. two crash points between batches) and shares the other two thirds with the one before.
/// The counters name the generation.
fn snapshot_for(gen: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..PORTS {
        let name = format!("Ethernet{}", i * 4);
        let v = (i as u64 + gen) / 3;
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: v.is_multiple_of(2),
                oper_up: true,
                flags: v as u32,
                mtu: 9100,
                published: [("v".to_string(), v.to_string())].into(),
            },
        );
    }
    s.counters.insert("commits".into(), gen);
    s
}

/// How often a child commit reaches `cp`: twice for [`CrashPoint::BetweenBatches`] (see
/// [`snapshot_for`]), once for every other step.
fn hits_per_commit(cp: CrashPoint) -> u64 {
    match cp {
        CrashPoint::BetweenBatches => 2,
        _ => 1,
    }
}

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        generations: 2,
        ..StoreConfig::new(dir)
    }
}

#[test]
#[ignore = "run by crash_at_every_commit_step as its child"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let (mut store, _) = Store::open(cfg(Path::new(&dir))).expect("child open");
    for _ in 0..6 {
        let gen = store.next_generation();
        store.commit(&snapshot_for(gen)).expect("child commit");
    }
    // Reaching this line means the crash point never fired; the parent checks the exit status.
}

#[test]
fn crash_at_every_commit_step() {
    for cp in CrashPoint::ALL {
        for nth in [1u64, 2, 3] {
            let t = tempfile::tempdir().unwrap();
            let dir = t.path().join("state");
            let (mut s, _) = Store::open(cfg(&dir)).unwrap();
            s.commit(&snapshot_for(1)).unwrap();
            drop(s);
            let ctx = format!("{}:{nth}", cp.name());
            crash_a_child_at(&dir, cp, nth, &ctx);
            // Generation 1 plus the child commits completed before the one that crashed.
            let old = 1 + (nth - 1) / hits_per_commit(cp);
            let (s, g) = reopen_after_the_crash(&dir, cp, old, &ctx);
            commit_after_the_crash(s, &dir, g, &ctx);
        }
    }
}

/// Runs [`crash_child`] with the crash point `cp` armed for its `nth` hit; it must abort there.
fn crash_a_child_at(dir: &Path, cp: CrashPoint, nth: u64, ctx: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new(&exe)
        .args([
            "--exact",
            "store::crash_tests::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(CRASH_ENV, format!("{}:{nth}", cp.name()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "{ctx}: the child did not abort: {status:?}"
    );
}

/// Reopens the store a child crashed in: exactly generation `old` or `old + 1` (which one, as the
/// crash point decides), every kept generation valid, the export not a mix. Returns the store and
/// the generation recovered.
fn reopen_after_the_crash(dir: &Path, cp: CrashPoint, old: u64, ctx: &str) -> (Store, u64) {
    let new = old + 1;
    let (s, r) = Store::open(cfg(dir)).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let g = r
        .generation
        .unwrap_or_else(|| panic!("{ctx}: no state recovered: {:?}", r.steps));
    assert!(
        g == old || g == new,
        "{ctx}: recovered generation {g}, expected {old} or {new}"
    );
    assert_eq!(
        r.snapshot.as_ref(),
        Some(&snapshot_for(g)),
        "{ctx}: a mixed or wrong state"
    );
    assert_eq!(r.source, RecoverySource::Newest, "{ctx}: {:?}", r.steps);
    match cp {
        CrashPoint::BeforeApply | CrashPoint::BetweenBatches => {
            assert_eq!(g, old, "{ctx}")
        }
        CrashPoint::AfterApply => {}
        _ => assert_eq!(
            g, new,
            "{ctx}: the data reached the kernel, a process crash must keep it"
        ),
    }
    assert_every_generation_valid(&s, ctx);
    let exp = json_export::read(&dir.join("port_state.json"), true).unwrap();
    let eg = exp.generation.unwrap();
    assert_eq!(exp.snapshot, snapshot_for(eg), "{ctx}: the export is a mix");
    let want_new_export = matches!(cp, CrashPoint::AfterExport);
    assert_eq!(
        eg,
        if want_new_export { new } else { old },
        "{ctx}: export generation"
    );
    (s, g)
}

/// The store commits normally after the crash, numbering after whatever survived. The next commit
/// is the content of the generation after `g`: after a crash between batches it rewrites the
/// orphaned records, which the prune that follows must keep.
fn commit_after_the_crash(mut s: Store, dir: &Path, g: u64, ctx: &str) {
    let next = s.commit(&snapshot_for(g + 1)).unwrap();
    assert_eq!(next, g + 1, "{ctx}");
    let (now, later) = (snapshot_for(g + 1), snapshot_for(g + 2));
    let changes: Vec<_> = later
        .ports
        .iter()
        .filter(|(n, r)| now.ports.get(*n) != Some(*r))
        .map(|(n, r)| (n.clone(), Some(r.clone())))
        .collect();
    assert_eq!(
        s.commit_changes(false, changes, &later.counters).unwrap(),
        g + 2
    );
    drop(s);
    let (s, r) = Store::open(cfg(dir)).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    assert_eq!(
        (r.source, r.generation),
        (RecoverySource::Newest, Some(g + 2)),
        "{ctx}: after the retry: {:?}",
        r.steps
    );
    assert_every_generation_valid(&s, &format!("{ctx}: after the retry"));
}

/// Every generation the store keeps is valid and loads as exactly what it committed.
fn assert_every_generation_valid(s: &Store, ctx: &str) {
    for info in s.generations().unwrap() {
        assert!(
            info.is_valid(),
            "{ctx}: generation {} invalid: {:?}",
            info.number,
            info.problem
        );
        assert_eq!(
            s.load(info.number).unwrap().1,
            snapshot_for(info.number),
            "{ctx}"
        );
    }
}
