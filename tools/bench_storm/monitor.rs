//! The netlink monitor: this binary re-executed inside the namespace (`__netlink-monitor`), counting the
//! kernel's RTM_NEWLINK/RTM_DELLINK notifications; the parent asks for the counts over a pipe.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, bail, Context, Result};

use crate::guards::{now_ns, Proc};
use crate::timeline::{decode_link, LinkChange};

/// argv[1] that turns this binary into the monitor.
pub const MONITOR_ARG: &str = "__netlink-monitor";
/// The link multicast group (RTNLGRP_LINK as a legacy group bit).
pub const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;

/// Inside the namespace: counts RTM_NEWLINK/RTM_DELLINK; answers each stdin line with
/// `<newlink> <dellink> <enobufs> <unix ns of the last notification>`, except `events <ns>`, answered with
/// every link notification received after `<ns>` (for `--plot`, see `timeline::LinkChange`).
pub fn monitor_main() -> Result<()> {
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let mut sock = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
    let _ = sock.set_rx_buf_sz(64 << 20); // capped by net.core.rmem_max; ENOBUFS are counted
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("bind RTMGRP_LINK")?;
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let c = Arc::clone(&counts);
    // Every link notification, decoded: ~40 bytes each, a few MiB for the longest run.
    let events: Arc<Mutex<Vec<LinkChange>>> = Arc::default();
    let ev = Arc::clone(&events);
    thread::spawn(move || {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            buf.clear();
            match sock.recv(&mut buf, 0) {
                Ok(_) => {
                    let t = now_ns();
                    let mut off = 0usize;
                    let mut links = Vec::new();
                    while off + 16 <= buf.len() {
                        let len = u32::from_ne_bytes([
                            buf[off],
                            buf[off + 1],
                            buf[off + 2],
                            buf[off + 3],
                        ]) as usize;
                        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                        match ty {
                            RTM_NEWLINK => c[0].fetch_add(1, Ordering::Relaxed),
                            RTM_DELLINK => c[1].fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                        if len < 16 {
                            break;
                        }
                        if ty == RTM_NEWLINK || ty == RTM_DELLINK {
                            let msg = &buf[off..(off + len).min(buf.len())];
                            if let Some((name, view)) = decode_link(msg, ty == RTM_DELLINK) {
                                links.push(LinkChange {
                                    t_ns: t,
                                    name,
                                    view,
                                });
                            }
                        }
                        off += (len + 3) & !3;
                    }
                    c[3].store(t, Ordering::Relaxed);
                    if !links.is_empty() {
                        if let Ok(mut e) = ev.lock() {
                            e.extend(links);
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    c[2].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("bench-storm monitor: recv: {e}");
                    return;
                }
            }
        }
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if let Some(since) = line.strip_prefix("events ") {
            let since: u64 = since.trim().parse().unwrap_or(0);
            let mut answer = String::new();
            if let Ok(e) = events.lock() {
                for change in e.iter().filter(|c| c.t_ns > since) {
                    answer.push_str(&change.encode());
                    answer.push(' ');
                }
            }
            writeln!(out, "{}", answer.trim_end())?;
            out.flush()?;
            continue;
        }
        let v: Vec<u64> = counts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        writeln!(out, "{} {} {} {}", v[0], v[1], v[2], v[3])?;
        out.flush()?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NlCounts {
    pub newlink: u64,
    pub dellink: u64,
    pub enobufs: u64,
    pub last_ns: u64,
}

pub struct Monitor {
    proc: Proc,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}
impl Monitor {
    pub fn start(ns: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .arg(MONITOR_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("starting the netlink monitor")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("monitor stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("monitor stdout"))?,
        );
        let mut m = Monitor {
            proc: Proc {
                name: "netlink monitor",
                child,
            },
            stdin,
            stdout,
        };
        let mut line = String::new();
        m.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("netlink monitor did not start: {line:?}");
        }
        Ok(m)
    }
    /// The monitor's pid (also its netlink port id, which /proc/net/netlink shows).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Every link notification the monitor received after `since_ns`.
    pub fn events(&mut self, since_ns: u64) -> Result<Vec<LinkChange>> {
        writeln!(self.stdin, "events {since_ns}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.split_whitespace()
            .map(|w| LinkChange::decode(w).ok_or_else(|| anyhow!("monitor answered {w:?}")))
            .collect()
    }

    pub fn counts(&mut self) -> Result<NlCounts> {
        writeln!(self.stdin, "?")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if v.len() != 4 {
            bail!("monitor answered {line:?}");
        }
        Ok(NlCounts {
            newlink: v[0],
            dellink: v[1],
            enobufs: v[2],
            last_ns: v[3],
        })
    }
}
