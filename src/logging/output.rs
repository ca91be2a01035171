//! Where log lines go, switchable at run time: syslog (ident `portsyncd`), stdout or stderr.
//!
//! [`Switch`] is a `tracing_subscriber` `MakeWriter`: each event is formatted into a [`Line`], which
//! on drop goes to the output selected at that moment. Syslog lines carry the severity of the event's
//! level ([`super::level::syslog_severity`]). When syslog cannot be reached (no `/dev/log` yet, syslogd
//! restarting) lines go to stderr instead and the connection is retried at most every
//! [`RECONNECT_EVERY`], so nothing is lost silently and nothing spins.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use super::level::syslog_severity;

/// Where log lines go (swss-common's `LOGOUTPUT` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// syslog (`/dev/log`) with the ident `portsyncd`.
    Syslog,
    Stdout,
    Stderr,
}

impl LogOutput {
    /// swss-common's spelling (`SYSLOG`, `STDOUT`, `STDERR`), any case.
    pub fn parse(s: &str) -> Option<LogOutput> {
        match s.to_ascii_uppercase().as_str() {
            "SYSLOG" => Some(LogOutput::Syslog),
            "STDOUT" => Some(LogOutput::Stdout),
            "STDERR" => Some(LogOutput::Stderr),
            _ => None,
        }
    }
}

/// The syslog ident (the program name in each syslog line).
pub const IDENT: &str = "portsyncd";

/// Shortest interval between two attempts to reach syslog.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(10);

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct Syslog {
    /// `None`: the system's socket (`/dev/log`); `Some`: a given socket (tests).
    path: Option<PathBuf>,
    logger: Option<SyslogLogger>,
    last_attempt: Option<Instant>,
}

impl Syslog {
    fn connect(&mut self) -> Option<&mut SyslogLogger> {
        if self.logger.is_none()
            && self
                .last_attempt
                .is_none_or(|t| t.elapsed() >= RECONNECT_EVERY)
        {
            self.last_attempt = Some(Instant::now());
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_USER,
                hostname: None,
                process: IDENT.to_string(),
                pid: std::process::id(),
            };
            let res = match &self.path {
                None => syslog::unix(formatter),
                Some(p) => syslog::unix_custom(formatter, p),
            };
            match res {
                Ok(l) => self.logger = Some(l),
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "portsyncd: syslog unreachable ({e}); logging to stderr, retrying every {}s",
                        RECONNECT_EVERY.as_secs()
                    );
                }
            }
        }
        self.logger.as_mut()
    }

    /// Sends one line; false when it could not (the caller writes it to stderr).
    fn send(&mut self, level: &Level, msg: &str) -> bool {
        let Some(logger) = self.connect() else {
            return false;
        };
        let res = match syslog_severity(level) {
            syslog::Severity::LOG_ERR => logger.err(msg),
            syslog::Severity::LOG_WARNING => logger.warning(msg),
            syslog::Severity::LOG_NOTICE => logger.notice(msg),
            _ => logger.debug(msg),
        };
        if res.is_err() {
            // syslogd went away: reconnect (rate-limited) on a later line.
            self.logger = None;
            return false;
        }
        true
    }
}

struct Shared {
    output: AtomicU8,
    syslog: Mutex<Syslog>,
}

/// The output selector, shared by the subscriber and whoever switches it.
#[derive(Clone)]
pub struct Switch(Arc<Shared>);

fn code(o: LogOutput) -> u8 {
    match o {
        LogOutput::Syslog => 0,
        LogOutput::Stdout => 1,
        LogOutput::Stderr => 2,
    }
}

impl Switch {
    /// Starts on `output`; syslog means the system's socket.
    pub fn new(output: LogOutput) -> Switch {
        Self::with_syslog_path(output, None)
    }

    /// Like [`Switch::new`], with syslog at `path` instead of the system's socket.
    pub fn with_syslog_path(output: LogOutput, path: Option<PathBuf>) -> Switch {
        Switch(Arc::new(Shared {
            output: AtomicU8::new(code(output)),
            syslog: Mutex::new(Syslog {
                path,
                logger: None,
                last_attempt: None,
            }),
        }))
    }

    pub fn set(&self, output: LogOutput) {
        self.0.output.store(code(output), Ordering::Relaxed);
    }

    pub fn get(&self) -> LogOutput {
        match self.0.output.load(Ordering::Relaxed) {
            0 => LogOutput::Syslog,
            1 => LogOutput::Stdout,
            _ => LogOutput::Stderr,
        }
    }

    fn line(&self, level: Level) -> Line {
        Line {
            switch: self.clone(),
            level,
            buf: Vec::with_capacity(256),
        }
    }
}

impl<'a> MakeWriter<'a> for Switch {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        self.line(*meta.level())
    }
}

/// One formatted event, sent where the switch points when dropped.
pub struct Line {
    switch: Switch,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let to_stderr = match self.switch.get() {
            LogOutput::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&self.buf).and_then(|()| out.flush());
                false
            }
            LogOutput::Stderr => true,
            LogOutput::Syslog => {
                let text = String::from_utf8_lossy(&self.buf);
                let msg = text.trim_end_matches('\n');
                match self.switch.0.syslog.lock() {
                    Ok(mut s) => !s.send(&self.level, msg),
                    Err(_) => true,
                }
            }
        };
        if to_stderr {
            let _ = std::io::stderr().write_all(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn syslog_lines_carry_ident_pid_and_severity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sw = Switch::with_syslog_path(LogOutput::Syslog, Some(path));
        {
            let mut l = sw.line(Level::WARN);
            l.write_all(b"port flapped ifname=Ethernet0\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        // LOG_USER (8) + LOG_WARNING (4) = 12.
        assert!(got.starts_with("<12>"), "{got}");
        let tail = format!(
            "portsyncd[{}]: port flapped ifname=Ethernet0",
            std::process::id()
        );
        assert!(got.ends_with(&tail), "{got}");
        {
            let mut l = sw.line(Level::INFO);
            l.write_all(b"x\n").unwrap();
        }
        let n = server.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<13>"), "info is sent as LOG_NOTICE");
    }

    #[test]
    fn switching_away_from_syslog_sends_nothing_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let sw = Switch::with_syslog_path(LogOutput::Syslog, Some(path));
        sw.set(LogOutput::Stderr);
        assert_eq!(sw.get(), LogOutput::Stderr);
        drop(sw.line(Level::ERROR));
        {
            let mut l = sw.line(Level::ERROR);
            l.write_all(b"to stderr\n").unwrap();
        }
        let mut buf = [0u8; 64];
        assert!(server.recv(&mut buf).is_err(), "nothing may reach syslog");
    }

    #[test]
    fn unreachable_syslog_falls_back_without_retrying_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let sw = Switch::with_syslog_path(LogOutput::Syslog, Some(dir.path().join("absent")));
        let mut s = sw.0.syslog.lock().unwrap();
        assert!(!s.send(&Level::INFO, "a"));
        let first = s.last_attempt.expect("an attempt was made");
        assert!(!s.send(&Level::INFO, "b"));
        assert_eq!(
            s.last_attempt,
            Some(first),
            "no second attempt within the interval"
        );
    }
}
