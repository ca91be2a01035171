//! Tracing set-up (level and output switchable at run time, for swss-common's Logger table) and a rate
//! limiter for anything the kernel can flood.

pub mod level;
pub mod output;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

pub use output::{LogOutput, Switch};

/// What can be changed after start-up, and what the options fixed at start.
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    output: Switch,
    /// The level was given (`--log-level` / `PORTSYNCD_LOG_LEVEL` / `RUST_LOG`): it wins at start.
    pub level_explicit: bool,
    /// The output was given (`--log-output` / `PORTSYNCD_LOG_OUTPUT`): it wins at start.
    pub output_explicit: bool,
}

impl LogControl {
    /// Sets portsyncd's level (dependencies stay at warn; a `RUST_LOG` refinement is replaced).
    pub fn set_level(&self, level: LevelFilter) {
        let f = EnvFilter::new(format!("warn,portsyncd={level}"));
        if let Err(e) = self.filter.reload(f) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }

    pub fn set_output(&self, output: LogOutput) {
        self.output.set(output);
    }

    pub fn output(&self) -> LogOutput {
        self.output.get()
    }
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// The handle [`init`] installed (None before, or when another subscriber was already set).
pub fn control() -> Option<&'static LogControl> {
    CONTROL.get()
}

/// Full lines (time, level, fields) on stdout/stderr; on syslog, which stamps time and severity
/// itself, only the message and its fields.
struct SwitchFormat {
    output: Switch,
    full: Format<Full>,
    bare: Format<Full, ()>,
}

impl<S, N> FormatEvent<S, N> for SwitchFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        match self.output.get() {
            LogOutput::Syslog => self.bare.format_event(ctx, writer, event),
            _ => self.full.format_event(ctx, writer, event),
        }
    }
}

/// Installs the global `tracing` subscriber at `level` (error, warn, info, debug, trace) on `output`
/// (stderr when `None`: until CONFIG_DB's `LOGGER|portsyncd` says otherwise). `RUST_LOG` may refine
/// the level per module. `level_explicit`: the level was given rather than defaulted.
pub fn init(level: &str, level_explicit: bool, output: Option<LogOutput>) {
    use std::io::IsTerminal;
    let rust_log = std::env::var_os("RUST_LOG").is_some();
    // `level` applies to portsyncd itself; dependencies (sled is chatty at debug) stay at warn.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,portsyncd={level}")));
    let (filter, handle) = reload::Layer::new(filter);
    let start = output.unwrap_or(LogOutput::Stderr);
    let switch = Switch::new(start);
    let ansi = output.is_none_or(|o| o != LogOutput::Syslog) && std::io::stderr().is_terminal();
    let format = SwitchFormat {
        output: switch.clone(),
        full: tracing_subscriber::fmt::format()
            .with_target(false)
            .with_ansi(ansi),
        bare: tracing_subscriber::fmt::format()
            .with_target(false)
            .with_level(false)
            .with_ansi(false)
            .without_time(),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .event_format(format)
        .with_ansi(ansi)
        .with_writer(switch.clone());
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = CONTROL.set(LogControl {
            filter: handle,
            output: switch,
            level_explicit: level_explicit || rust_log,
            output_explicit: output.is_some(),
        });
    }
}

/// Lets one message through per `interval` and counts the ones it held back.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now (`n` = messages suppressed since the last one).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_with_a_count_of_the_rest() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Duration::from_secs(10));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(10)), Some(2));
    }
}
