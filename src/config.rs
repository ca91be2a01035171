//! Options and environment variables, in one place (`docs/configuration.md` lists them).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::Parser;

use crate::logging::LogOutput;

/// Longest anti-entropy interval (a year): larger values would overflow a deadline.
pub const MAX_RESYNC_INTERVAL_SECS: u64 = 365 * 86_400;
/// Most generations kept.
pub const MAX_GENERATIONS: usize = 1000;

/// A value parser over `&str` that refuses a value that is not UTF-8 the way it refuses a bad one:
/// exit status 2, naming the option and the value (its bytes escaped). clap's own refusal of such a
/// value names neither.
#[derive(Clone)]
struct Utf8<F>(F);

impl<T, F> TypedValueParser for Utf8<F>
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        match value.to_str() {
            Some(text) => (self.0)(text).map_err(|why| invalid(cmd, arg, text, &why)),
            None => Err(invalid(
                cmd,
                arg,
                &escaped(value),
                "not UTF-8 (bytes shown escaped)",
            )),
        }
    }
}

/// An option value's bytes, printable (`\xff` for a byte that is not ASCII).
fn escaped(value: &OsStr) -> String {
    value.as_encoded_bytes().escape_ascii().to_string()
}

/// `text` with every control character escaped (`\u{1b}`): a value from outside must not reach
/// the terminal as an escape sequence.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// clap's refusal of a value: "invalid value 'V' for '--option <N>': why" (exit status 2).
fn invalid(cmd: &clap::Command, arg: Option<&clap::Arg>, shown: &str, why: &str) -> clap::Error {
    let name = arg.map_or_else(|| "the value".to_string(), |a| a.to_string());
    clap::Error::raw(
        clap::error::ErrorKind::ValueValidation,
        format!(
            "invalid value '{}' for '{name}': {}\n",
            printable(shown),
            printable(why)
        ),
    )
    .with_cmd(cmd)
}

fn parse_text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

fn parse_secs(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("expected a whole number of seconds, got '{s}'"))
}

fn parse_resync_secs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_RESYNC_INTERVAL_SECS => Ok(n),
        _ => Err(format!(
            "expected a whole number of seconds from 0 to {MAX_RESYNC_INTERVAL_SECS}, got '{s}'"
        )),
    }
}

fn parse_days(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("expected a whole number of days, got '{s}'"))
}

fn parse_generations(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_GENERATIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_GENERATIONS}, got '{s}'"
        )),
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|e| format!("expected an address such as 127.0.0.1:9810, got '{s}': {e}"))
}

/// Parses the interface's BOOL: `true`/`false`/`1`/`0`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("expected true, false, 1 or 0, got '{s}'")),
    }
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    crate::sonic::parse_redis_url(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_log_level(s: &str) -> Result<String, String> {
    match s {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(s.to_string()),
        _ => Err(format!(
            "expected error, warn, info, debug or trace, got '{s}'"
        )),
    }
}

fn parse_log_output(s: &str) -> Result<LogOutput, String> {
    LogOutput::parse(s).ok_or_else(|| format!("expected syslog, stdout or stderr, got '{s}'"))
}

/// Where the compatibility JSON goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonExport {
    /// `<state-dir>/port_state.json`.
    Default,
    Off,
    Path(PathBuf),
}

/// A path (any bytes: Linux paths need not be UTF-8) or `off`.
#[derive(Clone)]
struct JsonExportParser;

impl TypedValueParser for JsonExportParser {
    type Value = JsonExport;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<JsonExport, clap::Error> {
        if value.is_empty() {
            return Err(invalid(
                cmd,
                arg,
                "",
                "expected a path or 'off', got an empty value",
            ));
        }
        if value == "off" {
            return Ok(JsonExport::Off);
        }
        Ok(JsonExport::Path(PathBuf::from(value)))
    }
}

/// portsyncd: mirrors the kernel's port state (netlink) into SONiC's Redis databases, and keeps what
/// it published in a crash-safe store so restarts neither churn nor lie.
///
/// Every option can also be set through the environment variable shown; the command line wins.
/// Exit status: 0 after SIGTERM/SIGINT, 2 for an invalid option or environment value, 1 for any
/// other fatal error.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portsyncd",
    version,
    about,
    long_about,
    allow_negative_numbers = true
)]
pub struct Config {
    /// SONiC database layout (database_config.json).
    #[arg(
        long,
        env = "PORTSYNCD_DB_CONFIG",
        value_name = "PATH",
        default_value = "/var/run/redis/sonic-db/database_config.json"
    )]
    pub db_config: PathBuf,

    /// Multi-ASIC namespace, resolved through database_global.json beside --db-config.
    #[arg(long, env = "PORTSYNCD_NAMESPACE", value_name = "NAME", value_parser = Utf8(parse_text))]
    pub namespace: Option<String>,

    /// One Redis for every DB with SONiC's default ids (unix:///path/redis.sock or
    /// redis://host:port); overrides --db-config.
    #[arg(long, env = "PORTSYNCD_REDIS_URL", value_name = "URL", value_parser = Utf8(parse_redis_url))]
    pub redis_url: Option<String>,

    /// Directory of the state store (sled) and of the JSON export.
    #[arg(
        long,
        env = "PORTSYNCD_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/sonic/portsyncd"
    )]
    pub state_dir: PathBuf,

    /// Longest wait for the end of the initial link dump, in seconds; 0 = do not wait.
    /// Default: CONFIG_DB `WARM_RESTART|swss portsyncd_timer`, else 10.
    #[arg(long, env = "PORTSYNCD_EOIU_TIMEOUT_SECS", value_name = "N", value_parser = Utf8(parse_secs))]
    pub eoiu_timeout_secs: Option<u64>,

    /// Anti-entropy: every N seconds, once no link message arrived for 2 s, compare a fresh link
    /// dump and a read-back of Redis with what portsyncd believes, and repair differences; 0 = off.
    #[arg(
        long,
        env = "PORTSYNCD_RESYNC_INTERVAL_SECS",
        value_name = "N",
        default_value = "300",
        value_parser = Utf8(parse_resync_secs)
    )]
    pub resync_interval_secs: u64,

    /// A saved state older than this many days is not used for a warm start.
    #[arg(
        long,
        env = "PORTSYNCD_STATE_MAX_AGE_DAYS",
        value_name = "N",
        default_value = "7",
        value_parser = Utf8(parse_days)
    )]
    pub state_max_age_days: u64,

    /// Keep several generations of the saved state (false: keep one).
    #[arg(long, env = "PORTSYNCD_STATE_ROTATION", value_name = "BOOL", default_value = "true", value_parser = Utf8(parse_bool), action = clap::ArgAction::Set)]
    pub state_rotation: bool,

    /// Generations kept when rotation is on.
    #[arg(long, env = "PORTSYNCD_STATE_GENERATIONS", value_name = "N", default_value = "3", value_parser = Utf8(parse_generations))]
    pub state_generations: usize,

    /// Fall back to older generations / the JSON export on corruption (false: cold start).
    #[arg(long, env = "PORTSYNCD_STATE_RECOVERY", value_name = "BOOL", default_value = "true", value_parser = Utf8(parse_bool), action = clap::ArgAction::Set)]
    pub state_recovery: bool,

    /// Compatibility JSON rewritten after each commit: a path, or `off`.
    /// Default: <state-dir>/port_state.json.
    #[arg(long, env = "PORTSYNCD_JSON_EXPORT", value_name = "PATH|off", value_parser = JsonExportParser)]
    pub json_export: Option<JsonExport>,

    /// Serve Prometheus metrics.
    #[arg(long, env = "PORTSYNCD_METRICS_ENABLED", value_name = "BOOL", default_value = "true", value_parser = Utf8(parse_bool), action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    /// Address of the metrics endpoint (GET /metrics).
    #[arg(
        long,
        env = "PORTSYNCD_METRICS_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9810",
        value_parser = Utf8(parse_socket_addr)
    )]
    pub metrics_listen: SocketAddr,

    /// error, warn, info, debug or trace.
    #[arg(long, env = "PORTSYNCD_LOG_LEVEL", value_name = "LEVEL", default_value = "info", value_parser = Utf8(parse_log_level))]
    pub log_level: String,

    /// Where log lines go: syslog (ident `portsyncd`), stdout or stderr.
    /// Default: CONFIG_DB `LOGGER|portsyncd LOGOUTPUT` (SYSLOG when unset); stderr until Redis answers.
    #[arg(long, env = "PORTSYNCD_LOG_OUTPUT", value_name = "WHERE", value_parser = Utf8(parse_log_output))]
    pub log_output: Option<LogOutput>,

    /// Whether `--log-level` / `PORTSYNCD_LOG_LEVEL` was given (not its default): then it wins over
    /// CONFIG_DB `LOGGER|portsyncd LOGLEVEL` at start. Set by [`Config::parse_args`].
    #[arg(skip)]
    pub log_level_explicit: bool,
}

impl Config {
    /// Parses the command line and environment like `try_parse`, and records which log options were
    /// given explicitly (command line or environment) rather than defaulted.
    pub fn parse_args() -> Result<Config, clap::Error> {
        Self::parse_from_iter(std::env::args_os())
    }

    /// [`Config::parse_args`] over given arguments (the first is the program name).
    pub fn parse_from_iter<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cfg = Self::from_arg_matches(&matches)?;
        cfg.log_level_explicit = matches!(
            matches.value_source("log_level"),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        Ok(cfg)
    }

    /// The JSON export path, resolved against the state directory.
    pub fn json_export_path(&self) -> Option<PathBuf> {
        match &self.json_export {
            None | Some(JsonExport::Default) => Some(self.state_dir.join("port_state.json")),
            Some(JsonExport::Off) => None,
            Some(JsonExport::Path(p)) => Some(p.clone()),
        }
    }

    /// Generations to keep.
    pub fn generations(&self) -> usize {
        if self.state_rotation {
            self.state_generations
        } else {
            1
        }
    }

    /// The anti-entropy interval (None: off).
    pub fn resync_interval(&self) -> Option<Duration> {
        (self.resync_interval_secs > 0).then(|| Duration::from_secs(self.resync_interval_secs))
    }

    /// Maximum age of a saved state usable for a warm start.
    pub fn state_max_age(&self) -> Duration {
        Duration::from_secs(self.state_max_age_days.saturating_mul(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("portsyncd").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_interface() {
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/sonic/portsyncd"));
        assert_eq!(c.eoiu_timeout_secs, None);
        assert_eq!(c.state_max_age(), Duration::from_secs(7 * 86_400));
        assert_eq!(c.generations(), 3);
        assert!(c.state_recovery && c.metrics_enabled);
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9810");
        assert_eq!(c.resync_interval(), Some(Duration::from_secs(300)));
        let off = parse(&["--resync-interval-secs", "0"]).expect("parses");
        assert_eq!(off.resync_interval(), None);
        assert_eq!(
            c.json_export_path(),
            Some(PathBuf::from("/var/lib/sonic/portsyncd/port_state.json"))
        );
    }

    #[test]
    fn log_options_remember_whether_they_were_given() {
        let c = Config::parse_from_iter(["portsyncd"]).expect("parses");
        assert!(!c.log_level_explicit);
        assert_eq!(c.log_output, None);
        let c =
            Config::parse_from_iter(["portsyncd", "--log-level", "info", "--log-output", "STDOUT"])
                .expect("parses");
        assert!(
            c.log_level_explicit,
            "an explicit value equal to the default still counts"
        );
        assert_eq!(c.log_output, Some(LogOutput::Stdout));
    }

    #[test]
    fn bools_rotation_and_export() {
        let c = parse(&[
            "--state-rotation",
            "0",
            "--metrics-enabled",
            "false",
            "--json-export",
            "off",
        ])
        .expect("parses");
        assert_eq!(c.generations(), 1);
        assert!(!c.metrics_enabled);
        assert_eq!(c.json_export_path(), None);
    }

    #[test]
    fn bad_values_name_the_option_and_value_and_exit_2() {
        for (args, opt, val) in [
            (&["--state-rotation", "yes"][..], "--state-rotation", "yes"),
            (
                &["--eoiu-timeout-secs", "-3"][..],
                "--eoiu-timeout-secs",
                "-3",
            ),
            (
                &["--state-generations", "0"][..],
                "--state-generations",
                "0",
            ),
            (
                &["--metrics-listen", "nowhere"][..],
                "--metrics-listen",
                "nowhere",
            ),
            (&["--log-level", "loud"][..], "--log-level", "loud"),
            (
                &["--resync-interval-secs", "soon"][..],
                "--resync-interval-secs",
                "soon",
            ),
            (&["--redis-url", "foo://x"][..], "--redis-url", "foo://x"),
            (&["--log-output", "file"][..], "--log-output", "file"),
        ] {
            let e = parse(args).expect_err("must be refused");
            let msg = e.to_string();
            assert!(msg.contains(opt) && msg.contains(val), "{msg}");
            assert_eq!(e.exit_code(), 2);
        }
    }
}
