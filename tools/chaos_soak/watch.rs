//! What Redis received: a `redis-cli MONITOR` of the private redis-server, parsed as it streams, so
//! that the invariants are judged from the writes Redis saw, never from the daemon's counters.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One write to a port key that the invariants care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortWrite {
    /// STATE_DB `PORT_TABLE|<port>`: HSET/HMSET/HDEL (`del` false) or DEL/UNLINK (`del` true).
    State { port: String, del: bool },
    /// APPL_DB: the port was put in `PORT_TABLE_DEL_SET` (a ProducerStateTable delete).
    ApplDel { port: String },
}

/// The writes seen since the last [`Watch::take`].
#[derive(Debug, Default)]
struct Seen {
    writes: Vec<PortWrite>,
    /// The key of the last `EXISTS` whose key starts with [`MARKER`] (see [`Watch::sync`]).
    last_marker: Vec<u8>,
}

/// Keys the soak itself asks `EXISTS` of, to know that MONITOR has shown everything before them.
const MARKER: &[u8] = b"chaos-soak-marker-";

/// A running MONITOR; stopped on drop. Restart it after redis-server restarts.
pub struct Watch {
    child: Child,
    seen: Arc<Mutex<Seen>>,
}

impl Watch {
    pub fn start(sock: &Path) -> Result<Watch> {
        let mut child = Command::new("redis-cli")
            .arg("-s")
            .arg(sock)
            .arg("monitor")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-cli monitor")?;
        let out = child.stdout.take().context("monitor stdout")?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&seen);
        thread::spawn(move || {
            let mut attached = Some(tx);
            let mut reader = BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if let Some(tx) = attached.take() {
                    // MONITOR answers "OK" once attached.
                    let _ = tx.send(());
                    if line.starts_with(b"OK") {
                        continue;
                    }
                }
                let parsed = parse_line(&line);
                let marker = marker_of(&line);
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(m) = marker {
                    s.last_marker = m;
                }
                if let Some(w) = parsed {
                    s.writes.push(w);
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            bail!("redis-cli monitor did not attach");
        }
        Ok(Watch { child, seen })
    }

    /// The port writes seen since the last call (and forgets them).
    pub fn take(&self) -> Vec<PortWrite> {
        std::mem::take(&mut self.seen.lock().unwrap_or_else(|p| p.into_inner()).writes)
    }

    /// Waits until MONITOR has shown a marker command sent now, so that everything Redis executed
    /// before it has been read (MONITOR's stream lags behind Redis, the more so after a storm).
    pub fn sync(&self, con: &mut redis::Connection) -> Result<()> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut marker = MARKER.to_vec();
        marker.extend_from_slice(n.to_string().as_bytes());
        redis::cmd("EXISTS")
            .arg(&marker)
            .query::<i64>(con)
            .context("MONITOR marker")?;
        let start = Instant::now();
        while self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_marker
            != marker
        {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("MONITOR did not show the marker within 30 s");
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key of a marker command (`EXISTS chaos-soak-marker-<n>`), if the line is one.
fn marker_of(line: &[u8]) -> Option<Vec<u8>> {
    let close = line.iter().position(|&b| b == b']')?;
    let args = parse_args(&line[close + 1..]);
    match args.as_slice() {
        [cmd, key] if cmd.eq_ignore_ascii_case(b"EXISTS") && key.starts_with(MARKER) => {
            Some(key.clone())
        }
        _ => None,
    }
}

/// `1700000000.123456 [6 unix:/x/redis.sock] "HSET" "PORT_TABLE|Ethernet0" "mtu" "9100"` → a port
/// write, if it is one the invariants follow.
pub fn parse_line(line: &[u8]) -> Option<PortWrite> {
    let open = line.iter().position(|&b| b == b'[')?;
    let rest = &line[open + 1..];
    let space = rest.iter().position(|&b| b == b' ')?;
    let db: u32 = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    let close = rest.iter().position(|&b| b == b']')?;
    let args = parse_args(&rest[close + 1..]);
    let cmd = args.first()?.to_ascii_uppercase();
    let key = args.get(1)?;
    match (db, cmd.as_slice()) {
        (6, b"HSET" | b"HMSET" | b"HDEL" | b"DEL" | b"UNLINK") => {
            let port = key.strip_prefix(b"PORT_TABLE|")?;
            Some(PortWrite::State {
                port: String::from_utf8_lossy(port).into_owned(),
                del: matches!(cmd.as_slice(), b"DEL" | b"UNLINK"),
            })
        }
        (0, b"SADD") if key == b"PORT_TABLE_DEL_SET" => Some(PortWrite::ApplDel {
            port: String::from_utf8_lossy(args.get(2)?).into_owned(),
        }),
        _ => None,
    }
}

/// The quoted arguments of a MONITOR line, unescaped (`\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b`,
/// `\xHH`).
fn parse_args(s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < s.len() && s[i] != b'"' {
            if s[i] == b'\\' && i + 1 < s.len() {
                i += 1;
                match s[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' if i + 2 < s.len() => {
                        let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                            Some(b) => {
                                arg.push(b);
                                i += 2;
                            }
                            None => arg.push(b'x'),
                        }
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(s[i]);
            }
            i += 1;
        }
        out.push(arg);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_db_port_writes_and_dels() {
        let l =
            br#"1700000000.1 [6 unix:/t/redis.sock] "HSET" "PORT_TABLE|Ethernet4" "mtu" "9100""#;
        assert_eq!(
            parse_line(l),
            Some(PortWrite::State {
                port: "Ethernet4".into(),
                del: false
            })
        );
        let l = br#"1700000000.1 [6 lua] "DEL" "PORT_TABLE|Ethernet8""#;
        assert_eq!(
            parse_line(l),
            Some(PortWrite::State {
                port: "Ethernet8".into(),
                del: true
            })
        );
    }

    #[test]
    fn appl_db_deletes_and_other_lines() {
        let l = br#"1.0 [0 lua] "SADD" "PORT_TABLE_DEL_SET" "Ethernet0""#;
        assert_eq!(
            parse_line(l),
            Some(PortWrite::ApplDel {
                port: "Ethernet0".into()
            })
        );
        // Other databases, tables and commands are not port writes.
        assert_eq!(
            parse_line(br#"1.0 [4 unix:/s] "HSET" "PORT|Ethernet0" "a" "b""#),
            None
        );
        assert_eq!(
            parse_line(br#"1.0 [6 unix:/s] "HGETALL" "PORT_TABLE|Ethernet0""#),
            None
        );
        assert_eq!(
            parse_line(br#"1.0 [0 unix:/s] "SADD" "PORT_TABLE_KEY_SET" "Ethernet0""#),
            None
        );
        assert_eq!(parse_line(b"OK"), None);
    }

    #[test]
    fn markers_are_recognised() {
        let l = br#"1.0 [6 unix:/s] "EXISTS" "chaos-soak-marker-12""#;
        assert_eq!(marker_of(l), Some(b"chaos-soak-marker-12".to_vec()));
        assert_eq!(
            marker_of(br#"1.0 [6 unix:/s] "EXISTS" "PORT_TABLE|E0""#),
            None
        );
        assert_eq!(parse_line(l), None);
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(
            parse_args(br#" "a\"b" "\xff\x00" "c\\d""#),
            vec![b"a\"b".to_vec(), vec![0xff, 0], b"c\\d".to_vec()]
        );
    }
}
