//! Time as the store keeps it: unix seconds, stored in every generation and export, shown in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::limits;

/// Now as unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (UTC), for logs and the tool: RFC 3339 as the `time` crate
/// writes it for a UTC time without fractional seconds (pinned by `golden_tests`).
///
/// Every time shown comes from a file or a generation, whose readers reject a `saved_at` after
/// 9999-12-31T23:59:59Z ([`limits::MAX_SAVED_AT`]); a later time, outside RFC 3339's four-digit years,
/// is shown as its number of seconds.
pub fn format_utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Convert unix seconds to a `SystemTime` (saturating at [`limits::MAX_SAVED_AT`]; every reader
/// rejects a later time before it gets here).
pub fn to_system_time(secs: u64) -> SystemTime {
    let secs = secs.min(limits::MAX_SAVED_AT);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}
