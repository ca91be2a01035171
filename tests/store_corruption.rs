//! Corruption: flip, zero and truncate bytes in each sled file (`conf`, `db`, `snap.*`) and in the JSON
//! export, over many seeds. Never a crash or a hang; never a wrong state (every recovered state is
//! compared with the snapshot committed under its generation); with one damaged copy the other copy
//! still gives a warm start; and `verify` names the damage whenever there is any.
//!
//! `STORE_CORRUPTION_SEEDS` (default 12 per file and mutation) and `STORE_CORRUPTION_SEED` override.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portsyncd::store::{PortRecord, Recovered, RecoverySource, Snapshot, Store, StoreConfig};

const BIN: &str = env!("CARGO_BIN_EXE_portsyncd-state");
const NEWEST: u64 = 5;

fn snapshot_for(gen: u64) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..(30 + gen as usize * 3) {
        let name = format!("Ethernet{}", i * 4);
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: (gen + i as u64).is_multiple_of(2),
                oper_up: (gen + i as u64).is_multiple_of(3),
                flags: gen as u32,
                mtu: 9100,
                published: [("gen".to_string(), gen.to_string())].into(),
            },
        );
    }
    s.counters.insert("commits".into(), gen);
    s
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Generations 1..=5 committed (3 kept), the JSON export holding 5.
fn golden(dir: &Path) {
    let (mut s, _) = Store::open(StoreConfig::new(dir)).unwrap();
    for g in 1..=NEWEST {
        assert_eq!(s.commit(&snapshot_for(g)).unwrap(), g);
    }
    drop(s);
    // sled writes its snapshot file (snap.*) when it reopens a log.
    drop(Store::open(StoreConfig::new(dir)).unwrap());
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Flip,
    Zero,
    Truncate,
}

fn mutate(path: &Path, m: Mutation, rng: &mut Rng) -> String {
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len() as u64;
    // In the 512 KiB log most bytes are unused padding; aim at the written part half of the time.
    let span = if path.ends_with("db") && rng.below(2) == 0 {
        len.min(64 * 1024)
    } else {
        len
    };
    let at = rng.below(span) as usize;
    let what = match m {
        Mutation::Flip => {
            let x = 1 + rng.below(255) as u8;
            if let Some(b) = bytes.get_mut(at) {
                *b ^= x;
            }
            format!("flip {x:#04x} at {at}")
        }
        Mutation::Zero => {
            let n = (1 + rng.below(64) as usize).min(bytes.len() - at.min(bytes.len()));
            bytes[at..at + n].iter_mut().for_each(|b| *b = 0);
            format!("zero {n} at {at}")
        }
        Mutation::Truncate => {
            bytes.truncate(at);
            format!("truncate to {at}")
        }
    };
    fs::write(path, bytes).unwrap();
    what
}

/// Run `verify` with a deadline.
fn verify(dir: &Path) -> (i32, String) {
    let mut child = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir)
        .arg("verify")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("verify hung on {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// `Store::open` in a thread with a deadline: a hang or an escaped panic fails the test.
fn open_with_deadline(dir: &Path) -> Result<Recovered, String> {
    let (tx, rx) = mpsc::channel();
    let d = dir.to_path_buf();
    let h = std::thread::spawn(move || {
        let r = Store::open(StoreConfig::new(d)).map(|(s, r)| {
            drop(s);
            r
        });
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(r) => {
            h.join().unwrap();
            r
        }
        Err(_) => panic!("Store::open hung or panicked on {}", dir.display()),
    }
}

fn targets(dir: &Path) -> Vec<PathBuf> {
    let mut t = vec![
        dir.join("sled/conf"),
        dir.join("sled/db"),
        dir.join("port_state.json"),
    ];
    let snaps: Vec<PathBuf> = fs::read_dir(dir.join("sled"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    assert!(
        !snaps.is_empty(),
        "the golden store has no sled snapshot to damage"
    );
    t.extend(snaps);
    t
}

#[test]
fn corruption_never_crashes_and_never_applies_a_wrong_state() {
    let per: u64 = std::env::var("STORE_CORRUPTION_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed = std::env::var("STORE_CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("corruption: {per} seeds per file and mutation, STORE_CORRUPTION_SEED={seed}");
    let mut rng = Rng(seed);
    let t = tempfile::tempdir().unwrap();
    let gold = t.path().join("gold");
    golden(&gold);
    let rel: Vec<PathBuf> = targets(&gold)
        .iter()
        .map(|p| p.strip_prefix(&gold).unwrap().to_path_buf())
        .collect();

    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut trial = 0;
    for file in &rel {
        for m in [Mutation::Flip, Mutation::Zero, Mutation::Truncate] {
            for _ in 0..per {
                trial += 1;
                let dir = t.path().join(format!("trial-{trial}"));
                copy_dir(&gold, &dir);
                let what = mutate(&dir.join(file), m, &mut rng);
                let ctx = format!("trial {trial}: {} {what}", file.display());

                let (code, text) = verify(&dir);
                assert!(
                    [0, 1, 2].contains(&code),
                    "{ctx}: verify exit {code}: {text}"
                );
                if code != 0 {
                    let names = ["generation", "json export", "cannot open", "schema"]
                        .iter()
                        .any(|n| text.contains(n));
                    assert!(names, "{ctx}: verify did not name the damage: {text}");
                }

                let r =
                    open_with_deadline(&dir).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
                let label = match (&r.snapshot, r.source) {
                    (Some(s), src) => {
                        let g = r.generation.expect("a recovered state has a generation");
                        assert!(
                            (1..=NEWEST).contains(&g),
                            "{ctx}: generation {g} never existed"
                        );
                        assert_eq!(
                            *s,
                            snapshot_for(g),
                            "{ctx}: WRONG STATE for generation {g} from {src:?}"
                        );
                        // One damaged copy: the other one is intact, so the newest state survives.
                        assert_eq!(
                            g, NEWEST,
                            "{ctx}: recovered {g} from {src:?}, expected {NEWEST}; steps {:?}",
                            r.steps
                        );
                        format!("{src:?}")
                    }
                    (None, _) => panic!(
                        "{ctx}: cold start although one copy is intact; steps {:?}",
                        r.steps
                    ),
                };
                if code == 0 {
                    assert_eq!(
                        r.source,
                        RecoverySource::Newest,
                        "{ctx}: verify said clean: {text}"
                    );
                }
                *tally
                    .entry(format!(
                        "{} {m:?} -> verify {code}, {label}",
                        file.display()
                    ))
                    .or_default() += 1;
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
    for (k, v) in &tally {
        eprintln!("  {v:3} x {k}");
    }
}

#[test]
fn both_copies_damaged_gives_an_older_generation_or_a_cold_start() {
    let t = tempfile::tempdir().unwrap();
    let gold = t.path().join("gold");
    golden(&gold);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for trial in 0..24 {
        let dir = t.path().join(format!("both-{trial}"));
        copy_dir(&gold, &dir);
        fs::write(dir.join("port_state.json"), b"{\"ports\": {").unwrap();
        let what = mutate(
            &dir.join("sled/db"),
            [Mutation::Flip, Mutation::Zero, Mutation::Truncate][trial % 3],
            &mut rng,
        );
        let r = open_with_deadline(&dir).unwrap_or_else(|e| panic!("trial {trial} {what}: {e}"));
        match (&r.snapshot, r.generation) {
            (Some(s), Some(g)) => {
                assert_eq!(*s, snapshot_for(g), "trial {trial} {what}: wrong state")
            }
            (None, _) => assert_eq!(r.source, RecoverySource::ColdStart),
            (Some(_), None) => panic!("state without a generation"),
        }
        // Whatever happened, the store commits afterwards.
        let (mut s, _) = Store::open(StoreConfig::new(&dir)).unwrap();
        s.commit(&snapshot_for(1)).unwrap();
    }
}
