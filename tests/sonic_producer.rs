//! ProducerStateTable against a real redis-server, and the orchagent stand-in consuming it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use portsyncd::sonic::{DbError, DbLayout, SonicDb};

fn fv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect()
}

fn db(srv: &RedisServer) -> SonicDb {
    SonicDb::new(DbLayout::from_redis_url(&srv.url()).unwrap())
}

/// Collects messages published on one channel, from a thread that owns a subscribed connection.
struct ChannelCounter {
    channel: String,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChannelCounter {
    fn new(srv: &RedisServer, channel: &str) -> Self {
        let mut con = srv.client(0);
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (g, s, ch) = (Arc::clone(&got), Arc::clone(&stop), channel.to_string());
        let thread = std::thread::spawn(move || {
            let mut ps = con.as_pubsub();
            ps.subscribe(&ch).unwrap();
            ps.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                match ps.get_message() {
                    Ok(m) => g.lock().unwrap().push(m.get_payload::<String>().unwrap()),
                    Err(e) if e.is_timeout() => {}
                    Err(e) => panic!("subscriber: {e}"),
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The subscription is registered on the server before the test publishes anything.
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1) != Some("1") {
            assert!(Instant::now() < deadline, "subscription not registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        ChannelCounter {
            channel: channel.to_string(),
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Every message published on the channel before this call. Publishes a marker on the channel
    /// and waits until the subscriber has it: Redis delivers a channel's messages in the order it
    /// executed the PUBLISHes, and every PUBLISH of a call that returned was executed before the
    /// marker's, so the messages before the marker are exactly the earlier ones (no sleep, no
    /// straggler missed).
    fn count(&mut self, srv: &RedisServer) -> Vec<String> {
        const MARKER: &str = "--end-of-test-messages--";
        srv.cli(&["PUBLISH", &self.channel, MARKER]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.got.lock().unwrap().clone();
            if let Some(end) = got.iter().position(|m| m == MARKER) {
                return got[..end].to_vec();
            }
            assert!(Instant::now() < deadline, "marker not received: {got:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChannelCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hgetall(srv: &RedisServer, db: &str, key: &str) -> BTreeMap<String, String> {
    let out = srv.cli(&["-n", db, "HGETALL", key]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

fn smembers(srv: &RedisServer, key: &str) -> Vec<String> {
    let mut v: Vec<String> = srv
        .cli(&["-n", "0", "SMEMBERS", key])
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn set_stages_and_publishes_once_per_pending_key() {
    let srv = RedisServer::start();
    let mut sub = ChannelCounter::new(&srv, "PORT_TABLE_CHANNEL@0");
    let mut d = db(&srv);
    let mut ports = BTreeMap::new();
    ports.insert(
        "Ethernet0".to_string(),
        fv(&[("lanes", "0,1,2,3"), ("mtu", "9100"), ("speed", "100000")]),
    );
    d.publish_app_ports(&ports).unwrap();
    // Second set of the same key before a consumer ran: merged, no second notification.
    ports.insert("Ethernet0".to_string(), fv(&[("alias", "etp1")]));
    d.publish_app_ports(&ports).unwrap();
    d.publish_port_config_done(1).unwrap();

    assert_eq!(
        smembers(&srv, "PORT_TABLE_KEY_SET"),
        ["Ethernet0", "PortConfigDone"]
    );
    assert_eq!(
        hgetall(&srv, "0", "_PORT_TABLE:Ethernet0"),
        BTreeMap::from([
            ("alias".into(), "etp1".into()),
            ("lanes".into(), "0,1,2,3".into()),
            ("mtu".into(), "9100".into()),
            ("speed".into(), "100000".into()),
        ])
    );
    assert_eq!(
        hgetall(&srv, "0", "_PORT_TABLE:PortConfigDone"),
        BTreeMap::from([("count".into(), "1".into())])
    );
    // Nothing consumed yet: the real table entry does not exist.
    assert_eq!(srv.cli(&["-n", "0", "EXISTS", "PORT_TABLE:Ethernet0"]), "0");
    assert!(!d.app_port_exists("Ethernet0").unwrap());
    assert_eq!(sub.count(&srv), ["G", "G"]);
}

#[test]
fn zero_fields_are_refused_and_write_nothing() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    let mut ports = BTreeMap::new();
    ports.insert("Ethernet0".to_string(), fv(&[("mtu", "9100")]));
    ports.insert("Ethernet4".to_string(), Vec::new());
    let err = d.publish_app_ports(&ports).unwrap_err();
    assert!(matches!(err, DbError::Refused(_)), "{err}");
    assert!(!err.is_transient());
    assert_eq!(srv.cli(&["-n", "0", "DBSIZE"]), "0");
}

#[test]
fn del_marks_key_and_del_set() {
    let srv = RedisServer::start();
    let mut sub = ChannelCounter::new(&srv, "PORT_TABLE_CHANNEL@0");
    let producer = portsyncd::sonic::ProducerStateTable::new("PORT_TABLE", ":", 0);
    let mut con = srv.client(0);
    assert!(producer
        .set(&mut con, "Ethernet8", &fv(&[("mtu", "1500")]))
        .unwrap());
    // Pending already: the delete publishes nothing new.
    assert!(!producer.del(&mut con, "Ethernet8").unwrap());
    assert!(producer.del(&mut con, "Ethernet12").is_ok());
    assert_eq!(
        smembers(&srv, "PORT_TABLE_KEY_SET"),
        ["Ethernet12", "Ethernet8"]
    );
    assert_eq!(
        smembers(&srv, "PORT_TABLE_DEL_SET"),
        ["Ethernet12", "Ethernet8"]
    );
    assert_eq!(
        srv.cli(&["-n", "0", "EXISTS", "_PORT_TABLE:Ethernet8"]),
        "0"
    );
    assert_eq!(sub.count(&srv), ["G", "G"]);
}

#[test]
fn survives_script_flush() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    d.publish_port_init_done().unwrap();
    srv.cli(&["SCRIPT", "FLUSH"]);
    srv.cli(&[
        "-n",
        "0",
        "DEL",
        "PORT_TABLE_KEY_SET",
        "_PORT_TABLE:PortInitDone",
    ]);
    d.publish_port_config_done(0).unwrap();
    let mut ports = BTreeMap::new();
    ports.insert("Ethernet0".to_string(), fv(&[("mtu", "9100")]));
    srv.cli(&["SCRIPT", "FLUSH"]);
    d.publish_app_ports(&ports).unwrap();
    assert_eq!(
        smembers(&srv, "PORT_TABLE_KEY_SET"),
        ["Ethernet0", "PortConfigDone"]
    );
    assert_eq!(
        hgetall(&srv, "0", "_PORT_TABLE:PortConfigDone"),
        BTreeMap::from([("count".into(), "0".into())])
    );
}

#[test]
fn many_ports_pipelined_publish_each_once() {
    let srv = RedisServer::start();
    let mut sub = ChannelCounter::new(&srv, "PORT_TABLE_CHANNEL@0");
    let mut d = db(&srv);
    let ports: BTreeMap<String, Vec<(String, String)>> = (0..600)
        .map(|i| {
            (
                format!("Ethernet{}", i * 4),
                fv(&[("index", &i.to_string())]),
            )
        })
        .collect();
    srv.cli(&["SCRIPT", "FLUSH"]);
    d.publish_app_ports(&ports).unwrap();
    assert_eq!(srv.cli(&["-n", "0", "SCARD", "PORT_TABLE_KEY_SET"]), "600");
    assert_eq!(
        hgetall(&srv, "0", "_PORT_TABLE:Ethernet2396"),
        BTreeMap::from([("index".into(), "599".into())])
    );
    assert_eq!(sub.count(&srv).len(), 600);
}

/// Kills the child if the test fails before it exits (a leftover child would hold the test's
/// output pipe open and hang the run).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orchagent-standin"))
}

#[test]
fn standin_once_moves_staged_fields_and_honours_del_set() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    // An older consumed entry with a field the new set does not carry.
    srv.cli(&[
        "-n",
        "0",
        "HSET",
        "PORT_TABLE:Ethernet0",
        "old",
        "x",
        "mtu",
        "1500",
    ]);
    srv.cli(&["-n", "0", "HSET", "PORT_TABLE:Ethernet4", "mtu", "1500"]);
    srv.cli(&["-n", "0", "HSET", "PORT_TABLE:Ethernet8", "mtu", "1500"]);
    let mut ports = BTreeMap::new();
    ports.insert(
        "Ethernet0".to_string(),
        fv(&[("mtu", "9100"), ("admin_status", "up")]),
    );
    d.publish_app_ports(&ports).unwrap();
    let producer = portsyncd::sonic::ProducerStateTable::new("PORT_TABLE", ":", 0);
    let mut con = srv.client(0);
    // Delete then set: the consumer deletes the old entry, then writes only the new fields.
    producer.del(&mut con, "Ethernet4").unwrap();
    producer
        .set(&mut con, "Ethernet4", &fv(&[("speed", "40000")]))
        .unwrap();
    producer.del(&mut con, "Ethernet8").unwrap();
    d.publish_port_config_done(3).unwrap();

    let out = standin()
        .args(["--redis-url", &srv.url(), "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Ethernet0") && log.contains("consumed"),
        "{log}"
    );

    assert_eq!(
        hgetall(&srv, "0", "PORT_TABLE:Ethernet0"),
        BTreeMap::from([
            ("admin_status".into(), "up".into()),
            ("mtu".into(), "9100".into()),
            ("old".into(), "x".into()),
        ])
    );
    assert_eq!(
        hgetall(&srv, "0", "PORT_TABLE:Ethernet4"),
        BTreeMap::from([("speed".into(), "40000".into())])
    );
    assert_eq!(srv.cli(&["-n", "0", "EXISTS", "PORT_TABLE:Ethernet8"]), "0");
    assert_eq!(
        hgetall(&srv, "0", "PORT_TABLE:PortConfigDone")["count"],
        "3"
    );
    for k in [
        "PORT_TABLE_KEY_SET",
        "PORT_TABLE_DEL_SET",
        "_PORT_TABLE:Ethernet0",
        "_PORT_TABLE:Ethernet4",
    ] {
        assert_eq!(srv.cli(&["-n", "0", "EXISTS", k]), "0", "{k} left behind");
    }
    assert!(d.app_port_exists("Ethernet0").unwrap());
    assert!(d.app_port_has_admin_status("Ethernet0").unwrap());
    assert!(!d.app_port_has_admin_status("Ethernet4").unwrap());
}

#[allow(unsafe_code)] // kill(2): see the SAFETY comment at the call
#[test]
fn standin_daemon_consumes_live_and_exits_zero_on_sigterm() {
    let srv = RedisServer::start();
    let mut child = ChildGuard(
        standin()
            .args(["--redis-url", &srv.url()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut d = db(&srv);
    let mut ports = BTreeMap::new();
    ports.insert("Ethernet0".to_string(), fv(&[("mtu", "9100")]));
    d.publish_app_ports(&ports).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.app_port_exists("Ethernet0").unwrap() {
        assert!(
            Instant::now() < deadline,
            "stand-in never consumed Ethernet0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut con = srv.client(0);
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("PORT_TABLE:Ethernet0")
        .query(&mut con)
        .unwrap();
    assert_eq!(fields.get("mtu").map(String::as_str), Some("9100"));
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "stand-in ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn standin_reads_layout_from_db_config() {
    let srv = RedisServer::start();
    let cfg = srv.dir.path().join("sonic-db/database_config.json");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            r#"{{"INSTANCES": {{"redis": {{"hostname": "127.0.0.1", "port": 1, "unix_socket_path": "{}"}}}},
               "DATABASES": {{"APPL_DB": {{"id": 10, "separator": ":", "instance": "redis"}},
                             "CONFIG_DB": {{"id": 11, "separator": "|", "instance": "redis"}},
                             "STATE_DB": {{"id": 12, "separator": "|", "instance": "redis"}}}},
               "VERSION": "1.0"}}"#,
            srv.socket.display()
        ),
    )
    .unwrap();
    let mut d = SonicDb::new(DbLayout::from_config_file(&cfg, None).unwrap());
    let mut sub = ChannelCounter::new(&srv, "PORT_TABLE_CHANNEL@10");
    d.publish_port_init_done().unwrap();
    assert_eq!(sub.count(&srv), ["G"]);
    let out = standin()
        .arg("--db-config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hgetall(&srv, "10", "PORT_TABLE:PortInitDone")["lanes"], "0");
    assert_eq!(srv.cli(&["-n", "0", "DBSIZE"]), "0");
}

/// A value that is not UTF-8 (a Latin-1 `description`, copied from CONFIG_DB verbatim) is consumed
/// like any other, byte for byte, as orchagent's consumer does; the stand-in only escapes it in its
/// log. Before, it failed to decode the popped entry after the script had already moved it, and
/// reconnected.
#[test]
fn standin_consumes_values_that_are_not_utf8_verbatim() {
    let srv = RedisServer::start();
    let mut d = db(&srv);
    let mut ports: portsyncd::sonic::PortConfig = BTreeMap::new();
    ports.insert(
        "Ethernet0".to_string(),
        vec![
            (b"description".to_vec(), b"caf\xe9 \xff".to_vec()),
            (b"mtu".to_vec(), b"9100".to_vec()),
        ],
    );
    d.publish_app_ports(&ports).unwrap();
    let out = standin()
        .args(["--redis-url", &srv.url(), "--once"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("description=caf\\xe9 \\xff"), "{log}");
    let mut con = srv.client(0);
    let got: Vec<u8> = redis::cmd("HGET")
        .arg("PORT_TABLE:Ethernet0")
        .arg("description")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, b"caf\xe9 \xff");
    assert_eq!(
        srv.cli(&["-n", "0", "EXISTS", "_PORT_TABLE:Ethernet0"]),
        "0"
    );
}
