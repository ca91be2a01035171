//! `redis-cli MONITOR` captured to a file, to count exactly which writes a daemon made.

// Compiled into every test crate that uses `common`; each uses a subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Monitor {
    child: Child,
    pub file: PathBuf,
}

/// Redis commands that modify data.
const WRITES: &[&str] = &[
    "\"HSET\"",
    "\"HMSET\"",
    "\"HDEL\"",
    "\"DEL\"",
    "\"SET\"",
    "\"SADD\"",
    "\"SREM\"",
    "\"SPOP\"",
    "\"PUBLISH\"",
    "\"EVALSHA\"",
    "\"EVAL\"",
    "\"UNLINK\"",
];

impl Monitor {
    pub fn start(socket: &Path, file: PathBuf) -> Monitor {
        let out = std::fs::File::create(&file).expect("monitor file");
        let child = Command::new("redis-cli")
            .arg("-s")
            .arg(socket)
            .arg("monitor")
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli monitor");
        // MONITOR prints "OK" once it is attached.
        let attached = super::daemon::wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.starts_with("OK"))
        });
        assert!(attached, "redis-cli monitor did not attach");
        Monitor { child, file }
    }

    /// Every write command seen so far in database `db`, as raw MONITOR lines.
    pub fn writes(&self, db: u32) -> Vec<String> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let tag = format!("[{db} ");
        text.lines()
            .filter(|l| l.contains(&tag))
            .filter(|l| WRITES.iter().any(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }

    /// STATE_DB `PORT_TABLE|*` writes.
    pub fn state_port_writes(&self) -> Vec<String> {
        self.writes(6)
            .into_iter()
            .filter(|l| l.contains("\"PORT_TABLE|"))
            .collect()
    }

    /// The ports named by STATE_DB `PORT_TABLE|*` writes.
    pub fn state_ports_written(&self) -> std::collections::BTreeSet<String> {
        self.state_port_writes()
            .iter()
            .filter_map(|l| {
                let i = l.find("\"PORT_TABLE|")? + "\"PORT_TABLE|".len();
                let rest = &l[i..];
                Some(rest[..rest.find('"')?].to_string())
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
