//! The real `portsyncd-state` binary: every command, its exit codes, bad input, and a store in use.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portsyncd::store::{PortRecord, Snapshot, Store, StoreConfig};

const BIN: &str = env!("CARGO_BIN_EXE_portsyncd-state");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations/0001_legacy_json")
        .join(name)
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .env_remove("PORTSYNCD_STATE_DIR")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn snap(n: usize, salt: u32) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..n {
        let name = format!("Ethernet{}", i * 4);
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: true,
                oper_up: i % 2 == 0,
                flags: 0x1043 + salt,
                mtu: 9100,
                published: Default::default(),
            },
        );
    }
    s.counters
        .insert("starts_total{mode=\"warm\"}".into(), u64::from(salt));
    s
}

/// A store with generations 1 and 2 committed through the library.
fn store_with_two(dir: &Path) -> (Snapshot, Snapshot) {
    let (mut s, _) = Store::open(StoreConfig::new(dir)).unwrap();
    let (a, b) = (snap(3, 1), snap(4, 2));
    s.commit(&a).unwrap();
    s.commit(&b).unwrap();
    (a, b)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn read_commands_never_create_a_store() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    for args in [
        &["inspect"][..],
        &["verify"],
        &["export"],
        &["inspect", "--json"],
    ] {
        let o = run(t.path(), args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("not a portsyncd state store"),
            "{}",
            text(&o)
        );
        let o = run(&missing, args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
    }
    assert!(entries(t.path()).is_empty(), "{:?}", entries(t.path()));
}

#[test]
fn bad_import_input_exits_2_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let garbage = t.path().join("garbage.json");
    fs::write(&garbage, b"\x00\x01 this is not json").unwrap();
    let wrong_types = t.path().join("types.json");
    fs::write(&wrong_types, br#"{"ports": {"Ethernet0": {"admin_state": "up", "oper_state": 1, "flags": 1, "mtu": 1}}, "saved_at": 1, "version": 1}"#).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (garbage, "not valid JSON"),
        (fixture("port_state.json"), "not valid JSON"), // truncated
        (wrong_types, "admin_state"),
        (t.path().join("absent.json"), "cannot read"),
        (t.path().to_path_buf(), "cannot read"), // a directory
    ];
    for (file, needle) in cases {
        let o = run(&state, &["import", file.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{}: {}", file.display(), text(&o));
        assert!(
            text(&o).contains(needle),
            "{}: {}",
            file.display(),
            text(&o)
        );
        assert!(!state.exists(), "import of bad input created the store");
    }
    // An existing store is left byte-for-byte untouched too.
    store_with_two(&state);
    let before: Vec<(String, Vec<u8>)> = entries(&state.join("sled"))
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                fs::read(state.join("sled").join(&n)).unwrap_or_default(),
            )
        })
        .collect();
    let o = run(
        &state,
        &["import", fixture("port_state.json").to_str().unwrap()],
    );
    assert_eq!(code(&o), 2);
    let after: Vec<(String, Vec<u8>)> = entries(&state.join("sled"))
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                fs::read(state.join("sled").join(&n)).unwrap_or_default(),
            )
        })
        .collect();
    assert!(before == after, "store changed by a rejected import");
}

#[test]
fn import_inspect_verify_export_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let o = run(
        &state,
        &[
            "import",
            fixture("port_state.json.backup").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("as generation 1"), "{}", text(&o));

    let o = run(&state, &["inspect"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("schema        1"), "{out}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("generation row");
    assert!(
        row.contains("2023-11-15T00:13:20Z") && row.contains(" 4 ") && row.contains("valid"),
        "{row}"
    );

    let o = run(&state, &["inspect", "--json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["generations"][0]["ports"], 4);
    assert_eq!(v["generations"][0]["valid"], true);

    let o = run(&state, &["verify"]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    let o = run(&state, &["export"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = portsyncd::store::json_export::parse(&o.stdout, true).unwrap();
    let legacy =
        portsyncd::store::json_export::read(&fixture("port_state.json.backup"), false).unwrap();
    assert_eq!((st.generation, st.saved_at), (Some(1), 1_700_007_200));
    assert_eq!(st.snapshot.ports, legacy.snapshot.ports);

    let out_file = t.path().join("out.json");
    let o = run(
        &state,
        &[
            "export",
            "--generation",
            "1",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        fs::read(&out_file).unwrap(),
        run(&state, &["export", "--generation", "1"]).stdout
    );

    let o = run(&state, &["export", "--generation", "7"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
}

#[test]
fn export_without_a_valid_generation_exits_1() {
    let t = tempfile::tempdir().unwrap();
    drop(Store::open(StoreConfig::new(t.path())).unwrap());
    let o = run(t.path(), &["export"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("no valid generation"));
    assert_eq!(code(&run(t.path(), &["verify"])), 0);
}

#[test]
fn a_store_in_use_is_read_from_a_copy_and_only_import_refuses() {
    let t = tempfile::tempdir().unwrap();
    let (_held, _) = Store::open(StoreConfig::new(t.path())).unwrap();
    let running = format!("portsyncd (pid {}) is running", std::process::id());
    // The readers never take the lock: they read a snapshot copy and say a daemon runs.
    for (args, want) in [(&["inspect"][..], 0), (&["verify"], 0), (&["export"], 1)] {
        let o = run(t.path(), args);
        assert_eq!(code(&o), want, "{args:?}: {}", text(&o));
        assert!(text(&o).contains(&running), "{args:?}: {}", text(&o));
    }
    // import writes the store: refused while a daemon runs.
    let o = run(
        t.path(),
        &[
            "import",
            fixture("port_state.json.backup").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2, "{}", text(&o));
    let want = format!(
        "state store {} is in use by pid {}",
        t.path().display(),
        std::process::id()
    );
    assert!(text(&o).contains(&want), "{}", text(&o));
}

/// Damage one record the way a bit flip sled cannot see would: rewrite it through sled with a bad CRC.
/// `name` must belong to one generation only (records are shared between generations).
fn damage_record(state: &Path, name: &str) {
    let db = sled::open(state.join("sled")).unwrap();
    let keys: Vec<_> = db
        .scan_prefix(format!("r/{name}/"))
        .keys()
        .map(|k| k.unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "{name} must have exactly one record");
    let mut v = db.get(&keys[0]).unwrap().unwrap().to_vec();
    v[1] ^= 0x20;
    db.insert(&keys[0], v).unwrap();
    db.flush().unwrap();
}

#[test]
fn verify_names_the_damage_and_export_falls_back() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = store_with_two(t.path());
    damage_record(t.path(), "Ethernet12"); // only generation 2 has 4 ports
    let o = run(t.path(), &["verify"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("generation 2") && out.contains("Ethernet12") && out.contains("checksum"),
        "{out}"
    );
    assert!(!out.contains("generation 1:"), "{out}");

    let o = run(t.path(), &["inspect"]);
    assert_eq!(code(&o), 0);
    assert!(text(&o).contains("INVALID"), "{}", text(&o));

    let o = run(t.path(), &["export"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let st = portsyncd::store::json_export::parse(&o.stdout, true).unwrap();
    assert_eq!((st.generation, st.snapshot.ports), (Some(1), a.ports));
    assert_eq!(code(&run(t.path(), &["export", "--generation", "2"])), 1);
}

#[test]
fn verify_names_a_damaged_json_export() {
    let t = tempfile::tempdir().unwrap();
    store_with_two(t.path());
    let p = t.path().join("port_state.json");
    let s = fs::read_to_string(&p).unwrap().replacen("9100", "1500", 1);
    fs::write(&p, s).unwrap();
    let o = run(t.path(), &["verify"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("json export") && text(&o).contains("checksum"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_newer_schema_cannot_be_opened() {
    let t = tempfile::tempdir().unwrap();
    store_with_two(t.path());
    fs::write(t.path().join("sled/portsyncd-schema"), "9\n").unwrap();
    let o = run(t.path(), &["verify"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("schema version 9"), "{}", text(&o));
}

#[test]
fn a_store_sled_cannot_open_is_shown_by_inspect_and_has_no_generation_to_export() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    store_with_two(&state);
    fs::write(state.join("sled/conf"), b"not a sled config at all").unwrap();
    let before = entries(&state);
    let o = run(&state, &["inspect"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("CANNOT BE OPENED"), "{}", text(&o));
    let o = run(&state, &["export"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("no valid generation"), "{}", text(&o));
    assert_eq!(entries(&state), before, "read commands change nothing");
}

/// `import FILE` imports FILE: not a sibling `.backup` or `backups/` file that happens to be newer.
/// When FILE is unusable it exits 2 (nothing written) and points at a valid backup instead of
/// silently taking it.
#[test]
fn import_takes_the_file_it_was_given() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("legacy");
    fs::create_dir_all(src.join("backups")).unwrap();
    let doc = |port: &str, saved_at: u64| {
        format!(
            r#"{{"ports": {{"{port}": {{"name": "{port}", "admin_state": 1, "oper_state": 0, "flags": 4099, "mtu": 9100}}}}, "saved_at": {saved_at}, "version": 1}}"#
        )
    };
    let file = src.join("port_state.json");
    fs::write(&file, doc("Ethernet0", 1_700_000_000)).unwrap();
    fs::write(
        src.join("port_state.json.backup"),
        doc("Ethernet4", 1_700_000_100),
    )
    .unwrap();
    fs::write(
        src.join("backups/port_state_1700000200.json"),
        doc("Ethernet8", 1_700_000_200),
    )
    .unwrap();
    let state = t.path().join("state");
    let o = run(&state, &["import", file.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        text(&o).contains(&format!("imported {} ", file.display())),
        "{}",
        text(&o)
    );
    let o = run(&state, &["export"]);
    let st = portsyncd::store::json_export::parse(&o.stdout, true).unwrap();
    assert_eq!(
        st.snapshot.ports.keys().collect::<Vec<_>>(),
        ["Ethernet0"],
        "the given file's ports"
    );
    assert_eq!(st.saved_at, 1_700_000_000);

    // The given file unusable: exit 2, the store untouched, the valid backup named.
    let state2 = t.path().join("state2");
    fs::write(&file, b"{\"ports\": {").unwrap();
    let o = run(&state2, &["import", file.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(!state2.exists(), "{}", text(&o));
    assert!(
        text(&o).contains("port_state_1700000200.json"),
        "names the newest valid backup: {}",
        text(&o)
    );
}

/// A legacy file with a number near 2^64 (it made `import` panic): exit 2, naming the field, nothing
/// written.
#[test]
fn import_of_absurd_numbers_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let port = r#""Ethernet0": {"name": "Ethernet0", "admin_state": 1, "oper_state": 1, "flags": 4099, "mtu": 9100}"#;
    for (field, doc) in [
        (
            "saved_at",
            format!(
                r#"{{"ports": {{{port}}}, "saved_at": {}, "version": 1}}"#,
                u64::MAX
            ),
        ),
        (
            "generation",
            format!(
                r#"{{"ports": {{{port}}}, "saved_at": 1700000000, "generation": {}, "version": 1}}"#,
                u64::MAX
            ),
        ),
        (
            "counters",
            format!(
                r#"{{"ports": {{{port}}}, "saved_at": 1700000000, "counters": {{"x": {}}}, "version": 1}}"#,
                u64::MAX
            ),
        ),
    ] {
        let file = t.path().join(format!("{field}.json"));
        fs::write(&file, &doc).unwrap();
        let state = t.path().join(format!("state-{field}"));
        let o = run(&state, &["import", file.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{field}: {}", text(&o));
        assert!(text(&o).contains(field), "{field}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{field}: {}", text(&o));
        assert!(
            !state.exists(),
            "{field}: import of bad input created the store"
        );
    }
}
