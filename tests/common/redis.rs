//! A throw-away `redis-server` on a unix socket in a temp dir, configured like SONiC's
//! (keyspace events on), started by a test and killed when dropped.
// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running redis-server owned by the test.
pub struct RedisServer {
    /// Its directory (socket and log live here).
    pub dir: TempDir,
    /// The unix socket path.
    pub socket: PathBuf,
    child: Child,
}

impl RedisServer {
    /// Starts redis-server and waits until it answers PING (panics after 10 s).
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("psd-redis-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let child = spawn_server(dir.path(), &socket);
        let server = RedisServer { dir, socket, child };
        server.wait_ping();
        server
    }

    /// Kills the server (SIGKILL: nothing is saved) and starts a fresh, empty one on the same socket.
    pub fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn_server(self.dir.path(), &self.socket);
        self.wait_ping();
    }

    fn wait_ping(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.socket.exists() && self.try_cli(&["PING"]).as_deref() == Some("PONG") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `unix://<socket>`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Runs `redis-cli -s <socket> args...` and returns its trimmed stdout (panics on failure).
    /// Use `["-n", "6", ...]` for another database.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    /// A fresh client connection to database `db`.
    pub fn client(&self, db: i64) -> redis::Connection {
        let mut con = redis::Client::open(self.url().as_str())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        select(&mut con, db);
        con
    }

    /// Sends a signal (e.g. `libc::SIGSTOP`) to the server.
    #[allow(unsafe_code)] // kill(2): see the SAFETY comment at the call
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }
}

fn spawn_server(dir: &std::path::Path, socket: &std::path::Path) -> Child {
    Command::new("/usr/bin/redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(socket)
        .args([
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--notify-keyspace-events",
            "AKE",
            "--daemonize",
            "no",
            "--dir",
        ])
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /usr/bin/redis-server")
}

/// `SELECT db` on a connection.
pub fn select(con: &mut redis::Connection, db: i64) {
    redis::cmd("SELECT").arg(db).exec(con).expect("SELECT");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
