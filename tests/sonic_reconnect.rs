//! Connection loss and recovery against a real redis-server: killed client connections, a stopped
//! (SIGSTOP) server, and a stop request while waiting for an unreachable server.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use portsyncd::sonic::{ConnOptions, DbError, DbLayout, SonicDb, StateWrite};

fn opts() -> ConnOptions {
    ConnOptions {
        io_timeout: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

fn write(n: u32) -> Vec<StateWrite> {
    vec![StateWrite::Set {
        name: "Ethernet0".into(),
        fields: vec![("mtu".into(), n.to_string())],
    }]
}

#[test]
fn recovers_after_client_kill() {
    let srv = RedisServer::start();
    let mut d = SonicDb::with_options(DbLayout::from_redis_url(&srv.url()).unwrap(), opts());
    d.wait_connected(&AtomicBool::new(false)).unwrap();
    d.ping().unwrap();
    d.apply_state_writes(&write(1)).unwrap();
    assert_eq!(d.reconnects(), 0);

    let killed = srv.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_eq!(killed, "3", "expected our three connections to be killed");
    // Each database notices on its next command, reconnects at once and retries the idempotent work.
    d.apply_state_writes(&write(2)).unwrap();
    assert_eq!(d.read_config_ports().unwrap().len(), 0);
    d.publish_port_init_done().unwrap();
    assert_eq!(d.reconnects(), 3);
    assert_eq!(
        srv.cli(&["-n", "6", "HGET", "PORT_TABLE|Ethernet0", "mtu"]),
        "2"
    );
    assert_eq!(
        srv.cli(&["-n", "0", "SMEMBERS", "PORT_TABLE_KEY_SET"]),
        "PortInitDone"
    );
}

#[test]
fn stopped_server_times_out_backs_off_and_recovers() {
    let srv = RedisServer::start();
    // A first backoff long enough that the immediate next call surely falls inside it.
    let opts = ConnOptions {
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        ..opts()
    };
    let mut d = SonicDb::with_options(DbLayout::from_redis_url(&srv.url()).unwrap(), opts);
    d.apply_state_writes(&write(1)).unwrap();

    srv.signal(libc::SIGSTOP);
    let t = Instant::now();
    let err = d.apply_state_writes(&write(2)).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, DbError::Command { .. }), "{err}");
    // Bounded by the I/O timeout, not a hang (generous margin for a loaded machine).
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );

    // While it stays stopped: a connect attempt times out, then calls fail fast until it is due.
    let err = d.apply_state_writes(&write(3)).unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{err}");
    let err = d.apply_state_writes(&write(4)).unwrap_err();
    assert!(
        matches!(err, DbError::NotConnected { db: "STATE_DB", .. }),
        "{err}"
    );
    assert!(err.is_transient());

    srv.signal(libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = 0;
    loop {
        match d.apply_state_writes(&write(5)) {
            Ok(rejected) => {
                assert!(rejected.is_empty(), "{rejected:?}");
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                failures += 1;
            }
        }
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.reconnects() >= 1, "reconnects = {}", d.reconnects());
    assert_eq!(
        srv.cli(&["-n", "6", "HGET", "PORT_TABLE|Ethernet0", "mtu"]),
        "5"
    );
    eprintln!("recovered after {failures} fast failures");
}

#[test]
fn wait_connected_honours_stop() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("unix://{}", dir.path().join("nobody.sock").display());
    let mut d = SonicDb::with_options(DbLayout::from_redis_url(&url).unwrap(), opts());
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        s.store(true, Ordering::Relaxed);
    });
    let t = Instant::now();
    let err = d.wait_connected(&stop).unwrap_err();
    setter.join().unwrap();
    assert!(matches!(err, DbError::Stopped { db: "APPL_DB" }), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(!d.is_connected());
}

#[test]
fn wait_connected_succeeds_once_server_appears() {
    let srv = RedisServer::start();
    let sock = srv.dir.path().join("late.sock");
    let url = format!("unix://{}", sock.display());
    let mut d = SonicDb::with_options(DbLayout::from_redis_url(&url).unwrap(), opts());
    let stop = AtomicBool::new(false);
    let socket = srv.socket.clone();
    let linker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        // The server "appears" at the configured path.
        std::os::unix::fs::symlink(&socket, &sock).unwrap();
    });
    d.wait_connected(&stop).unwrap();
    linker.join().unwrap();
    assert!(d.is_connected());
    assert_eq!(d.reconnects(), 0, "a first connect is not a reconnect");
}
