//! Private state after a real daemon run (netns + redis): the state directory and every directory
//! in it 0700, every file 0600 (the pid file may be 0644); an older, readable directory is tightened.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::rig::rig_with;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every path under `dir` with a mode that is not private.
fn too_open(dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        let ft = e.file_type().expect("file type");
        let m = mode(&p);
        if ft.is_dir() {
            if m != 0o700 {
                out.push(format!("{} dir {m:o}", p.display()));
            }
            too_open(&p, out);
        } else if ft.is_file() {
            let pid = e.file_name() == "portsyncd.pid";
            if m != 0o600 && !(pid && m == 0o644) {
                out.push(format!("{} file {m:o}", p.display()));
            }
        }
    }
}

#[test]
fn state_files_are_private_after_a_run_and_old_modes_are_tightened() {
    let (rig, names) = rig_with(2);
    rig.first_run(&names, &[], false);
    let dir = &rig.state_dir;
    assert_eq!(mode(dir), 0o700, "state dir");
    let mut bad = Vec::new();
    too_open(dir, &mut bad);
    assert!(bad.is_empty(), "not private: {bad:#?}");
    assert!(dir.join("port_state.json").exists());

    // As an older version left it: everything world-readable. The next start tightens it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        dir.join("port_state.json"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::set_permissions(dir.join("sled"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = rig.start(&[]);
    assert!(
        d.wait_log("initial sync complete", common::rig::T),
        "{}",
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
    assert_eq!(mode(dir), 0o700);
    let mut bad = Vec::new();
    too_open(dir, &mut bad);
    assert!(bad.is_empty(), "not tightened: {bad:#?}");
}
