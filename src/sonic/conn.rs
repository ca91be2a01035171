//! One synchronous Redis connection per SONiC database, with I/O timeouts and non-spinning
//! reconnection: a lost connection is retried with exponential backoff, and a call made before the
//! next attempt is due fails at once instead of blocking or busy-looping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisResult};

use super::dbconfig::{DbEndpoint, RedisAddr};
use super::error::{breaks_connection, DbError};
use crate::backoff::Backoff;

/// Connection tuning.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// Connect, read and write timeout. A stopped (SIGSTOP) Redis is detected after this long.
    pub io_timeout: Duration,
    /// First reconnect delay after a failed attempt.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            io_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Opens a connection to `endpoint` and selects its database, with `timeout` on connect, read and
/// write (the timeouts stay set on the returned connection).
pub fn open_connection(endpoint: &DbEndpoint, timeout: Duration) -> RedisResult<redis::Connection> {
    let addr = match &endpoint.addr {
        RedisAddr::Unix(path) => ConnectionAddr::Unix(path.clone()),
        RedisAddr::Tcp { host, port } => ConnectionAddr::Tcp(host.clone(), *port),
    };
    let info = addr
        .into_connection_info()?
        .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
    let mut con = redis::Client::open(info)?.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    // An explicit SELECT (also for id 0) doubles as a liveness check: connecting to the unix socket
    // of a stopped server succeeds, but this times out.
    redis::cmd("SELECT").arg(endpoint.id).exec(&mut con)?;
    Ok(con)
}

/// A connection to one SONiC database that knows how to come back.
pub struct Conn {
    db: &'static str,
    endpoint: DbEndpoint,
    opts: ConnOptions,
    con: Option<redis::Connection>,
    backoff: Backoff,
    /// No attempt before this instant (None: an attempt may be made now).
    next_attempt: Option<Instant>,
    ever_connected: bool,
    /// Whether the current outage was already logged.
    outage_logged: bool,
    reconnects: u64,
}

impl Conn {
    /// A not yet connected handle for database `db` (a name for logs, e.g. `STATE_DB`).
    pub fn new(db: &'static str, endpoint: DbEndpoint, opts: ConnOptions) -> Self {
        let backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
        Conn {
            db,
            endpoint,
            opts,
            con: None,
            backoff,
            next_attempt: None,
            ever_connected: false,
            outage_logged: false,
            reconnects: 0,
        }
    }

    /// The database name used in logs and errors.
    pub fn db(&self) -> &'static str {
        self.db
    }

    /// The endpoint this handle connects to.
    pub fn endpoint(&self) -> &DbEndpoint {
        &self.endpoint
    }

    /// True while a connection is held (it may still turn out to be dead on the next command).
    pub fn is_connected(&self) -> bool {
        self.con.is_some()
    }

    /// Successful connects after the first one: each is a recovery from a lost connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Returns the live connection, or makes one connect attempt if one is due. If the next attempt
    /// is not yet due, fails at once with [`DbError::NotConnected`] (so callers never spin or block).
    pub fn ensure_connected(&mut self) -> Result<&mut redis::Connection, DbError> {
        if self.con.is_none() {
            let now = Instant::now();
            if let Some(at) = self.next_attempt {
                if now < at {
                    return Err(DbError::NotConnected {
                        db: self.db,
                        retry_in: at - now,
                    });
                }
            }
            match open_connection(&self.endpoint, self.opts.io_timeout) {
                Ok(con) => {
                    if self.ever_connected {
                        self.reconnects += 1;
                        tracing::info!(db = self.db, addr = %self.endpoint.addr, reconnects = self.reconnects, "redis connection restored");
                    } else {
                        tracing::info!(db = self.db, addr = %self.endpoint.addr, id = self.endpoint.id, "connected to redis");
                    }
                    self.ever_connected = true;
                    self.outage_logged = false;
                    self.backoff.reset();
                    self.next_attempt = None;
                    self.con = Some(con);
                }
                Err(source) => {
                    let delay = self.backoff.next_delay();
                    self.next_attempt = Some(Instant::now() + delay);
                    if !self.outage_logged {
                        self.outage_logged = true;
                        tracing::warn!(db = self.db, addr = %self.endpoint.addr, error = %source, "redis unreachable; retrying with backoff");
                    } else {
                        tracing::debug!(db = self.db, error = %source, retry_in_ms = delay.as_millis() as u64, "redis connect attempt failed");
                    }
                    return Err(DbError::Connect {
                        db: self.db,
                        addr: self.endpoint.addr.to_string(),
                        source,
                    });
                }
            }
        }
        match self.con.as_mut() {
            Some(con) => Ok(con),
            None => Err(DbError::NotConnected {
                db: self.db,
                retry_in: Duration::ZERO,
            }),
        }
    }

    /// Drops the connection after an I/O failure; the next [`Conn::ensure_connected`] reconnects at
    /// once, and backs off only if that fails.
    pub fn mark_broken(&mut self) {
        if self.con.take().is_some() && !self.outage_logged {
            self.outage_logged = true;
            tracing::warn!(db = self.db, addr = %self.endpoint.addr, "redis connection lost");
        }
    }

    /// Runs `f` on the connection. A failure that breaks the connection marks it broken; if the
    /// connection was dropped (not timed out) it is re-opened and `f` retried once, so callers must
    /// pass idempotent work. `op` names the work in errors.
    pub fn run<T>(
        &mut self,
        op: &str,
        mut f: impl FnMut(&mut redis::Connection) -> RedisResult<T>,
    ) -> Result<T, DbError> {
        let mut retried = false;
        loop {
            let con = self.ensure_connected()?;
            match f(con) {
                Ok(v) => return Ok(v),
                Err(source) => {
                    if breaks_connection(&source) {
                        self.mark_broken();
                        let dropped = source.is_connection_dropped() && !source.is_timeout();
                        if dropped && !retried {
                            retried = true;
                            tracing::debug!(db = self.db, op, error = %source, "retrying once on a fresh connection");
                            continue;
                        }
                    }
                    return Err(DbError::Command {
                        db: self.db,
                        op: op.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Like [`Conn::run`] for work that decodes its replies itself: `f`'s inner error is a reply of
    /// an unexpected shape ([`DbError::Decode`]), which leaves the connection in place.
    pub fn run_decode<T>(
        &mut self,
        op: &str,
        f: impl FnMut(&mut redis::Connection) -> RedisResult<Result<T, String>>,
    ) -> Result<T, DbError> {
        self.run(op, f)?.map_err(|detail| DbError::Decode {
            db: self.db,
            op: op.to_string(),
            detail,
        })
    }

    /// Blocks until connected or `stop` is set (then [`DbError::Stopped`]), retrying with backoff.
    /// For start-up; sleeps in short slices so a stop request is seen promptly.
    pub fn connect_blocking(&mut self, stop: &AtomicBool) -> Result<(), DbError> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(DbError::Stopped { db: self.db });
            }
            match self.ensure_connected() {
                Ok(_) => return Ok(()),
                Err(DbError::NotConnected { retry_in, .. }) => {
                    std::thread::sleep(retry_in.min(Duration::from_millis(50)));
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let got: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn unreachable_endpoint_backs_off_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let ep = DbEndpoint {
            addr: RedisAddr::Unix(dir.path().join("absent.sock")),
            id: 6,
            separator: "|".into(),
        };
        let opts = ConnOptions {
            io_timeout: Duration::from_millis(200),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60),
        };
        let mut c = Conn::new("STATE_DB", ep, opts);
        assert!(matches!(c.ensure_connected(), Err(DbError::Connect { .. })));
        // The next attempt is a minute away: the call must fail immediately, not try again.
        let t = Instant::now();
        match c.ensure_connected() {
            Err(DbError::NotConnected { retry_in, db }) => {
                assert_eq!(db, "STATE_DB");
                assert!(retry_in > Duration::from_secs(50));
            }
            other => panic!("expected NotConnected, got {:?}", other.map(|_| ())),
        }
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(c.reconnects(), 0);
        let stop = AtomicBool::new(true);
        assert!(matches!(
            c.connect_blocking(&stop),
            Err(DbError::Stopped { .. })
        ));
    }
}
