//! Generative tests of every Redis table portsyncd reads (issue 15, item 5): arbitrary bytes in any
//! field, keys of another type, huge values, names that are not UTF-8, in CONFIG_DB, STATE_DB,
//! APPL_DB and the warm-restart tables, against a real redis-server.
//!
//! - `table_functions_*`: the real `SonicDb` functions start-up and the Redis writer use, many cases
//!   against one server (flushed between cases).
//! - `the_daemon_*`: the real daemon in a private netns, a few cases (each a whole switch).
//!
//! The oracle: no panic, bounded time, never a reconnect, a clear answer for every entry (exactly the
//! unusable ones are skipped), and publishing of the unaffected ports goes on, with other writers'
//! bytes kept as they were. `PROPTEST_CASES` sets the number of cases of each test (the defaults keep
//! the CI slice short); failing cases are kept in `tests/hostile_redis_gen.proptest-regressions`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use common::daemon::wait_until;
use common::redis::RedisServer;
use common::rig::{Rig, T};
use portsyncd::core::PortStatus;
use portsyncd::sonic::{DbLayout, EntryErrorReason, SonicDb, StateWrite};

type Hash = BTreeMap<Vec<u8>, Vec<u8>>;

/// `PROPTEST_CASES`, else `default`. Shrinking is bounded: a failing daemon case waits out its
/// timeouts, so a long run must not spend hours shrinking one failure.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // tests/hostile_redis_gen.proptest-regressions
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// What one key holds.
#[derive(Debug, Clone)]
enum Entry {
    Absent,
    Hash(Hash),
    Str(Vec<u8>),
    List,
    Set,
}

impl Entry {
    fn hash(&self) -> Option<&Hash> {
        match self {
            Entry::Hash(h) => Some(h),
            _ => None,
        }
    }

    /// Another type than a hash.
    fn wrong_type(&self) -> bool {
        matches!(self, Entry::Str(_) | Entry::List | Entry::Set)
    }

    fn write(&self, con: &mut redis::Connection, key: &[u8]) {
        let r = match self {
            Entry::Absent => Ok(()),
            Entry::Hash(h) => {
                let mut c = redis::cmd("HSET");
                c.arg(key);
                for (f, v) in h {
                    c.arg(f.as_slice()).arg(v.as_slice());
                }
                c.exec(con)
            }
            Entry::Str(v) => redis::cmd("SET").arg(key).arg(v.as_slice()).exec(con),
            Entry::List => redis::cmd("RPUSH").arg(key).arg("a").exec(con),
            Entry::Set => redis::cmd("SADD").arg(key).arg("a").exec(con),
        };
        r.expect("seeding an entry");
    }
}

/// Any bytes, sometimes text, sometimes empty, sometimes huge (64-192 KiB).
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..max),
        2 => "[ -~]{0,16}".prop_map(String::into_bytes),
        1 => (1usize..4).prop_map(|k| vec![0xe9; k * 65536]),
    ]
}

/// Values that look like what the fields hold, or nearly.
fn value(allow_true: bool) -> impl Strategy<Value = Vec<u8>> {
    let truthy: &'static [u8] = if allow_true { b"true" } else { b"tru\xe9" };
    prop_oneof![
        4 => bytes(24),
        1 => "[0-9]{1,25}".prop_map(String::into_bytes),
        1 => Just(b"18446744073709551615".to_vec()),
        1 => Just(b"-1".to_vec()),
        1 => Just(truthy.to_vec()),
        1 => Just(b"dpu".to_vec()),
        1 => Just(b"up".to_vec()),
    ]
}

/// A hash whose field names are sometimes the ones portsyncd reads or writes.
fn hash(allow_true: bool) -> impl Strategy<Value = Hash> {
    let field = prop_oneof![
        3 => bytes(12),
        1 => prop::sample::select(vec![
            b"enable".to_vec(),
            b"restore_count".to_vec(),
            b"portsyncd_timer".to_vec(),
            b"switch_type".to_vec(),
            b"state".to_vec(),
            b"admin_status".to_vec(),
            b"netdev_oper_status".to_vec(),
            b"mtu".to_vec(),
            b"description".to_vec(),
        ]),
    ];
    btree_map(field, value(allow_true), 1..6)
}

fn entry(allow_true: bool) -> impl Strategy<Value = Entry> {
    prop_oneof![
        2 => Just(Entry::Absent),
        5 => hash(allow_true).prop_map(Entry::Hash),
        1 => bytes(16).prop_map(Entry::Str),
        1 => Just(Entry::List),
        1 => Just(Entry::Set),
    ]
}

/// A key name that is not UTF-8 after the table prefix.
fn bad_name() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..8).prop_map(|mut tail| {
        let mut n = b"Ethernet\xff".to_vec();
        n.append(&mut tail);
        n
    })
}

/// One port's entries in the three databases.
#[derive(Debug, Clone)]
struct PortWorld {
    config: Entry,
    state: Entry,
    appl: Entry,
    /// APPL_DB `_PORT_TABLE:<port>` (the ProducerStateTable staging hash) is a string.
    staging_bad: bool,
}

/// Keys of the warm-restart tables and the metadata, with their database.
const WARM_KEYS: [(i64, &str); 5] = [
    (6, "WARM_RESTART_ENABLE_TABLE|system"),
    (6, "WARM_RESTART_ENABLE_TABLE|swss"),
    (6, "WARM_RESTART_TABLE|portsyncd"),
    (4, "WARM_RESTART|swss"),
    (4, "DEVICE_METADATA|localhost"),
];

#[derive(Debug, Clone)]
struct World {
    ports: Vec<PortWorld>,
    bad_names: Vec<Vec<u8>>,
    warm: Vec<Entry>,
}

fn world() -> impl Strategy<Value = World> {
    let port = (
        entry(true),
        entry(true),
        entry(true),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(config, state, appl, staging_bad)| PortWorld {
            config,
            state,
            appl,
            staging_bad,
        });
    (
        vec(port, 1..7),
        vec(bad_name(), 0..3),
        vec(entry(true), WARM_KEYS.len()),
    )
        .prop_map(|(ports, bad_names, warm)| World {
            ports,
            bad_names,
            warm,
        })
}

fn name(i: usize) -> String {
    format!("Ethernet{}", i * 4)
}

fn raw_hgetall(con: &mut redis::Connection, key: &str) -> Hash {
    let flat: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(key).query(con).expect("HGETALL");
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn own(s: PortStatus) -> Hash {
    s.fields()
        .into_iter()
        .map(|(f, v)| (f.into_bytes(), v.into_bytes()))
        .collect()
}

fn seed(srv: &RedisServer, w: &World) {
    let (mut config, mut state, mut appl) = (srv.client(4), srv.client(6), srv.client(0));
    for (i, p) in w.ports.iter().enumerate() {
        let n = name(i);
        p.config.write(&mut config, format!("PORT|{n}").as_bytes());
        p.state
            .write(&mut state, format!("PORT_TABLE|{n}").as_bytes());
        p.appl
            .write(&mut appl, format!("PORT_TABLE:{n}").as_bytes());
        if p.staging_bad {
            Entry::Str(b"x".to_vec()).write(&mut appl, format!("_PORT_TABLE:{n}").as_bytes());
        }
    }
    for b in &w.bad_names {
        let h = Entry::Hash(Hash::from([(b"mtu".to_vec(), b"9100".to_vec())]));
        h.write(&mut config, &[b"PORT|".as_slice(), b].concat());
        h.write(&mut state, &[b"PORT_TABLE|".as_slice(), b].concat());
    }
    for ((db, key), e) in WARM_KEYS.iter().zip(&w.warm) {
        let mut con = srv.client(*db);
        e.write(&mut con, key.as_bytes());
    }
}

/// The table functions against one world; panics (a failed case) on any wrong answer.
fn check_tables(srv: &RedisServer, w: &World) {
    let t = Instant::now();
    let mut d = SonicDb::new(DbLayout::from_redis_url(&srv.url()).expect("layout"));
    let names: Vec<String> = (0..w.ports.len()).map(name).collect();

    // Warm-restart tables and metadata: an answer, whatever they hold.
    d.warm_enabled().expect("warm_enabled");
    d.read_restore_count().expect("restore_count");
    let timer = d.read_warm_timer().expect("timer");
    assert!(timer.is_none_or(|t| (1..=9999).contains(&t)), "{timer:?}");
    d.switch_type().expect("switch_type");

    // CONFIG_DB: exactly the hashes with a text name, byte for byte.
    let config = d.read_config_ports().expect("read_config_ports");
    let want: BTreeMap<String, Hash> = w
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((name(i), p.config.hash()?.clone())))
        .collect();
    let got: BTreeMap<String, Hash> = config
        .iter()
        .map(|(n, f)| (n.clone(), f.iter().cloned().collect()))
        .collect();
    assert_eq!(got, want, "CONFIG_DB PORT");

    // APPL_DB: verbatim copies; an entry whose staging hash is not a hash is refused alone.
    let refused = d.publish_app_ports(&config).expect("publish_app_ports");
    let expect_refused = w
        .ports
        .iter()
        .enumerate()
        .filter(|(i, p)| p.staging_bad && want.contains_key(&name(*i)))
        .count();
    assert_eq!(refused, expect_refused, "refused APPL_DB entries");
    let mut appl = srv.client(0);
    for (n, fields) in &want {
        let i = names.iter().position(|x| x == n).expect("a port");
        if !w.ports[i].staging_bad {
            assert_eq!(
                &raw_hgetall(&mut appl, &format!("_PORT_TABLE:{n}")),
                fields,
                "APPL_DB staging of {n}"
            );
        }
    }
    let exists: BTreeSet<String> = w
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| !matches!(p.appl, Entry::Absent))
        .map(|(i, _)| name(i))
        .collect();
    assert_eq!(d.app_ports_existing(&names).expect("EXISTS"), exists);
    let with_admin: BTreeSet<String> = w
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.appl
                .hash()
                .is_some_and(|h| h.contains_key(b"admin_status".as_slice()))
        })
        .map(|(i, _)| name(i))
        .collect();
    assert_eq!(
        d.app_ports_with_admin_status(&names).expect("HEXISTS"),
        with_admin
    );

    // STATE_DB: the start-up read, the read-back, and a write of every port.
    let state = d.read_state_ports().expect("read_state_ports");
    let want_state: BTreeMap<String, Hash> = w
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((name(i), p.state.hash()?.clone())))
        .collect();
    assert_eq!(state, want_state, "STATE_DB PORT_TABLE");
    let rows = d.read_state_port_rows(&names).expect("read-back");
    for (p, row) in w.ports.iter().zip(&rows) {
        match &p.state {
            Entry::Absent => assert_eq!(row.as_ref(), Some(&Hash::new())),
            Entry::Hash(h) => assert_eq!(row.as_ref(), Some(h)),
            _ => assert_eq!(row, &None),
        }
    }
    let status = PortStatus {
        admin_up: true,
        oper_up: false,
        mtu: 9100,
    };
    let writes: Vec<StateWrite> = names
        .iter()
        .map(|n| StateWrite::SetFields {
            name: n.clone(),
            fields: status.field_values(),
        })
        .collect();
    let rejected = d.apply_state_writes(&writes).expect("apply_state_writes");
    let wrong: Vec<String> = w
        .ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state.wrong_type())
        .map(|(i, _)| name(i))
        .collect();
    assert_eq!(
        rejected, wrong,
        "exactly the keys of another type are rejected"
    );
    let mut st = srv.client(6);
    for (i, p) in w.ports.iter().enumerate() {
        if p.state.wrong_type() {
            continue;
        }
        let mut expect = p.state.hash().cloned().unwrap_or_default();
        expect.extend(own(status));
        assert_eq!(
            raw_hgetall(&mut st, &format!("PORT_TABLE|{}", name(i))),
            expect,
            "other writers' fields are kept"
        );
    }
    let counted: u64 = d
        .take_entry_errors()
        .iter()
        .filter(|(db, r, _)| *db == "STATE_DB" && *r == EntryErrorReason::WrongType)
        .map(|(_, _, n)| n)
        .sum();
    // Each wrong-typed key: once at the start-up read (skipped), the read-back and the write.
    assert!(
        counted >= 3 * wrong.len() as u64,
        "{counted} < 3 x {}",
        wrong.len()
    );
    assert_eq!(d.reconnects(), 0, "a bad entry is never a reconnect");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

/// The table functions on any contents of the three databases and the warm-restart tables. One
/// redis-server serves every case (a new one per case costs more than the case); it belongs to the
/// test, so it stops with it (a `static` one outlived the test process: one leaked redis-server per
/// run).
#[test]
fn table_functions_answer_for_every_entry_and_skip_only_the_unusable() {
    let srv = RedisServer::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        // What `proptest!` sets: the regressions file next to this source is read and written.
        source_file: Some(file!()),
        ..config(32)
    });
    let result = runner.run(&world(), |w| {
        srv.cli(&["FLUSHALL"]);
        seed(&srv, &w);
        check_tables(&srv, &w);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A switch for the daemon: per port whether it is affected (CONFIG_DB or STATE_DB key of another
/// type), foreign bytes for the others, and the warm-restart tables (never enabling a warm start:
/// a warm start with an APPL_DB nobody filled publishes nothing, rightly).
#[derive(Debug, Clone)]
struct DaemonWorld {
    /// (CONFIG_DB extra fields, STATE_DB entry before start, affected via CONFIG_DB type).
    ports: Vec<(Hash, Entry, bool)>,
    bad_names: Vec<Vec<u8>>,
    warm: Vec<Entry>,
}

fn daemon_world() -> impl Strategy<Value = DaemonWorld> {
    let port = (hash(false), entry(false), prop::bool::weighted(0.2));
    (
        vec(port, 2..5),
        vec(bad_name(), 0..2),
        vec(entry(false), WARM_KEYS.len()),
    )
        .prop_map(|(ports, bad_names, warm)| DaemonWorld {
            ports,
            bad_names,
            warm,
        })
}

fn run_daemon_case(w: &DaemonWorld) {
    let names: Vec<String> = (0..w.ports.len()).map(name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rig = Rig::new(&refs);
    let (mut config, mut state) = (rig.redis.client(4), rig.redis.client(6));
    let mut affected = BTreeSet::new();
    for (i, (extra, st, config_bad)) in w.ports.iter().enumerate() {
        let n = name(i);
        let key = format!("PORT|{n}");
        if *config_bad {
            redis::cmd("DEL").arg(&key).exec(&mut config).expect("DEL");
            Entry::List.write(&mut config, key.as_bytes());
            affected.insert(n.clone());
        } else {
            Entry::Hash(extra.clone()).write(&mut config, key.as_bytes());
        }
        st.write(&mut state, format!("PORT_TABLE|{n}").as_bytes());
        if st.wrong_type() {
            affected.insert(n);
        }
    }
    for b in &w.bad_names {
        let h = Entry::Hash(Hash::from([(b"mtu".to_vec(), b"9100".to_vec())]));
        h.write(&mut config, &[b"PORT|".as_slice(), b].concat());
        h.write(&mut state, &[b"PORT_TABLE|".as_slice(), b].concat());
    }
    for ((db, key), e) in WARM_KEYS.iter().zip(&w.warm) {
        let mut con = rig.redis.client(*db);
        redis::cmd("DEL").arg(*key).exec(&mut con).expect("DEL");
        e.write(&mut con, key.as_bytes());
    }
    let config_before: BTreeMap<String, Hash> = names
        .iter()
        .filter(|n| !affected.contains(*n))
        .map(|n| (n.clone(), raw_hgetall(&mut config, &format!("PORT|{n}"))))
        .collect();

    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_ports(&names);
    let unaffected: Vec<String> = names
        .iter()
        .filter(|n| !affected.contains(*n))
        .cloned()
        .collect();
    assert!(
        rig.wait_converged(&unaffected, T),
        "{:?}\n{}",
        rig.mismatches(&unaffected),
        d.log_text()
    );
    // APPL_DB got CONFIG_DB's bytes verbatim; other writers' STATE_DB fields are kept.
    let mut appl = rig.redis.client(0);
    for (n, fields) in &config_before {
        assert!(
            wait_until(T, || &raw_hgetall(&mut appl, &format!("PORT_TABLE:{n}"))
                == fields),
            "APPL_DB PORT_TABLE:{n}\n{}",
            d.log_text()
        );
    }
    for (i, (_, st, _)) in w.ports.iter().enumerate() {
        let n = name(i);
        // An entry holding portsyncd's fields (complete, or garbled by another writer) of a port
        // that did not exist at the first dump is portsyncd's stale entry and is deleted, as
        // RTM_DELLINK deletes the whole key (a cold start's rule); an entry of other writers'
        // fields only is only ever written to.
        if let (Entry::Hash(h), false) = (st, affected.contains(&n)) {
            if portsyncd::core::port::has_own_fields(h) {
                continue;
            }
            let now = raw_hgetall(&mut state, &format!("PORT_TABLE|{n}"));
            for (f, v) in h {
                if own(PortStatus {
                    admin_up: true,
                    oper_up: true,
                    mtu: 0,
                })
                .contains_key(f)
                {
                    continue;
                }
                assert_eq!(now.get(f), Some(v), "{n}: a foreign field changed");
            }
        }
    }
    assert_eq!(d.wait(Duration::ZERO), None, "{}", d.log_text());
    assert_eq!(d.metric("portsyncd_redis_reconnects_total"), 0.0);
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

proptest! {
    #![proptest_config(config(3))]

    /// The real daemon on a switch with hostile Redis contents keeps publishing the ports they do
    /// not concern.
    #[test]
    fn the_daemon_keeps_publishing_the_ports_hostile_entries_do_not_concern(w in daemon_world()) {
        run_daemon_case(&w);
    }
}
