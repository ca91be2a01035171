//! Crash points: the test binary re-runs itself as a child that aborts at one named step of the commit
//! protocol (see [`CrashPoint`]); the parent then reopens the store. The recovered generation must be the
//! old one or the new one — never a mix — and from `AfterFlush` on (the data reached the kernel) a
//! process crash must keep the new one.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use super::fault::{CrashPoint, CRASH_ENV};
use super::*;

const DIR_ENV: &str = "PORTSYNCD_STORE_CRASH_DIR";

fn snapshot_for(gen: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..(20 + gen as usize * 7) {
        let name = format!("Ethernet{}", i * 4);
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: (gen + i as u64).is_multiple_of(2),
                oper_up: true,
                flags: gen as u32,
                mtu: 9100,
                published: [("gen".to_string(), gen.to_string())].into(),
            },
        );
    }
    s.counters.insert("commits".into(), gen);
    s
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
    let exe = std::env::current_exe().unwrap();
    for cp in CrashPoint::ALL {
        for nth in [1u64, 3] {
            let t = tempfile::tempdir().unwrap();
            let dir = t.path().join("state");
            let (mut s, _) = Store::open(cfg(&dir)).unwrap();
            s.commit(&snapshot_for(1)).unwrap();
            drop(s);
            let status = Command::new(&exe)
                .args([
                    "--exact",
                    "store::crash_tests::crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(DIR_ENV, &dir)
                .env(CRASH_ENV, format!("{}:{nth}", cp.name()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            let ctx = format!("{}:{nth}", cp.name());
            assert_eq!(
                status.signal(),
                Some(libc::SIGABRT),
                "{ctx}: the child did not abort: {status:?}"
            );
            let old = nth; // generation 1 plus nth - 1 completed child commits
            let new = nth + 1;

            let (mut s, r) =
                Store::open(cfg(&dir)).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
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
                CrashPoint::BeforeApply => assert_eq!(g, old, "{ctx}"),
                CrashPoint::AfterApply => {}
                _ => assert_eq!(
                    g, new,
                    "{ctx}: the data reached the kernel, a process crash must keep it"
                ),
            }
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
            let exp = json_export::read(&dir.join("port_state.json"), true).unwrap();
            let eg = exp.generation.unwrap();
            assert_eq!(exp.snapshot, snapshot_for(eg), "{ctx}: the export is a mix");
            let want_new_export = matches!(cp, CrashPoint::AfterExport);
            assert_eq!(
                eg,
                if want_new_export { new } else { old },
                "{ctx}: export generation"
            );
            // The store commits normally afterwards, numbering after whatever survived.
            let next = s.commit(&snapshot_for(9)).unwrap();
            assert_eq!(next, g + 1, "{ctx}");
        }
    }
}
