//! Hostile Redis contents (issue 15): bytes that are not UTF-8, keys of another type, absurd numbers,
//! written by "another client" into the tables portsyncd reads and writes. The real daemon against a
//! real redis-server and real netlink (a private netns): it never stops, never reconnects over a bad
//! entry, keeps what others wrote, and keeps publishing every port the bad entry does not concern.
//! Effects are judged from what Redis holds and receives (MONITOR), not from the daemon's counters.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::daemon::{wait_until, Daemon, CONFIG_DB, STATE_DB};
use common::monitor::Monitor;
use common::rig::{rig_with, Rig, T};

/// HGETALL as raw bytes (the tests' own client; `redis-cli` would escape them).
fn raw_hgetall(rig: &Rig, db: i64, key: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut con = rig.redis.client(db);
    let flat: Vec<Vec<u8>> = redis::cmd("HGETALL")
        .arg(key)
        .query(&mut con)
        .unwrap_or_default();
    flat.chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// `HSET key field value` with raw bytes.
fn raw_hset(rig: &Rig, db: i64, key: &str, field: &[u8], value: &[u8]) {
    let mut con = rig.redis.client(db);
    redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .exec(&mut con)
        .expect("HSET");
}

fn alive(d: &mut Daemon) -> bool {
    d.wait(Duration::ZERO).is_none()
}

fn entry_errors(d: &Daemon, db: &str, reason: &str) -> f64 {
    d.metric(&format!(
        "portsyncd_redis_entry_errors_total{{db=\"{db}\",reason=\"{reason}\"}}"
    ))
}

/// HSETs of STATE_DB `PORT_TABLE|<port>` seen by `mon`.
fn hsets_of(mon: &Monitor, port: &str) -> usize {
    let key = format!("\"PORT_TABLE|{port}\"");
    mon.state_port_writes()
        .iter()
        .filter(|l| l.contains("\"HSET\"") && l.contains(&key))
        .count()
}

/// Row 1 of the issue: a foreign field that is not UTF-8 in STATE_DB `PORT_TABLE|Ethernet0`, and a
/// value that is not UTF-8 in one of portsyncd's own fields of `PORT_TABLE|Ethernet4`. The
/// anti-entropy read-back and the reconnect read-back go on working, the own field is rewritten,
/// the foreign one kept byte for byte, and every port keeps publishing.
#[test]
fn non_utf8_in_state_db_never_stops_read_backs_or_publishing() {
    let (rig, names) = rig_with(3);
    let mut d = rig.start(&["--resync-interval-secs", "1"]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_ports(&names);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );

    let foreign: (&[u8], &[u8]) = (b"description", b"caf\xe9 \xff\xfe\x00end");
    raw_hset(&rig, 6, "PORT_TABLE|Ethernet0", foreign.0, foreign.1);
    raw_hset(&rig, 6, "PORT_TABLE|Ethernet4", b"mtu", b"91\xff00");
    // The anti-entropy check reads both back: Ethernet4's own field is rewritten.
    assert!(
        rig.wait_converged(&names, T),
        "anti-entropy did not repair: {:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );

    // A reconnect: its read-back meets the foreign bytes too.
    rig.cli(STATE_DB, &["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(
        wait_until(T, || d.log_text().contains("read back after the reconnect")),
        "{}",
        d.log_text()
    );
    // Publishing goes on, for every port: a change after both read-backs lands.
    for p in &names {
        rig.ns.exec(&["ip", "link", "set", p, "mtu", "1400"]);
    }
    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    let e0 = raw_hgetall(&rig, 6, "PORT_TABLE|Ethernet0");
    assert_eq!(
        e0.get(foreign.0).map(Vec::as_slice),
        Some(foreign.1),
        "the foreign field is kept byte for byte"
    );
    assert!(alive(&mut d), "{}", d.log_text());
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// Row 2 of the issue: CONFIG_DB `PORT|Ethernet0` holds a Latin-1 `description` (and a field whose
/// name is not UTF-8). Start-up goes on: APPL_DB gets the bytes verbatim, PortConfigDone is
/// written, the ports are published.
#[test]
fn non_utf8_config_db_values_are_copied_to_appl_db_verbatim() {
    let (rig, names) = rig_with(2);
    let latin1: &[u8] = b"Uplink \xe0 Z\xfcrich";
    raw_hset(&rig, 4, "PORT|Ethernet0", b"description", latin1);
    raw_hset(&rig, 4, "PORT|Ethernet0", b"x-\xff", b"\x00\x01");
    let mut d = rig.start(&[]);
    assert!(
        wait_until(T, || !rig.appl("PORT_TABLE:PortConfigDone").is_empty()),
        "no PortConfigDone\n{}",
        d.log_text()
    );
    assert!(
        wait_until(T, || raw_hgetall(&rig, 0, "PORT_TABLE:Ethernet0")
            .contains_key(b"description".as_slice())),
        "APPL_DB PORT_TABLE:Ethernet0 not written\n{}",
        d.log_text()
    );
    let appl = raw_hgetall(&rig, 0, "PORT_TABLE:Ethernet0");
    let config = raw_hgetall(&rig, 4, "PORT|Ethernet0");
    assert_eq!(appl, config, "CONFIG_DB's bytes, verbatim");
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_ports(&names);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    assert!(alive(&mut d), "{}", d.log_text());
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// Row 3 of the issue: STATE_DB `PORT_TABLE|Ethernet0` is a string at start. No exit; the other
/// ports converge; the bad key is counted and its write retried with a backoff (no hot loop, no
/// reconnect), never deleted by portsyncd; once its owner removes it, the port is published.
#[test]
fn a_state_db_key_of_another_type_is_skipped_and_retried_until_fixed() {
    let (rig, names) = rig_with(3);
    rig.cli(STATE_DB, &["SET", "PORT_TABLE|Ethernet0", "not a hash"]);
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_ports(&names);
    let others = &names[1..];
    assert!(
        rig.wait_converged(others, T),
        "{:?}\n{}",
        rig.mismatches(others),
        d.log_text()
    );
    assert!(
        wait_until(T, || entry_errors(&d, "STATE_DB", "wrong_type") >= 2.0),
        "{}\n{}",
        d.metrics(),
        d.log_text()
    );
    assert!(d.log_text().contains("redis entry unusable"));
    // Retried with a backoff: a handful of attempts in 3 s, not a loop; no reconnect.
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let attempts = hsets_of(&mon, "Ethernet0");
    assert!(
        (1..=8).contains(&attempts),
        "{attempts} attempts in {:?}",
        t.elapsed()
    );
    assert_eq!(d.metric("portsyncd_redis_reconnects_total"), 0.0);
    assert_eq!(
        rig.cli(STATE_DB, &["TYPE", "PORT_TABLE|Ethernet0"]).trim(),
        "string",
        "another writer's key is never deleted"
    );
    assert!(alive(&mut d), "{}", d.log_text());
    // The owner removes it: the port is published without a restart.
    rig.cli(STATE_DB, &["DEL", "PORT_TABLE|Ethernet0"]);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// One HSET of a MULTI/EXEC batch fails with WRONGTYPE: the other writes are confirmed (never sent
/// again), the failed port is retried with its own backoff and published once the key is fixed.
#[test]
fn one_rejected_write_in_a_batch_leaves_the_others_confirmed() {
    let (rig, names) = rig_with(3);
    let mut d = rig.start(&[]);
    assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
    rig.add_ports(&names);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}",
        rig.mismatches(&names)
    );
    rig.cli(STATE_DB, &["DEL", "PORT_TABLE|Ethernet0"]);
    rig.cli(STATE_DB, &["SET", "PORT_TABLE|Ethernet0", "x"]);
    let mon = Monitor::start(&rig.redis.socket, rig.state_dir.with_extension("monitor"));
    // One change of every port, in one go: one batch.
    rig.ns.ip_batch(
        &names
            .iter()
            .map(|p| format!("link set {p} mtu 1300\n"))
            .collect::<String>(),
    );
    let others = &names[1..];
    assert!(
        rig.wait_converged(others, T),
        "{:?}\n{}",
        rig.mismatches(others),
        d.log_text()
    );
    let settled = |p: &str| hsets_of(&mon, p);
    let before: Vec<usize> = others.iter().map(|p| settled(p)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<usize> = others.iter().map(|p| settled(p)).collect();
    assert_eq!(
        before,
        after,
        "confirmed writes are not sent again\n{}",
        d.log_text()
    );
    assert!(
        hsets_of(&mon, "Ethernet0") >= 2,
        "the rejected one is retried"
    );
    assert_eq!(d.metric("portsyncd_redis_reconnects_total"), 0.0);
    rig.cli(STATE_DB, &["DEL", "PORT_TABLE|Ethernet0"]);
    assert!(
        rig.wait_converged(&names, T),
        "{:?}\n{}",
        rig.mismatches(&names),
        d.log_text()
    );
    assert!(alive(&mut d), "{}", d.log_text());
    assert_eq!(d.terminate().code(), Some(0), "{}", d.log_text());
}

/// One hostile shape of the warm-restart and metadata entries, set up before a start.
struct Case {
    name: &'static str,
    setup: &'static [(i64, &'static [&'static [u8]])],
    /// The start that follows is warm.
    warm: bool,
    /// `restore_count` afterwards.
    restore_count: Option<&'static [u8]>,
}

const CASES: &[Case] = &[
    Case {
        name: "enable table entries are strings",
        setup: &[
            (6, &[b"SET", b"WARM_RESTART_ENABLE_TABLE|system", b"true"]),
            (6, &[b"SET", b"WARM_RESTART_ENABLE_TABLE|swss", b"x"]),
        ],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "enable is not UTF-8",
        setup: &[(
            6,
            &[
                b"HSET",
                b"WARM_RESTART_ENABLE_TABLE|system",
                b"enable",
                b"tru\xe9",
            ],
        )],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "WARM_RESTART_TABLE|portsyncd is a list, warm enabled",
        setup: &[
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_ENABLE_TABLE|system",
                    b"enable",
                    b"true",
                ],
            ),
            (6, &[b"RPUSH", b"WARM_RESTART_TABLE|portsyncd", b"a", b"b"]),
        ],
        warm: false,
        restore_count: None,
    },
    Case {
        name: "restore_count u64::MAX",
        setup: &[
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_ENABLE_TABLE|system",
                    b"enable",
                    b"true",
                ],
            ),
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_TABLE|portsyncd",
                    b"restore_count",
                    b"18446744073709551615",
                ],
            ),
        ],
        warm: true,
        restore_count: Some(b"1"),
    },
    Case {
        name: "restore_count garbage bytes",
        setup: &[
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_ENABLE_TABLE|swss",
                    b"enable",
                    b"true",
                ],
            ),
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_TABLE|portsyncd",
                    b"restore_count",
                    b"\xff\xfe7",
                ],
            ),
        ],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "restore_count huge text",
        setup: &[
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_ENABLE_TABLE|swss",
                    b"enable",
                    b"true",
                ],
            ),
            (
                6,
                &[
                    b"HSET",
                    b"WARM_RESTART_TABLE|portsyncd",
                    b"restore_count",
                    b"99999999999999999999999999999999999999",
                ],
            ),
        ],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "portsyncd_timer absurd, WARM_RESTART|swss",
        setup: &[(
            4,
            &[
                b"HSET",
                b"WARM_RESTART|swss",
                b"portsyncd_timer",
                b"1e999\xff",
            ],
        )],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "WARM_RESTART|swss is a set",
        setup: &[(4, &[b"SADD", b"WARM_RESTART|swss", b"portsyncd_timer"])],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "DEVICE_METADATA|localhost is a string",
        setup: &[(4, &[b"SET", b"DEVICE_METADATA|localhost", b"dpu"])],
        warm: false,
        restore_count: Some(b"0"),
    },
    Case {
        name: "switch_type bytes",
        setup: &[(
            4,
            &[
                b"HSET",
                b"DEVICE_METADATA|localhost",
                b"switch_type",
                b"dp\xf5",
            ],
        )],
        warm: false,
        restore_count: Some(b"0"),
    },
];

fn run_raw(rig: &Rig, db: i64, args: &[&[u8]]) {
    let mut con = rig.redis.client(db);
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.exec(&mut con).expect("setup command");
}

/// The warm-restart tables (STATE_DB WARM_RESTART_ENABLE_TABLE, WARM_RESTART_TABLE|portsyncd,
/// CONFIG_DB WARM_RESTART|swss) and DEVICE_METADATA of another type, with bytes that are not UTF-8
/// or absurd numbers: every start goes on, warm or cold by SONiC's rule, and the ports converge.
/// `restore_count` = u64::MAX: the warm start counts again from 1 (SONiC's uint32 would wrap).
#[test]
fn hostile_warm_restart_and_metadata_entries_never_stop_start_up() {
    let (rig, names) = rig_with(2);
    for case in CASES {
        // No netdev at start: a cold start would set existing ones down and ignore them.
        for p in &names {
            rig.ns.exec(&["ip", "link", "del", p]);
        }
        for db in [STATE_DB, CONFIG_DB] {
            for key in [
                "WARM_RESTART_ENABLE_TABLE|system",
                "WARM_RESTART_ENABLE_TABLE|swss",
                "WARM_RESTART_TABLE|portsyncd",
                "WARM_RESTART|swss",
                "DEVICE_METADATA|localhost",
            ] {
                rig.cli(db, &["DEL", key]);
            }
        }
        for (db, args) in case.setup {
            run_raw(&rig, *db, args);
        }
        let mut d = rig.start(&[]);
        let mode = if case.warm { "warm" } else { "cold" };
        assert!(
            wait_until(T, || d
                .metric(&format!("portsyncd_starts_total{{mode=\"{mode}\"}}"))
                >= 1.0),
            "{}: not a {mode} start\n{}",
            case.name,
            d.log_text()
        );
        assert!(d.wait_log("initial sync complete", T), "{}", d.log_text());
        rig.add_ports(&names);
        assert!(
            rig.wait_converged(&names, T),
            "{}: {:?}\n{}",
            case.name,
            rig.mismatches(&names),
            d.log_text()
        );
        let count = raw_hgetall(&rig, 6, "WARM_RESTART_TABLE|portsyncd")
            .get(b"restore_count".as_slice())
            .cloned();
        assert_eq!(
            count.as_deref(),
            case.restore_count,
            "{}\n{}",
            case.name,
            d.log_text()
        );
        assert!(alive(&mut d), "{}: {}", case.name, d.log_text());
        assert_eq!(d.metric("portsyncd_redis_reconnects_total"), 0.0);
        assert_eq!(
            d.terminate().code(),
            Some(0),
            "{}: {}",
            case.name,
            d.log_text()
        );
    }
}

/// APPL_DB `PORT_TABLE:<port>` of another type: the HEXISTS of a cold start (which ports hold
/// PortInitDone back) and the EXISTS checks answer for the other ports and count the bad one.
#[test]
fn appl_db_keys_of_another_type_in_the_checks() {
    let srv = common::redis::RedisServer::start();
    let layout = portsyncd::sonic::DbLayout::from_redis_url(&srv.url()).expect("layout");
    let mut d = portsyncd::sonic::SonicDb::new(layout);
    srv.cli(&["-n", "0", "SET", "PORT_TABLE:Ethernet0", "x"]);
    srv.cli(&[
        "-n",
        "0",
        "HSET",
        "PORT_TABLE:Ethernet4",
        "admin_status",
        "up",
    ]);
    let names = vec!["Ethernet0".to_string(), "Ethernet4".to_string()];
    let with_admin = d
        .app_ports_with_admin_status(&names)
        .expect("one bad key does not fail the others");
    assert_eq!(
        with_admin.into_iter().collect::<Vec<_>>(),
        ["Ethernet4".to_string()]
    );
    let existing = d.app_ports_existing(&names).expect("EXISTS");
    assert_eq!(existing.len(), 2, "EXISTS: a key of any type exists");
}
