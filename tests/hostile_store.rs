//! Generative tests of every surface of the store that reads outside input (issue 15, item 5):
//!
//! - `port_state.json` parsing: arbitrary bytes and arbitrary JSON documents;
//! - legacy files and the export, mutated from valid ones, through `Store::open` (migration 0001, the
//!   recovery ladder) and through the real `portsyncd-state import`;
//! - the sled directory, truncated, bit-flipped, with files deleted or swapped between generations,
//!   through `Store::open` + load + verify.
//!
//! The oracle is always the same: no panic, bounded time, and either a clear error or a correct
//! result. A correct result is a state that equals one that was committed (or, for a file, that the
//! file itself holds), and a store that commits and reopens afterwards.
//!
//! CI runs a fixed-seed slice (a few seconds per test). `PROPTEST_CASES` sets the number of cases of
//! every test here, `PROPTEST_RNG_SEED` the seed; failing cases are kept in
//! `tests/proptest-regressions/hostile_store.txt` and replayed first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use portsyncd::store::{
    delta, json_export, Backend, BackendError, PortRecord, RecoverySource, SledBackend, Snapshot,
    Store, StoreConfig, WriteBatch,
};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/proptest-regressions/hostile_store.txt"
);
const TOOL: &str = env!("CARGO_BIN_EXE_portsyncd-state");
/// What one open (or one import) may take, on a loaded CI machine, before it counts as a wedge.
const BOUND: Duration = Duration::from_secs(20);

/// `default_cases` unless `PROPTEST_CASES` says otherwise; a fixed seed unless `PROPTEST_RNG_SEED`.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let mut c = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x15_5709e);
    }
    c
}

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        // The fixtures are from 2023: old states are still offered, so the content can be checked.
        max_age: Duration::from_secs(100 * 365 * 86_400),
        cache_capacity_bytes: 1 << 20,
        ..StoreConfig::new(dir)
    }
}

/// Numbers that break naive code.
fn nasty_number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(u64::MAX.to_string()),
        2 => Just((u64::MAX - 1).to_string()),
        2 => Just((1u64 << 63).to_string()),
        1 => Just((1u64 << 53).to_string()),
        1 => Just(((1u64 << 53) + 1).to_string()),
        1 => Just(u32::MAX.to_string()),
        1 => Just((u64::from(u32::MAX) + 1).to_string()),
        1 => Just("253402300800".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("1e400".to_string()),
        1 => Just("0.5".to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("0".to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
    ]
}

// ---- parsing -------------------------------------------------------------------------------------

/// A JSON value shaped like a state file, with hostile leaves.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop_oneof![
        Just("ports".to_string()),
        Just("saved_at".to_string()),
        Just("version".to_string()),
        Just("generation".to_string()),
        Just("counters".to_string()),
        Just("ifindex".to_string()),
        Just("published".to_string()),
        Just("checksum".to_string()),
        Just("name".to_string()),
        Just("admin_state".to_string()),
        Just("oper_state".to_string()),
        Just("flags".to_string()),
        Just("mtu".to_string()),
        Just("Ethernet0".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        nasty_number().prop_map(|n| serde_json::from_str(&n).unwrap_or(Value::Null)),
        Just(serde_json::json!(1)),
        Just(serde_json::json!(0)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A number field: usually valid, often hostile, sometimes not a number at all.
fn field_value(valid: serde_json::Value) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        2 => Just(valid),
        2 => nasty_number().prop_map(|n| serde_json::from_str(&n).unwrap_or(serde_json::Value::Null)),
        1 => json_value(),
    ]
}

/// A document with the shape of a state file, every field valid or hostile.
fn state_doc() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let port = (
        field_value(json!(1)),
        field_value(json!(0)),
        field_value(json!(4099)),
        field_value(json!(9100)),
    )
        .prop_map(|(a, o, f, m)| json!({"admin_state": a, "oper_state": o, "flags": f, "mtu": m}));
    (
        prop::collection::btree_map("(Ethernet|PortChannel)[0-9]{1,4}", port, 0..4),
        field_value(json!(1_700_000_000u64)),
        prop::option::of(field_value(json!(3))),
        prop::collection::btree_map("[a-z_]{1,12}", field_value(json!(2)), 0..3),
        field_value(json!(1)),
    )
        .prop_map(|(ports, saved_at, generation, counters, version)| {
            let mut doc = json!({
                "ports": ports,
                "saved_at": saved_at,
                "counters": counters,
                "version": version,
            });
            if let Some(g) = generation {
                doc["generation"] = g;
            }
            doc
        })
}

fn check_parsed(st: &json_export::JsonState) {
    assert!(st.saved_at <= 253_402_300_799, "saved_at {}", st.saved_at);
    assert!(st.generation.is_none_or(|g| g <= 1 << 53));
    assert!(st.snapshot.counters.values().all(|&v| v <= 1 << 53));
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        (0usize..3, prop::collection::vec(mutation(), 0..6))
            .prop_map(|(i, muts)| apply(valid_files()[i].clone(), &muts)),
    ]) {
        for checksum in [false, true] {
            if let Ok(st) = json_export::parse(&bytes, checksum) {
                check_parsed(&st);
            }
        }
    }

    #[test]
    fn parse_never_panics_on_json(v in prop_oneof![json_value(), state_doc()]) {
        let bytes = serde_json::to_vec(&v).unwrap();
        for checksum in [false, true] {
            if let Ok(st) = json_export::parse(&bytes, checksum) {
                check_parsed(&st);
            }
        }
    }
}

// ---- mutated legacy files and exports ------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations/0001_legacy_json")
        .join(name);
    fs::read(p).unwrap()
}

fn port(i: usize, salt: u32) -> PortRecord {
    let name = format!("Ethernet{}", i * 4);
    PortRecord {
        name,
        ifindex: i as u32 + 3,
        admin_up: i.is_multiple_of(2),
        oper_up: (i as u32 + salt).is_multiple_of(3),
        flags: 0x1043 ^ salt,
        mtu: 9100,
        published: [("mtu".to_string(), "9100".to_string())].into(),
    }
}

/// Valid files to mutate: the legacy fixtures and a rendered (checksummed) export.
fn valid_files() -> Vec<Vec<u8>> {
    let mut snap = Snapshot::default();
    for i in 0..4 {
        let p = port(i, 1);
        snap.ports.insert(p.name.clone(), p);
    }
    snap.counters.insert("commits".into(), 7);
    vec![
        fixture("port_state.json.backup"),
        fixture("backups/port_state_1700000000.json"),
        json_export::render(&snap, 1_700_000_000, 7),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Replace the `nth` run of digits with a nasty number.
    Number {
        nth: usize,
        with: String,
    },
    Delete {
        at: usize,
        len: usize,
    },
    /// Replace the value of the first `"key":` with a nasty number.
    Field {
        key: &'static str,
        with: String,
    },
}

const NUMERIC_FIELDS: [&str; 7] = [
    "saved_at",
    "generation",
    "version",
    "mtu",
    "flags",
    "admin_state",
    "commits",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), nasty_number()).prop_map(|(nth, with)| Mutation::Number { nth, with }),
        1 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        // The fields whose absurd values once crashed the open: often.
        4 => (
            prop_oneof![
                2 => Just("saved_at"),
                2 => Just("generation"),
                1 => prop::sample::select(&NUMERIC_FIELDS[..]),
            ],
            nasty_number()
        )
            .prop_map(|(key, with)| Mutation::Field { key, with }),
    ]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn apply(mut doc: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = doc.len().max(1);
        match m {
            Mutation::FlipBit { at, bit } => {
                if !doc.is_empty() {
                    doc[at % n] ^= 1 << bit;
                }
            }
            Mutation::Truncate { at } => doc.truncate(at % n),
            Mutation::Insert { at, bytes } => {
                let at = at % (doc.len() + 1);
                doc.splice(at..at, bytes.iter().copied());
            }
            Mutation::Number { nth, with } => {
                let mut runs = Vec::new();
                let mut i = 0;
                while i < doc.len() {
                    if doc[i].is_ascii_digit() {
                        let start = i;
                        while i < doc.len() && doc[i].is_ascii_digit() {
                            i += 1;
                        }
                        runs.push(start..i);
                    } else {
                        i += 1;
                    }
                }
                if !runs.is_empty() {
                    let r = runs[nth % runs.len()].clone();
                    doc.splice(r, with.bytes());
                }
            }
            Mutation::Field { key, with } => {
                let needle = format!("\"{key}\":");
                if let Some(pos) = find(&doc, needle.as_bytes()) {
                    let mut start = pos + needle.len();
                    while doc.get(start) == Some(&b' ') {
                        start += 1;
                    }
                    let mut end = start;
                    while doc.get(end).is_some_and(|c| !b",}]".contains(c)) {
                        end += 1;
                    }
                    doc.splice(start..end, with.bytes());
                }
            }
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(doc.len());
                if at < end {
                    doc.drain(at..end);
                }
            }
        }
    }
    doc
}

/// Opens a store over `dir` (a thread, so a wedge is a failure rather than a hang of the suite).
fn open_bounded(dir: &Path) -> Result<(Store, portsyncd::store::Recovered), String> {
    let dir = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| Store::open(cfg(&dir)));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(BOUND) {
        Ok(Ok(r)) => r.map_err(|e| e.to_string()),
        Ok(Err(_)) => panic!("Store::open panicked"),
        Err(_) => panic!(
            "Store::open took more than {BOUND:?} ({:?})",
            started.elapsed()
        ),
    }
}

fn import(state: &Path, file: &Path) -> (i32, String) {
    let o = Command::new(TOOL)
        .arg("--state-dir")
        .arg(state)
        .arg("import")
        .arg(file)
        .env_remove("PORTSYNCD_STATE_DIR")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

proptest! {
    #![proptest_config(config(48))]

    /// A new store over mutated legacy files (main file and `.backup`): migration 0001 imports a
    /// valid one exactly or none, never panics, and the store then works.
    #[test]
    fn mutated_legacy_files_open_cleanly(
        main in (0usize..3, prop::collection::vec(mutation(), 0..4)),
        backup in prop::option::of((0usize..3, prop::collection::vec(mutation(), 0..4))),
    ) {
        let files = valid_files();
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        fs::create_dir_all(&state).unwrap();
        let mut written = vec![apply(files[main.0].clone(), &main.1)];
        fs::write(state.join("port_state.json"), &written[0]).unwrap();
        if let Some((i, muts)) = &backup {
            written.push(apply(files[*i].clone(), muts));
            fs::write(state.join("port_state.json.backup"), &written[1]).unwrap();
        }
        let (mut store, rec) = open_bounded(&state).unwrap_or_else(|e| panic!("open failed: {e}"));
        let valid: Vec<Snapshot> = written
            .iter()
            .filter_map(|b| json_export::parse(b, false).ok())
            .map(|st| st.snapshot)
            .collect();
        if let Some(snap) = &rec.snapshot {
            prop_assert!(valid.contains(snap), "imported a state no file holds: {snap:?}");
        } else {
            prop_assert!(valid.is_empty(), "a valid file was not imported: {:?}", rec.steps);
        }
        // Every rejected file is a step naming it.
        let rejected = written.len() - valid.len();
        prop_assert_eq!(
            rec.steps.iter().filter(|s| s.from.starts_with("legacy file")).count(),
            rejected,
            "{:?}", rec.steps
        );
        let next = Snapshot { ports: [("Ethernet0".to_string(), port(0, 9))].into(), ..Snapshot::default() };
        let g = store.commit(&next).unwrap();
        drop(store);
        let (_, rec) = open_bounded(&state).unwrap();
        prop_assert_eq!(rec.generation, Some(g));
        prop_assert_eq!(rec.snapshot, Some(next));
    }

    /// `portsyncd-state import` of a mutated file: exit 0 with exactly the file's ports, or exit 2
    /// with the store untouched; never a panic.
    #[test]
    fn mutated_files_import_cleanly(
        which in 0usize..3,
        muts in prop::collection::vec(mutation(), 0..4),
    ) {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("in.json");
        let bytes = apply(valid_files()[which].clone(), &muts);
        fs::write(&file, &bytes).unwrap();
        let state = t.path().join("state");
        let started = Instant::now();
        let (code, text) = import(&state, &file);
        prop_assert!(started.elapsed() < BOUND, "import took {:?}", started.elapsed());
        match json_export::parse(&bytes, false) {
            Ok(st) => {
                prop_assert_eq!(code, 0, "{}", text);
                let (_, rec) = open_bounded(&state).unwrap();
                prop_assert_eq!(rec.snapshot.map(|s| s.ports), Some(st.snapshot.ports));
            }
            Err(e) => {
                prop_assert_eq!(code, 2, "{} ({})", text, e);
                prop_assert!(!state.exists(), "a rejected import created the store");
            }
        }
    }
}

// ---- the sled directory --------------------------------------------------------------------------

/// Generations committed to the template store: 800 ports, a third of the records changing each
/// time (so commits write several batches and share records).
const TEMPLATE_GENS: u64 = 4;

fn template_snapshot(gen: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..800 {
        let p = port(i, ((i as u64 + gen) / 3) as u32);
        s.ports.insert(p.name.clone(), p);
    }
    s.counters.insert("commits".into(), gen);
    s
}

/// State directories, built once per test process: `copies[k]` for `k < TEMPLATE_GENS` holds
/// generations `1..=k + 1`; the later ones hold generations `1..=j` plus the record batches of
/// generation `j + 1` without its manifest (a crash between batches: orphans), `j` in
/// `1..TEMPLATE_GENS`.
struct Template {
    _dir: tempfile::TempDir,
    copies: Vec<PathBuf>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut copies = Vec::new();
        let (mut store, _) = Store::open(cfg(&state)).unwrap();
        for g in 1..=TEMPLATE_GENS {
            assert_eq!(store.commit(&template_snapshot(g)).unwrap(), g);
            // A copy of a live store: sled's flush + fsync made it whole (as a power cut would see it).
            let copy = dir.path().join(format!("after-{g}"));
            copy_tree(&state, &copy, &["portsyncd.pid"]);
            copies.push(copy);
        }
        drop(store);
        for j in 1..TEMPLATE_GENS {
            let copy = dir.path().join(format!("orphans-after-{j}"));
            copy_tree(&copies[j as usize - 1], &copy, &[]);
            write_orphans(&copy.join("sled"), j + 1);
            copies.push(copy);
        }
        Template { _dir: dir, copies }
    })
}

/// Every record batch of generation `gen` (all its records), not its manifest, made durable: what a
/// crash between the last record batch and the manifest leaves.
fn write_orphans(sled_dir: &Path, gen: u64) {
    let snap = template_snapshot(gen);
    let b = SledBackend::open(sled_dir, 1 << 20).unwrap();
    let mut n = 0;
    // Every batch but the last (the manifest's) goes to sled.
    let mut sink = |batch: WriteBatch, last: bool| -> Result<(), BackendError> {
        if !last {
            n += 1;
            b.apply(batch)?;
        }
        Ok(())
    };
    delta::build(
        gen,
        None,
        snap.ports.iter().map(|(n, r)| (n.as_str(), Some(r))),
        &snap.counters,
        1_700_000_000,
        &|_, _| false,
        None,
        &mut sink,
    )
    .unwrap();
    assert!(n > 1, "several record batches");
    b.sync().unwrap();
}

fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let dest = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest, skip);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every file under `dir`, sorted (relative paths).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            } else if let Ok(rel) = e.path().strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate {
        file: usize,
        keep: u16,
    },
    FlipBits {
        file: usize,
        at: u16,
        mask: u8,
    },
    Zero {
        file: usize,
        at: u16,
        len: u16,
    },
    Delete {
        file: usize,
    },
    /// Replace the file with the same-named file of another generation's copy.
    Swap {
        file: usize,
        from: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u16>()).prop_map(|(file, keep)| Damage::Truncate { file, keep }),
        (any::<usize>(), any::<u16>(), 1u8..).prop_map(|(file, at, mask)| Damage::FlipBits {
            file,
            at,
            mask
        }),
        (any::<usize>(), any::<u16>(), 1u16..4096).prop_map(|(file, at, len)| Damage::Zero {
            file,
            at,
            len
        }),
        any::<usize>().prop_map(|file| Damage::Delete { file }),
        (any::<usize>(), any::<usize>()).prop_map(|(file, from)| Damage::Swap { file, from }),
    ]
}

/// Position `frac / 65536` of the way into `len`.
fn scaled(len: u64, frac: u16) -> u64 {
    len * u64::from(frac) / 65_536
}

fn do_damage(state: &Path, d: &Damage) {
    let files = files_under(state);
    if files.is_empty() {
        return;
    }
    let pick = |i: usize| state.join(&files[i % files.len()]);
    match d {
        Damage::Truncate { file, keep } => {
            let p = pick(*file);
            let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(scaled(len, *keep)).unwrap();
        }
        Damage::FlipBits { file, at, mask } => {
            let p = pick(*file);
            let mut b = fs::read(&p).unwrap();
            if !b.is_empty() {
                let i = scaled(b.len() as u64, *at) as usize;
                b[i] ^= mask;
                fs::write(&p, b).unwrap();
            }
        }
        Damage::Zero { file, at, len } => {
            let p = pick(*file);
            let mut b = fs::read(&p).unwrap();
            let start = scaled(b.len() as u64, *at) as usize;
            let end = (start + usize::from(*len)).min(b.len());
            b[start..end].fill(0);
            fs::write(&p, b).unwrap();
        }
        Damage::Delete { file } => {
            let _ = fs::remove_file(pick(*file));
        }
        Damage::Swap { file, from } => {
            let rel = &files[file % files.len()];
            let copies = &template().copies;
            let other = copies[from % copies.len()].join(rel);
            if other.exists() {
                fs::copy(other, state.join(rel)).unwrap();
            }
        }
    }
}

/// Whether `snap` is a committed snapshot (the one its counters name).
fn is_committed(snap: &Snapshot) -> bool {
    snap.counters
        .get("commits")
        .is_some_and(|&g| (1..=TEMPLATE_GENS + 1).contains(&g) && *snap == template_snapshot(g))
}

proptest! {
    #![proptest_config(config(40))]

    /// A damaged state directory (sled files and the export): open, load and verify never panic,
    /// take bounded time, and recover only states that were committed; the store then commits and
    /// reopens.
    #[test]
    fn damaged_sled_dirs_open_cleanly(
        base in 0usize..(2 * TEMPLATE_GENS - 1) as usize,
        damages in prop::collection::vec(damage(), 0..4),
    ) {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        copy_tree(&template().copies[base], &state, &[]);
        for d in &damages {
            do_damage(&state, d);
        }
        let (mut store, rec) = match open_bounded(&state) {
            Ok(x) => x,
            // A clear error (e.g. the damaged directory cannot be quarantined) is an outcome.
            Err(e) => {
                prop_assert!(!e.is_empty());
                return Ok(());
            }
        };
        if let Some(snap) = &rec.snapshot {
            prop_assert!(is_committed(snap), "recovered a state never committed (generation {:?}, {:?})", rec.generation, rec.steps);
        }
        let started = Instant::now();
        for info in store.generations().unwrap_or_default() {
            if info.is_valid() {
                let (_, snap) = store.load(info.number).unwrap();
                prop_assert!(is_committed(&snap), "generation {} verifies but holds a state never committed", info.number);
            }
        }
        prop_assert!(started.elapsed() < BOUND);
        // The content of the generation after the recovered one: a damaged log may still hold some
        // of its records (orphans), which this commit writes again and the prune must keep.
        let after = rec
            .snapshot
            .as_ref()
            .and_then(|s| s.counters.get("commits").copied())
            .unwrap_or(0);
        let next = template_snapshot(after + 1);
        let committed = store.commit(&next);
        drop(store);
        if let Ok(g) = committed {
            let (store, rec) = open_bounded(&state).unwrap_or_else(|e| panic!("reopen after a commit: {e}"));
            // From sled itself, not the JSON export standing in for a generation sled lost.
            prop_assert_eq!(rec.source, RecoverySource::Newest, "{:?}", rec.steps);
            prop_assert_eq!(rec.generation, Some(g), "{:?}", rec.steps);
            for info in store.generations().unwrap() {
                prop_assert!(info.is_valid(), "generation {}: {:?}", info.number, info.problem);
            }
            prop_assert_eq!(rec.snapshot, Some(next));
        }
    }
}

/// The template itself opens to its newest generation (the oracle's base case).
#[test]
fn undamaged_template_opens_to_its_newest_generation() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    copy_tree(&template().copies[TEMPLATE_GENS as usize - 1], &state, &[]);
    let (_, rec) = open_bounded(&state).unwrap();
    assert_eq!(rec.generation, Some(TEMPLATE_GENS));
    assert_eq!(rec.snapshot, Some(template_snapshot(TEMPLATE_GENS)));
}
