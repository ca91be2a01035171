//! Tracing set-up and a rate limiter for anything the kernel can flood.

use std::time::{Duration, Instant};

/// Installs the global `tracing` subscriber at `level` (error, warn, info, debug, trace).
/// `RUST_LOG` may refine it per module.
pub fn init(level: &str) {
    use std::io::IsTerminal;
    // `level` applies to portsyncd itself; dependencies (sled is chatty at debug) stay at warn.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,portsyncd={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
