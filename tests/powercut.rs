//! Simulated power cuts (issue 3): a writer commits in a loop on `powercut-fs`, the power is cut at
//! a random moment, and a verifier checks on the durable state that every acknowledged write
//! survived. See `docs/powercut.md`.
//!
//! - Negative control: sled `insert` + `flush()` per write. `flush()` ends in `sync_file_range`,
//!   which never reaches the filesystem as an fsync, so acknowledged writes must be lost.
//! - Synced path: the same + `sync_all()` on sled's `db` file. No acknowledged write may be lost.
//!
//! Runs as root with `/dev/fuse`; fails loudly otherwise unless `PORTSYNCD_SKIP_FUSE=1`.
//! `POWERCUT_RUNS` (default 20 per writer) and `POWERCUT_SEED` tune and replay.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::powercut::{fuse_available, Harness, Verdict};

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

#[test]
fn sled_flush_loses_acknowledged_writes_and_sync_all_keeps_them() {
    if !fuse_available() {
        return;
    }
    let runs = runs();
    let mut harness = Harness::from_env();
    let verifier = |d: &Path| child("sled-verifier", d);
    let control = harness.run_cuts(runs, &|d| child("sled-flush-writer", d), &verifier);
    let synced = harness.run_cuts(runs, &|d| child("sled-sync-writer", d), &verifier);
    let control_line = control.summary("control (insert + flush)");
    let synced_line = synced.summary("synced (insert + flush + db.sync_all)");
    println!("{control_line}\n{synced_line}");
    assert!(
        control.lost >= 1,
        "the negative control lost nothing: the harness cannot see unsynced writes. {control_line}"
    );
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
    let runs = runs().div_ceil(2);
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
