//! swss-common's log levels (`EMERG` … `DEBUG`) mapped onto tracing's.
//!
//! tracing has five levels and no NOTICE, so SONiC's eight fold onto them:
//!
//! | LOGLEVEL | tracing | what portsyncd then logs |
//! |---|---|---|
//! | `EMERG`, `ALERT`, `CRIT`, `ERROR` | error | fatal and failed operations |
//! | `WARN` | warn | plus retried failures, Redis outages, overruns |
//! | `NOTICE` (the default), `INFO` | info | plus one line per port change, start-up, shutdown |
//! | `DEBUG` | debug | plus every netlink message and Redis batch |
//!
//! The C++ daemon logs each link change at NOTICE, so NOTICE keeps the info lines. Lines go to syslog
//! with the severity of their tracing level: error → `LOG_ERR`, warn → `LOG_WARNING`, info →
//! `LOG_NOTICE`, debug and trace → `LOG_DEBUG`.

use tracing::level_filters::LevelFilter;
use tracing::Level;

/// The tracing filter for a swss `LOGLEVEL` value (any case); `None` for an unknown one.
pub fn from_swss(level: &str) -> Option<LevelFilter> {
    match level.to_ascii_uppercase().as_str() {
        "EMERG" | "ALERT" | "CRIT" | "ERROR" => Some(LevelFilter::ERROR),
        "WARN" => Some(LevelFilter::WARN),
        "NOTICE" | "INFO" => Some(LevelFilter::INFO),
        "DEBUG" => Some(LevelFilter::DEBUG),
        _ => None,
    }
}

/// The syslog severity a line of tracing level `level` is sent with.
pub fn syslog_severity(level: &Level) -> syslog::Severity {
    match *level {
        Level::ERROR => syslog::Severity::LOG_ERR,
        Level::WARN => syslog::Severity::LOG_WARNING,
        Level::INFO => syslog::Severity::LOG_NOTICE,
        Level::DEBUG | Level::TRACE => syslog::Severity::LOG_DEBUG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_swss_level_maps_and_unknown_ones_do_not() {
        let got: Vec<_> = [
            "EMERG", "ALERT", "CRIT", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG",
        ]
        .iter()
        .map(|l| from_swss(l))
        .collect();
        use LevelFilter as F;
        assert_eq!(
            got,
            [
                F::ERROR,
                F::ERROR,
                F::ERROR,
                F::ERROR,
                F::WARN,
                F::INFO,
                F::INFO,
                F::DEBUG
            ]
            .map(Some)
            .to_vec()
        );
        assert_eq!(from_swss("debug"), Some(F::DEBUG));
        assert_eq!(from_swss("LOUD"), None);
        assert_eq!(from_swss(""), None);
    }

    #[test]
    fn info_lines_reach_syslog_as_notice() {
        assert_eq!(
            syslog_severity(&Level::INFO) as u8,
            syslog::Severity::LOG_NOTICE as u8
        );
        assert_eq!(
            syslog_severity(&Level::TRACE) as u8,
            syslog::Severity::LOG_DEBUG as u8
        );
    }
}
