//! CONFIG_DB / STATE_DB / warm-restart table helpers against a real redis-server, with the layout
//! read from SONiC-style config files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::redis::RedisServer;
use portsyncd::sonic::{DbError, DbLayout, RedisAddr, SonicDb, StateWrite};

fn db(srv: &RedisServer) -> SonicDb {
    SonicDb::new(DbLayout::from_redis_url(&srv.url()).unwrap())
}

fn hgetall(srv: &RedisServer, db: &str, key: &str) -> BTreeMap<String, String> {
    let out = srv.cli(&["-n", db, "HGETALL", key]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

fn text_pair((f, v): &(Vec<u8>, Vec<u8>)) -> (String, String) {
    (
        String::from_utf8_lossy(f).into_owned(),
        String::from_utf8_lossy(v).into_owned(),
    )
}

fn set(name: &str, pairs: &[(&str, &str)]) -> StateWrite {
    StateWrite::Set {
        name: name.into(),
        fields: pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn reads_every_config_port_field() {
    let srv = RedisServer::start();
    srv.cli(&[
        "-n",
        "4",
        "HSET",
        "PORT|Ethernet0",
        "lanes",
        "0,1,2,3",
        "alias",
        "etp1",
        "speed",
        "100000",
        "mtu",
        "9100",
    ]);
    srv.cli(&["-n", "4", "HSET", "PORT|Ethernet4", "lanes", "4,5,6,7"]);
    // Not ports: another table sharing the prefix letters, and a different database.
    srv.cli(&["-n", "4", "HSET", "PORTCHANNEL|PortChannel1", "mtu", "9100"]);
    srv.cli(&["-n", "0", "HSET", "PORT|Ethernet8", "lanes", "8"]);
    let mut d = db(&srv);
    let ports = d.read_config_ports().unwrap();
    assert_eq!(ports.keys().collect::<Vec<_>>(), ["Ethernet0", "Ethernet4"]);
    let e0: BTreeMap<String, String> = ports["Ethernet0"].iter().map(text_pair).collect();
    assert_eq!(e0.len(), 4);
    assert_eq!(e0["lanes"], "0,1,2,3");
    assert_eq!(e0["alias"], "etp1");
    assert_eq!(
        ports["Ethernet4"].iter().map(text_pair).collect::<Vec<_>>(),
        [("lanes".to_string(), "4,5,6,7".to_string())]
    );
}

/// The table is read in several pipelines: a key of another type and a name that is not UTF-8 in a
/// later one are each counted once and skipped, and every port before and after them is read.
#[test]
fn unusable_keys_in_a_later_read_batch_are_counted_once_and_skipped() {
    let srv = RedisServer::start();
    let mut con = srv.client(4);
    let mut pipe = redis::pipe();
    for i in 0..900 {
        pipe.cmd("HSET")
            .arg(format!("PORT|Ethernet{i}"))
            .arg("index")
            .arg(i)
            .ignore();
    }
    pipe.cmd("DEL").arg("PORT|Ethernet700").ignore();
    pipe.cmd("RPUSH").arg("PORT|Ethernet700").arg("x").ignore();
    pipe.cmd("HSET")
        .arg(b"PORT|Ethernet\xff".as_slice())
        .arg("index")
        .arg(1)
        .ignore();
    pipe.exec(&mut con).unwrap();
    let mut d = db(&srv);
    let ports = d.read_config_ports().unwrap();
    assert_eq!(ports.len(), 899);
    assert!(!ports.contains_key("Ethernet700"));
    assert_eq!(
        ports["Ethernet899"]
            .iter()
            .map(text_pair)
            .collect::<Vec<_>>(),
        [("index".to_string(), "899".to_string())]
    );
    let errors: u64 = d.take_entry_errors().iter().map(|(_, _, n)| n).sum();
    assert_eq!(errors, 2);
}

#[test]
fn many_config_ports_are_all_read() {
    let srv = RedisServer::start();
    let mut con = srv.client(4);
    let mut pipe = redis::pipe();
    for i in 0..1500 {
        pipe.cmd("HSET")
            .arg(format!("PORT|Ethernet{i}"))
            .arg("index")
            .arg(i)
            .ignore();
    }
    pipe.exec(&mut con).unwrap();
    let ports = db(&srv).read_config_ports().unwrap();
    assert_eq!(ports.len(), 1500);
    assert_eq!(
        ports["Ethernet1499"]
            .iter()
            .map(text_pair)
            .collect::<Vec<_>>(),
        [("index".to_string(), "1499".to_string())]
    );
}

#[test]
fn state_writes_keep_foreign_fields_and_delete() {
    let srv = RedisServer::start();
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "PORT_TABLE|Ethernet0",
        "host_tx_ready",
        "true",
        "speed",
        "100000",
        "mtu",
        "1500",
    ]);
    srv.cli(&["-n", "6", "HSET", "PORT_TABLE|Ethernet4", "state", "ok"]);
    let mut d = db(&srv);
    d.apply_state_writes(&[
        set(
            "Ethernet0",
            &[
                ("state", "ok"),
                ("netdev_oper_status", "up"),
                ("admin_status", "up"),
                ("mtu", "9100"),
            ],
        ),
        StateWrite::Del {
            name: "Ethernet4".into(),
        },
        set("Ethernet8", &[("state", "ok"), ("admin_status", "down")]),
    ])
    .unwrap();
    assert_eq!(
        hgetall(&srv, "6", "PORT_TABLE|Ethernet0"),
        BTreeMap::from([
            ("admin_status".into(), "up".into()),
            ("host_tx_ready".into(), "true".into()),
            ("mtu".into(), "9100".into()),
            ("netdev_oper_status".into(), "up".into()),
            ("speed".into(), "100000".into()),
            ("state".into(), "ok".into()),
        ])
    );
    assert_eq!(srv.cli(&["-n", "6", "EXISTS", "PORT_TABLE|Ethernet4"]), "0");
    let state = d.read_state_ports().unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["Ethernet0", "Ethernet8"]);
    assert_eq!(state["Ethernet8"][b"admin_status".as_slice()], b"down");
    // Nothing leaked into other databases.
    assert_eq!(srv.cli(&["-n", "0", "DBSIZE"]), "0");
    // An empty Set is refused before anything is sent.
    let err = d
        .apply_state_writes(&[
            StateWrite::Del {
                name: "Ethernet0".into(),
            },
            set("Ethernet9", &[]),
        ])
        .unwrap_err();
    assert!(matches!(err, DbError::Refused(_)), "{err}");
    assert_eq!(srv.cli(&["-n", "6", "EXISTS", "PORT_TABLE|Ethernet0"]), "1");
    d.apply_state_writes(&[]).unwrap();
}

#[test]
fn state_writes_are_one_transaction() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    d.apply_state_writes(&[StateWrite::Del { name: "x".into() }])
        .unwrap(); // connect first
    srv.cli(&["CONFIG", "RESETSTAT"]);
    d.apply_state_writes(&[
        set("Ethernet0", &[("state", "ok")]),
        set("Ethernet4", &[("state", "ok")]),
        StateWrite::Del {
            name: "Ethernet8".into(),
        },
    ])
    .unwrap();
    let stats = srv.cli(&["INFO", "commandstats"]);
    let calls = |cmd: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|r| r.split(',').next())
            .map_or(0, |n| n.parse::<u32>().unwrap())
    };
    assert_eq!(
        (calls("multi"), calls("exec"), calls("hset"), calls("del")),
        (1, 1, 2, 1),
        "{stats}"
    );
}

#[test]
fn switch_type_and_warm_tables() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    assert_eq!(d.switch_type().unwrap(), None);
    srv.cli(&[
        "-n",
        "4",
        "HSET",
        "DEVICE_METADATA|localhost",
        "switch_type",
        "dpu",
        "hwsku",
        "x",
    ]);
    assert_eq!(d.switch_type().unwrap().as_deref(), Some(b"dpu".as_slice()));

    assert!(!d.warm_enabled().unwrap());
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "WARM_RESTART_ENABLE_TABLE|swss",
        "enable",
        "false",
    ]);
    assert!(!d.warm_enabled().unwrap());
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "WARM_RESTART_ENABLE_TABLE|swss",
        "enable",
        "true",
    ]);
    assert!(d.warm_enabled().unwrap());
    srv.cli(&["-n", "6", "DEL", "WARM_RESTART_ENABLE_TABLE|swss"]);
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "WARM_RESTART_ENABLE_TABLE|system",
        "enable",
        "true",
    ]);
    assert!(d.warm_enabled().unwrap());

    assert_eq!(d.read_restore_count().unwrap(), None);
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "WARM_RESTART_TABLE|portsyncd",
        "restore_count",
        "garbage",
        "other",
        "keep",
    ]);
    assert_eq!(d.read_restore_count().unwrap(), None);
    d.write_restore_count(3).unwrap();
    assert_eq!(d.read_restore_count().unwrap(), Some(3));
    d.write_warm_state("reconciled").unwrap();
    assert_eq!(
        hgetall(&srv, "6", "WARM_RESTART_TABLE|portsyncd"),
        BTreeMap::from([
            ("other".into(), "keep".into()),
            ("restore_count".into(), "3".into()),
            ("state".into(), "reconciled".into()),
        ])
    );

    assert_eq!(d.read_warm_timer().unwrap(), None);
    srv.cli(&[
        "-n",
        "4",
        "HSET",
        "WARM_RESTART|swss",
        "portsyncd_timer",
        "120",
    ]);
    assert_eq!(d.read_warm_timer().unwrap(), Some(120));
    srv.cli(&[
        "-n",
        "4",
        "HSET",
        "WARM_RESTART|swss",
        "portsyncd_timer",
        "0",
    ]);
    assert_eq!(d.read_warm_timer().unwrap(), None);
    srv.cli(&[
        "-n",
        "4",
        "HSET",
        "WARM_RESTART|swss",
        "portsyncd_timer",
        "10000",
    ]);
    assert_eq!(d.read_warm_timer().unwrap(), None);
}

/// A SONiC-like database_config.json pointing at `socket`, with non-default ids so the test proves
/// the ids come from the file.
fn write_config(path: &Path, socket: &Path, appl: i64, config: i64, state: i64) {
    let text = format!(
        r#"{{
    "INSTANCES": {{
        "redis": {{ "hostname": "127.0.0.1", "port": 1, "unix_socket_path": "{sock}",
                    "persistence_for_warm_boot": "yes" }}
    }},
    "DATABASES": {{
        "APPL_DB": {{ "id": {appl}, "separator": ":", "instance": "redis" }},
        "ASIC_DB": {{ "id": 1, "separator": ":", "instance": "redis" }},
        "COUNTERS_DB": {{ "id": 2, "separator": ":", "instance": "redis" }},
        "CONFIG_DB": {{ "id": {config}, "separator": "|", "instance": "redis" }},
        "STATE_DB": {{ "id": {state}, "separator": "|", "instance": "redis" }}
    }},
    "VERSION": "1.0"
}}"#,
        sock = socket.display()
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn layout_from_config_file_and_namespace() {
    let host = RedisServer::start();
    let asic0 = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("sonic-db/database_config.json");
    write_config(&cfg, &host.socket, 0, 4, 6);
    write_config(
        &root.path().join("redis0/sonic-db/database_config.json"),
        &asic0.socket,
        10,
        11,
        12,
    );
    std::fs::write(
        root.path().join("sonic-db/database_global.json"),
        r#"{"INCLUDES": [{"include": "database_config.json"},
            {"namespace": "asic0", "include": "../redis0/sonic-db/database_config.json"}],
            "VERSION": "1.0"}"#,
    )
    .unwrap();

    let layout = DbLayout::from_config_file(&cfg, Some("asic0")).unwrap();
    assert_eq!(layout.state.addr, RedisAddr::Unix(asic0.socket.clone()));
    assert_eq!(
        (layout.appl.id, layout.config.id, layout.state.id),
        (10, 11, 12)
    );
    let mut d = SonicDb::new(layout);
    asic0.cli(&["-n", "11", "HSET", "PORT|Ethernet0", "lanes", "0"]);
    assert_eq!(d.read_config_ports().unwrap().len(), 1);
    d.apply_state_writes(&[set("Ethernet0", &[("state", "ok")])])
        .unwrap();
    d.publish_port_init_done().unwrap();
    assert_eq!(
        asic0.cli(&["-n", "12", "HGET", "PORT_TABLE|Ethernet0", "state"]),
        "ok"
    );
    assert_eq!(
        asic0.cli(&["-n", "10", "SMEMBERS", "PORT_TABLE_KEY_SET"]),
        "PortInitDone"
    );
    assert_eq!(
        host.cli(&["INFO", "keyspace"])
            .lines()
            .filter(|l| l.starts_with("db"))
            .count(),
        0
    );

    let mut d = SonicDb::new(DbLayout::from_config_file(&cfg, None).unwrap());
    d.write_warm_state("disabled").unwrap();
    assert_eq!(
        host.cli(&["-n", "6", "HGET", "WARM_RESTART_TABLE|portsyncd", "state"]),
        "disabled"
    );
}

#[test]
fn app_port_lookups_in_one_round_trip() {
    let srv = RedisServer::start();
    srv.cli(&[
        "-n",
        "0",
        "HSET",
        "PORT_TABLE:Ethernet0",
        "admin_status",
        "up",
        "lanes",
        "0",
    ]);
    srv.cli(&["-n", "0", "HSET", "PORT_TABLE:Ethernet4", "lanes", "4"]);
    srv.cli(&["-n", "0", "HSET", "_PORT_TABLE:Ethernet8", "lanes", "8"]); // staged only
    let mut d = db(&srv);
    let names: Vec<String> = ["Ethernet0", "Ethernet4", "Ethernet8", "Ethernet12"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let existing = d.app_ports_existing(&names).unwrap();
    assert_eq!(
        existing.into_iter().collect::<Vec<_>>(),
        vec!["Ethernet0".to_string(), "Ethernet4".to_string()]
    );
    let admin = d.app_ports_with_admin_status(&names).unwrap();
    assert_eq!(
        admin.into_iter().collect::<Vec<_>>(),
        vec!["Ethernet0".to_string()]
    );
    assert!(d.app_ports_existing(&[]).unwrap().is_empty());
}

#[test]
fn a_port_status_write_sets_the_four_fields_and_keeps_foreign_ones() {
    let srv = RedisServer::start();
    srv.cli(&[
        "-n",
        "6",
        "HSET",
        "PORT_TABLE|Ethernet0",
        "host_tx_ready",
        "true",
    ]);
    let status = portsyncd::core::PortStatus {
        admin_up: true,
        oper_up: false,
        mtu: 9100,
    };
    let mut d = db(&srv);
    d.apply_state_writes(&[StateWrite::SetFields {
        name: "Ethernet0".into(),
        fields: status.field_values(),
    }])
    .unwrap();
    let got = hgetall(&srv, "6", "PORT_TABLE|Ethernet0");
    let want: BTreeMap<String, String> = [
        ("state", "ok"),
        ("netdev_oper_status", "down"),
        ("admin_status", "up"),
        ("mtu", "9100"),
        ("host_tx_ready", "true"),
    ]
    .iter()
    .map(|(f, v)| (f.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    assert!(matches!(
        d.apply_state_writes(&[StateWrite::SetFields {
            name: "Ethernet4".into(),
            fields: Vec::new(),
        }]),
        Err(DbError::Refused(_))
    ));
}
