//! Kill loop: a child process commits generations as fast as it can and prints each acknowledged
//! generation; the parent SIGKILLs it at random moments, at least 200 times. After every kill the store
//! must open, its newest valid generation must be at least the last acknowledged one, and every
//! generation it holds must be exactly the snapshot committed under that number (never torn, never mixed).
//!
//! Snapshots have `STORE_KILLLOOP_PORTS` ports (default 1024) plus `gen % 25`; each generation changes
//! a third of the records and shares the rest with the one before, so a commit writes several record
//! batches and a kill between them leaves orphans the next child writes again.
//!
//! `STORE_KILLLOOP_ROUNDS` (default 200), `STORE_KILLLOOP_PORTS` and `STORE_KILLLOOP_SEED` override the
//! defaults. The long run is documented in docs/durability.md.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/store_commit.rs"]
mod store_commit;

use portsyncd::store::{json_export, PortRecord, RecoverySource, Snapshot, Store, StoreConfig};
use store_commit::commit_as_daemon;

const CHILD_ENV: &str = "STORE_KILLLOOP_CHILD_DIR";

const PORTS_ENV: &str = "STORE_KILLLOOP_PORTS";

fn base_ports() -> usize {
    std::env::var(PORTS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

/// The snapshot committed as generation `gen`: its size and its counters depend on `gen`, so a mix of
/// two generations can never pass for one. Port `i`'s record depends only on `(i + gen) / 3`: a third
/// of the records change from one generation to the next, the rest are shared.
fn snapshot_for(gen: u64) -> Snapshot {
    let mut s = Snapshot::default();
    let n = base_ports() + (gen % 25) as usize;
    for i in 0..n {
        let name = format!("Ethernet{}", i * 4);
        let v = (gen + i as u64) / 3;
        s.ports.insert(
            name.clone(),
            PortRecord {
                name,
                ifindex: i as u32 + 1,
                admin_up: v.is_multiple_of(2),
                oper_up: v.is_multiple_of(3),
                flags: v as u32,
                mtu: 9100,
                published: [("v".to_string(), v.to_string())].into(),
            },
        );
    }
    s.counters.insert("commits".into(), gen);
    s
}

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        cache_capacity_bytes: 2 << 20,
        ..StoreConfig::new(dir)
    }
}

/// The child: commit forever, print each acknowledged generation.
#[test]
#[ignore = "run by killloop_200_sigkills as its child"]
fn killloop_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (mut store, _) = Store::open(cfg(Path::new(&dir))).expect("child open");
    let mut prev = None;
    loop {
        let gen = store.next_generation();
        let got = commit_as_daemon(&mut store, &mut prev, snapshot_for(gen)).expect("child commit");
        assert_eq!(got, gen);
        println!("ACK {gen}");
    }
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
        self.next() % n
    }
}

fn check_after_kill(dir: &Path, last_ack: u64, round: usize) -> u64 {
    if let Ok(st) = json_export::read(&dir.join("port_state.json"), true) {
        let g = st.generation.expect("export has a generation");
        assert_eq!(
            st.snapshot,
            snapshot_for(g),
            "round {round}: export of generation {g} holds another state"
        );
    }
    let (store, r) =
        Store::open(cfg(dir)).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    for g in store.generations().unwrap() {
        assert!(
            g.is_valid(),
            "round {round}: generation {} invalid: {:?}",
            g.number,
            g.problem
        );
        let (_, snap) = store.load(g.number).unwrap();
        assert_eq!(
            snap,
            snapshot_for(g.number),
            "round {round}: generation {} holds another state",
            g.number
        );
    }
    if last_ack == 0 && r.generation.is_none() {
        return 0;
    }
    assert_eq!(
        r.source,
        RecoverySource::Newest,
        "round {round}: {:?}",
        r.steps
    );
    let g = r.generation.unwrap();
    assert!(
        g >= last_ack,
        "round {round}: recovered generation {g} < last acknowledged {last_ack}"
    );
    assert_eq!(
        r.snapshot,
        Some(snapshot_for(g)),
        "round {round}: wrong state for generation {g}"
    );
    g
}

#[test]
fn killloop_200_sigkills() {
    let rounds: usize = std::env::var("STORE_KILLLOOP_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("STORE_KILLLOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill loop: {rounds} rounds, STORE_KILLLOOP_SEED={seed}");
    let mut rng = Rng(seed);
    // A real disk, not tmpfs, so fsync means something (/tmp is the root fs here; honour TMPDIR).
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("state");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let (mut last_ack, mut acks_total, mut kills_before_ack) = (0u64, 0u64, 0usize);
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "killloop_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(g) = line
                    .strip_prefix("ACK ")
                    .and_then(|g| g.parse::<u64>().ok())
                {
                    let _ = tx.send(g);
                }
            }
        });
        let mut acked = Vec::new();
        if rng.below(10) == 0 {
            // Sometimes kill during open / the first commit.
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        } else {
            acked.extend(rx.recv_timeout(Duration::from_secs(20)).ok());
            std::thread::sleep(Duration::from_micros(rng.below(60_000)));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: child exited on its own: {status:?}"
        );
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        if acked.is_empty() {
            kills_before_ack += 1;
        }
        acks_total += acked.len() as u64;
        if let Some(&g) = acked.last() {
            assert!(
                g > last_ack,
                "round {round}: generation numbers went backwards"
            );
            last_ack = g;
        }
        let recovered = check_after_kill(&dir, last_ack, round);
        // Generations never go backwards across rounds either: the next child continues from here.
        last_ack = last_ack.max(recovered);
    }
    eprintln!(
        "kill loop: {rounds} SIGKILLs in {:.1} s, {acks_total} acknowledged commits, {kills_before_ack} kills before the first ack, final generation {last_ack}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        acks_total > rounds as u64,
        "the child barely committed: the loop proves little"
    );
}
