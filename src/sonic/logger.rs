//! swss-common's Logger protocol (`Logger::linkToDbNative("portsyncd")`), so that `swssloglevel -c
//! portsyncd -l DEBUG` and `show logging` work as for every swss daemon.
//!
//! - At start, CONFIG_DB `LOGGER|portsyncd` gets `LOGLEVEL` `NOTICE` and `LOGOUTPUT` `SYSLOG` unless
//!   the field is already there (`HSETNX`: an operator's values are kept).
//! - Changes are followed the way swss-common's `SubscriberStateTable` does: a subscription to the
//!   key's keyspace channel (`__keyspace@<CONFIG_DB id>__:LOGGER|portsyncd`), each event followed by a
//!   read of the two fields (`HMGET`). Like swss-common this relies on the server's `notify-keyspace-events` (SONiC's
//!   redis.conf sets `AKE`); portsyncd never changes server configuration. As a safety net (an event
//!   missed during a reconnect, notifications switched off) the key is also re-read every [`POLL`].
//! - Precedence: a level or output given as an option wins at start; any later write to the key
//!   applies (see [`Follower`]).
//! - Another client may write anything there. A value that is not UTF-8 is ignored (that field
//!   keeps its setting), a key of another type (WRONGTYPE) is ignored until it is a hash again; both
//!   are logged (rate-limited) and neither costs the connection: only a broken connection does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tracing::level_filters::LevelFilter;
use tracing::{debug, info, warn};

use super::conn::open_connection;
use super::dbconfig::DbEndpoint;
use super::error::{breaks_connection, server_state_code, EntryErrorReason};
use crate::backoff::Backoff;
use crate::logging::level::from_swss;
use crate::logging::{LogOutput, RateLimit};

/// The component name (the key under `LOGGER`).
pub const COMPONENT: &str = "portsyncd";
/// swss-common's table of per-daemon log settings in CONFIG_DB.
pub const TABLE: &str = "LOGGER";
pub const LEVEL_FIELD: &str = "LOGLEVEL";
pub const OUTPUT_FIELD: &str = "LOGOUTPUT";
pub const DEFAULT_LEVEL: &str = "NOTICE";
pub const DEFAULT_OUTPUT: &str = "SYSLOG";
/// How often the key is re-read besides the keyspace events.
pub const POLL: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one wait for a keyspace event lasts (the stop flag is checked in between).
const WAIT: Duration = Duration::from_millis(500);
/// At most one warning per this interval about an unusable `LOGGER|portsyncd`.
const BAD_ENTRY_LOG: Duration = Duration::from_secs(60);

/// Counts one unusable entry, by database and reason: the daemon adds it to
/// `portsyncd_redis_entry_errors_total` (a callback, so that this module needs no metrics).
pub type CountEntryError = Arc<dyn Fn(&'static str, EntryErrorReason) + Send + Sync>;

/// The rate limits of the warnings about what another client wrote into `LOGGER|portsyncd`, and the
/// counter of such entries (`portsyncd_redis_entry_errors_total{db="CONFIG_DB"}`, when the daemon
/// has metrics).
struct BadEntryLog {
    /// The key is not usable as a hash (WRONGTYPE and the like).
    key: RateLimit,
    /// A value portsyncd reads is not UTF-8.
    value: RateLimit,
    count: Option<CountEntryError>,
}

impl BadEntryLog {
    fn new(count: Option<CountEntryError>) -> Self {
        BadEntryLog {
            key: RateLimit::new(BAD_ENTRY_LOG),
            value: RateLimit::new(BAD_ENTRY_LOG),
            count,
        }
    }

    fn count(&self, reason: EntryErrorReason) {
        if let Some(count) = &self.count {
            count("CONFIG_DB", reason);
        }
    }
}

/// A setting to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The table's value and the filter it means (an unknown value means NOTICE, as in swss-common).
    Level(String, LevelFilter),
    /// The table's value and the output it means (an unknown value means SYSLOG, as in swss-common).
    Output(String, LogOutput),
}

/// Why the key was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The first read after start-up.
    Start,
    /// A keyspace event: the key was written.
    Event,
    /// The periodic re-read, or the first read after a reconnect.
    Poll,
}

/// Decides what a read of the key changes (pure; the thread does the I/O).
///
/// - `Start`: each field applies, unless the option for it was given (then the option wins).
/// - `Event`: the level applies when it differs from what portsyncd runs at, so that
///   `swssloglevel -l DEBUG` takes effect even when the table already said DEBUG but an option
///   overrode it at start; the output applies only when its value changed since the last read.
/// - `Poll`: a field applies only when it changed since the last read (a missed event).
#[derive(Debug, Default)]
pub struct Follower {
    keep_level: bool,
    keep_output: bool,
    seen: HashMap<&'static str, String>,
    effective: HashMap<&'static str, String>,
}

impl Follower {
    /// `keep_level` / `keep_output`: the option was given and wins at start.
    pub fn new(keep_level: bool, keep_output: bool) -> Follower {
        Follower {
            keep_level,
            keep_output,
            ..Follower::default()
        }
    }

    pub fn on_read(&mut self, fields: &HashMap<String, String>, why: Read) -> Vec<Change> {
        let mut out = Vec::new();
        for (field, keep) in [
            (LEVEL_FIELD, self.keep_level),
            (OUTPUT_FIELD, self.keep_output),
        ] {
            let Some(value) = fields.get(field) else {
                continue;
            };
            let changed = self.seen.get(field) != Some(value);
            self.seen.insert(field, value.clone());
            let differs = self.effective.get(field) != Some(value);
            let apply = match why {
                Read::Start => !keep,
                // A keyspace event does not say which field was written. `swssloglevel` writes
                // LOGLEVEL, so a write of the level takes over even with the same value; the output
                // changes only when its own value does (a level change must not move the log lines
                // an option sent elsewhere).
                Read::Event if field == LEVEL_FIELD => differs,
                Read::Event | Read::Poll => changed && differs,
            };
            if apply {
                self.effective.insert(field, value.clone());
                out.push(change(field, value));
            }
        }
        out
    }
}

fn change(field: &str, value: &str) -> Change {
    if field == LEVEL_FIELD {
        let level = from_swss(value).unwrap_or_else(|| {
            warn!(
                value,
                "invalid LOGLEVEL in CONFIG_DB LOGGER|portsyncd; using NOTICE"
            );
            LevelFilter::INFO
        });
        Change::Level(value.to_string(), level)
    } else {
        let output = LogOutput::parse(value).unwrap_or_else(|| {
            warn!(
                value,
                "invalid LOGOUTPUT in CONFIG_DB LOGGER|portsyncd; using SYSLOG"
            );
            LogOutput::Syslog
        });
        Change::Output(value.to_string(), output)
    }
}

/// Applies a change to the process's logging (nothing when tracing was set up by someone else).
fn apply(c: &Change) {
    let Some(ctl) = crate::logging::control() else {
        return;
    };
    match c {
        Change::Level(value, level) => {
            info!(loglevel = %value, tracing_level = %level, "log level set from CONFIG_DB LOGGER|portsyncd");
            ctl.set_level(*level);
        }
        Change::Output(value, output) => {
            info!(logoutput = %value, "log output switching as CONFIG_DB LOGGER|portsyncd says");
            ctl.set_output(*output);
            info!(logoutput = %value, "log output set from CONFIG_DB LOGGER|portsyncd");
        }
    }
}

/// The key in CONFIG_DB (`LOGGER|portsyncd` with the database's separator).
pub fn key(endpoint: &DbEndpoint) -> String {
    format!("{TABLE}{}{COMPONENT}", endpoint.separator)
}

/// Writes the defaults for fields not yet there; true for each field written.
pub fn register(con: &mut redis::Connection, key: &str) -> RedisResult<(bool, bool)> {
    redis::pipe()
        .atomic()
        .hset_nx(key, LEVEL_FIELD, DEFAULT_LEVEL)
        .hset_nx(key, OUTPUT_FIELD, DEFAULT_OUTPUT)
        .query(con)
}

/// Starts the thread that registers the key and follows it until `stop` is set. The options' say
/// over the start comes from [`crate::logging::control`]. Entries it cannot use are counted in
/// through `count`, if given.
pub fn spawn(
    endpoint: DbEndpoint,
    stop: Arc<AtomicBool>,
    count: Option<CountEntryError>,
) -> std::io::Result<JoinHandle<()>> {
    let (keep_level, keep_output) =
        crate::logging::control().map_or((false, false), |c| (c.level_explicit, c.output_explicit));
    let follower = Follower::new(keep_level, keep_output);
    let mut follower = follower;
    // True until the first read: a restarted thread goes on from where the dead one was (what it
    // read and applied), so a write made while it was down applies as a change.
    let mut first = true;
    // Restarted with backoff if it dies: losing it must neither stop the daemon nor go unnoticed.
    let stop_flag = Arc::clone(&stop);
    crate::supervise::spawn_restarting("swss-logger", stop_flag, move || {
        follow(&endpoint, &mut follower, &mut first, &stop, count.clone())
    })
}

fn follow(
    endpoint: &DbEndpoint,
    follower: &mut Follower,
    first: &mut bool,
    stop: &AtomicBool,
    count: Option<CountEntryError>,
) {
    let key = key(endpoint);
    let channel = format!("__keyspace@{}__:{key}", endpoint.id);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut logged = false;
    let mut bad = BadEntryLog::new(count);
    while !stop.load(Ordering::Relaxed) {
        match session(endpoint, &key, &channel, follower, first, stop, &mut bad) {
            Ok(()) => return,
            Err(e) => {
                if !logged {
                    warn!(error = %e, key, "CONFIG_DB log settings unreachable; retrying");
                    logged = true;
                }
                let until = Instant::now() + backoff.next_delay();
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

fn read_apply(
    con: &mut redis::Connection,
    key: &str,
    follower: &mut Follower,
    why: Read,
    bad: &mut BadEntryLog,
) -> RedisResult<()> {
    crate::faults::panic_point("swss-logger");
    // Only the two fields portsyncd reads (a foreign field of any size is never fetched), as bytes:
    // a value another client wrote need not be text.
    let raw: Vec<Option<Vec<u8>>> = match redis::cmd("HMGET")
        .arg(key)
        .arg(LEVEL_FIELD)
        .arg(OUTPUT_FIELD)
        .query(con)
    {
        Ok(raw) => raw,
        // A lost connection, or a server that cannot serve now (LOADING, ...): not this key's fault.
        Err(e) if breaks_connection(&e) || e.code().is_some_and(server_state_code) => {
            return Err(e)
        }
        Err(e) => {
            // WRONGTYPE and the like: this key, not the connection. Read again at the next event
            // or poll.
            bad.count(e.code().map_or(
                EntryErrorReason::BadReply,
                EntryErrorReason::of_server_error,
            ));
            if let Some(suppressed) = bad.key.allow(Instant::now()) {
                warn!(key, error = %e, suppressed, "CONFIG_DB log settings unusable (not a hash?): ignored until fixed");
            }
            return Ok(());
        }
    };
    let fields = decode_fields(raw, key, bad);
    debug!(key, ?fields, ?why, "CONFIG_DB log settings read");
    for c in follower.on_read(&fields, why) {
        apply(&c);
    }
    Ok(())
}

/// The fields portsyncd reads (`LOGLEVEL`, `LOGOUTPUT`, in that order as HMGET returned them) whose
/// values are UTF-8; a value that is not is logged with its bytes escaped and left out (the setting
/// it would change stays as it is).
fn decode_fields(
    raw: Vec<Option<Vec<u8>>>,
    key: &str,
    bad: &mut BadEntryLog,
) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (name, value) in [LEVEL_FIELD, OUTPUT_FIELD].into_iter().zip(raw) {
        let Some(value) = value else {
            continue;
        };
        match String::from_utf8(value) {
            Ok(v) => {
                fields.insert(name.to_string(), v);
            }
            Err(e) => {
                bad.count(EntryErrorReason::NotUtf8);
                if let Some(suppressed) = bad.value.allow(Instant::now()) {
                    let bytes = e.as_bytes().escape_ascii().to_string();
                    warn!(key, field = name, value = %bytes, suppressed, "CONFIG_DB log setting is not UTF-8: ignored");
                }
            }
        }
    }
    fields
}

/// One connection's life: register, subscribe, read, then wait for events. Ok when stopped.
fn session(
    endpoint: &DbEndpoint,
    key: &str,
    channel: &str,
    follower: &mut Follower,
    first: &mut bool,
    stop: &AtomicBool,
    bad: &mut BadEntryLog,
) -> RedisResult<()> {
    let mut con = open_connection(endpoint, IO_TIMEOUT)?;
    let registered = match register(&mut con, key) {
        Ok(r) => Some(r),
        // A lost connection, or a server that cannot serve now (LOADING, ...): not this key's fault.
        Err(e) if breaks_connection(&e) || e.code().is_some_and(server_state_code) => {
            return Err(e)
        }
        Err(e) => {
            if let Some(suppressed) = bad.key.allow(Instant::now()) {
                warn!(key, error = %e, suppressed, "cannot register with swss Logger (the key is not a hash?): following it anyway");
            }
            None
        }
    };
    if *first {
        if let Some((level_new, output_new)) = registered {
            info!(
                key,
                level_defaulted = level_new,
                output_defaulted = output_new,
                "registered with swss Logger"
            );
        }
        match keyspace_events(&mut con) {
            Some(flags) if !covers_hash_events(&flags) => warn!(
                notify_keyspace_events = %flags,
                "redis keyspace notifications are off for hashes: log settings are re-read every 10 s"
            ),
            _ => {}
        }
    }
    let mut sub = open_connection(endpoint, IO_TIMEOUT)?;
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(channel)?;
    pubsub.set_read_timeout(Some(WAIT))?;
    // Subscribed first, then read: no write can fall between the two.
    let why = if std::mem::take(first) {
        Read::Start
    } else {
        Read::Poll
    };
    read_apply(&mut con, key, follower, why, bad)?;
    let mut next_poll = Instant::now() + POLL;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match pubsub.get_message() {
            Ok(_) => {
                // Drain a burst of events into one read.
                pubsub.set_read_timeout(Some(Duration::from_millis(10)))?;
                while pubsub.get_message().is_ok() {}
                pubsub.set_read_timeout(Some(WAIT))?;
                read_apply(&mut con, key, follower, Read::Event, bad)?;
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= next_poll {
            read_apply(&mut con, key, follower, Read::Poll, bad)?;
            next_poll = Instant::now() + POLL;
        }
    }
}

/// The server's `notify-keyspace-events` flags (None when CONFIG GET is refused or renamed).
fn keyspace_events(con: &mut redis::Connection) -> Option<String> {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(con)
        .ok()?;
    v.get(1).cloned()
}

/// True when `flags` publish keyspace events for hash commands (`K` plus `h` or `A`).
pub fn covers_hash_events(flags: &str) -> bool {
    flags.contains('K') && (flags.contains('h') || flags.contains('A'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(level: Option<&str>, output: Option<&str>) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if let Some(l) = level {
            m.insert(LEVEL_FIELD.to_string(), l.to_string());
        }
        if let Some(o) = output {
            m.insert(OUTPUT_FIELD.to_string(), o.to_string());
        }
        m
    }

    #[test]
    fn the_table_decides_at_start_when_no_option_was_given() {
        let mut f = Follower::new(false, false);
        let got = f.on_read(&fields(Some("DEBUG"), Some("STDOUT")), Read::Start);
        assert_eq!(
            got,
            vec![
                Change::Level("DEBUG".into(), LevelFilter::DEBUG),
                Change::Output("STDOUT".into(), LogOutput::Stdout)
            ]
        );
        // Nothing changed: neither a poll nor a repeated event applies anything.
        assert!(f
            .on_read(&fields(Some("DEBUG"), Some("STDOUT")), Read::Poll)
            .is_empty());
        assert!(f
            .on_read(&fields(Some("DEBUG"), Some("STDOUT")), Read::Event)
            .is_empty());
        let got = f.on_read(&fields(Some("ERROR"), Some("STDOUT")), Read::Poll);
        assert_eq!(got, vec![Change::Level("ERROR".into(), LevelFilter::ERROR)]);
    }

    #[test]
    fn options_win_at_start_and_any_later_write_wins_after() {
        let mut f = Follower::new(true, true);
        assert!(f
            .on_read(&fields(Some("DEBUG"), Some("SYSLOG")), Read::Start)
            .is_empty());
        // The periodic re-read sees nothing new: the option stays in force.
        assert!(f
            .on_read(&fields(Some("DEBUG"), Some("SYSLOG")), Read::Poll)
            .is_empty());
        // `swssloglevel -l DEBUG` writes the same value again: the write takes over the level, and
        // leaves the output the option chose (its value did not change).
        let got = f.on_read(&fields(Some("DEBUG"), Some("SYSLOG")), Read::Event);
        assert_eq!(got, vec![Change::Level("DEBUG".into(), LevelFilter::DEBUG)]);
        // A real change of LOGOUTPUT takes over the output.
        let got = f.on_read(&fields(Some("DEBUG"), Some("STDOUT")), Read::Event);
        assert_eq!(
            got,
            vec![Change::Output("STDOUT".into(), LogOutput::Stdout)]
        );
    }

    #[test]
    fn unknown_values_fall_back_like_swss_common() {
        let mut f = Follower::new(false, false);
        let got = f.on_read(&fields(Some("LOUD"), Some("FILE")), Read::Start);
        assert_eq!(
            got,
            vec![
                Change::Level("LOUD".into(), LevelFilter::INFO),
                Change::Output("FILE".into(), LogOutput::Syslog)
            ]
        );
    }

    #[test]
    fn a_missing_field_changes_nothing() {
        let mut f = Follower::new(false, false);
        assert!(f.on_read(&fields(None, None), Read::Start).is_empty());
        let got = f.on_read(&fields(None, Some("STDERR")), Read::Poll);
        assert_eq!(
            got,
            vec![Change::Output("STDERR".into(), LogOutput::Stderr)]
        );
    }

    #[test]
    fn keyspace_flags() {
        assert!(covers_hash_events("AKE"));
        assert!(covers_hash_events("Kh"));
        assert!(!covers_hash_events("Eh"));
        assert!(!covers_hash_events(""));
        assert!(!covers_hash_events("Kg"));
    }
}
