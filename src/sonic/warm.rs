//! Warm-restart tables (sonic-swss-common WarmStart) as portsyncd uses them.

use super::error::{DbError, EntryErrorReason};
use super::tables::{db_key, hget, hset, SonicDb};

/// STATE_DB table whose `system` or `swss` entry enables warm restart.
pub const WARM_RESTART_ENABLE_TABLE: &str = "WARM_RESTART_ENABLE_TABLE";
/// STATE_DB table with each application's warm-restart progress.
pub const WARM_RESTART_TABLE: &str = "WARM_RESTART_TABLE";
/// CONFIG_DB table with warm-restart timers per docker.
pub const CONFIG_WARM_RESTART: &str = "WARM_RESTART";
/// The application name in the warm-restart tables.
pub const APP_NAME: &str = "portsyncd";
/// The docker portsyncd belongs to.
pub const DOCKER_NAME: &str = "swss";

/// Parses a warm-restart timer value: an integer number of seconds in 1..=9999.
pub fn parse_warm_timer(v: &str) -> Option<u64> {
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|t| (1..=9999).contains(t))
}

/// What STATE_DB `WARM_RESTART_TABLE|portsyncd` `restore_count` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreCount {
    /// No such field (or the key is not a hash).
    Missing,
    /// A count.
    Count(u64),
    /// Not a count: bytes that are not UTF-8, or text that is not a non-negative integer within
    /// `u64` (SONiC itself would throw on it: `stoul`).
    Unparsable(EntryErrorReason),
}

/// Parses a `restore_count` value (surrounding blanks allowed, as `stoul` does).
pub fn parse_restore_count(v: &[u8]) -> RestoreCount {
    let Ok(s) = std::str::from_utf8(v) else {
        return RestoreCount::Unparsable(EntryErrorReason::NotUtf8);
    };
    match s.trim().parse::<u64>() {
        Ok(n) => RestoreCount::Count(n),
        Err(_) => RestoreCount::Unparsable(EntryErrorReason::BadValue),
    }
}

/// The `restore_count` a warm start writes after `previous`. SONiC keeps it as a `uint32_t` and
/// lets it wrap; here it is a `u64` incremented with checked arithmetic, and a count that cannot
/// grow (`u64::MAX`: nothing but a foreign or corrupted value gets there) starts again at 1, the
/// count of a first warm start, with a warning. None for that case, so the caller can say so.
pub fn next_restore_count(previous: u64) -> Option<u64> {
    previous.checked_add(1)
}

impl SonicDb {
    fn state_hget(
        &mut self,
        table: &str,
        key: &str,
        field: &str,
    ) -> Result<Option<Vec<u8>>, DbError> {
        let k = db_key(&self.layout.state, table, key);
        hget(&mut self.state, &mut self.entry_errors, &k, field)
    }

    fn state_hset(
        &mut self,
        table: &str,
        key: &str,
        field: &str,
        value: &str,
    ) -> Result<bool, DbError> {
        let k = db_key(&self.layout.state, table, key);
        hset(&mut self.state, &mut self.entry_errors, &k, field, value)
    }

    /// Warm restart is enabled iff STATE_DB `WARM_RESTART_ENABLE_TABLE|system` or `|swss` has
    /// `enable` = `true` (the bytes exactly; a key that is not a hash does not enable it).
    pub fn warm_enabled(&mut self) -> Result<bool, DbError> {
        for key in ["system", DOCKER_NAME] {
            if self
                .state_hget(WARM_RESTART_ENABLE_TABLE, key, "enable")?
                .as_deref()
                == Some(b"true".as_slice())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// STATE_DB `WARM_RESTART_TABLE|portsyncd` `restore_count`; None if missing or not a number
    /// (logged and counted: SONiC's rule treats it as missing, i.e. a cold start).
    pub fn read_restore_count(&mut self) -> Result<Option<u64>, DbError> {
        let v = self.state_hget(WARM_RESTART_TABLE, APP_NAME, "restore_count")?;
        let Some(v) = v else {
            return Ok(None);
        };
        match parse_restore_count(&v) {
            RestoreCount::Count(n) => Ok(Some(n)),
            RestoreCount::Missing => Ok(None),
            RestoreCount::Unparsable(reason) => {
                let key = db_key(&self.layout.state, WARM_RESTART_TABLE, APP_NAME);
                self.entry_errors
                    .record("STATE_DB", key.as_bytes(), reason, "restore_count");
                tracing::warn!(
                    value = %super::error::printable_key(&v),
                    "ignoring unparsable warm-restart restore_count"
                );
                Ok(None)
            }
        }
    }

    /// Writes STATE_DB `WARM_RESTART_TABLE|portsyncd` `restore_count`. False if Redis refused it
    /// for this key (counted, logged): the warm-restart table is bookkeeping for other tools,
    /// portsyncd carries on without it.
    pub fn write_restore_count(&mut self, n: u64) -> Result<bool, DbError> {
        self.state_hset(
            WARM_RESTART_TABLE,
            APP_NAME,
            "restore_count",
            &n.to_string(),
        )
    }

    /// Writes STATE_DB `WARM_RESTART_TABLE|portsyncd` `state` (`initialized`, `restored`,
    /// `replayed`, `reconciled`, `disabled`, `unknown`). False if Redis refused it for this key
    /// (counted, logged).
    pub fn write_warm_state(&mut self, state: &str) -> Result<bool, DbError> {
        self.state_hset(WARM_RESTART_TABLE, APP_NAME, "state", state)
    }

    /// CONFIG_DB `WARM_RESTART|swss` `portsyncd_timer` in seconds, if set and within 1..=9999
    /// (anything else is logged, counted and read as unset).
    pub fn read_warm_timer(&mut self) -> Result<Option<u64>, DbError> {
        let k = db_key(&self.layout.config, CONFIG_WARM_RESTART, DOCKER_NAME);
        let field = format!("{APP_NAME}_timer");
        let Some(v) = hget(&mut self.config, &mut self.entry_errors, &k, &field)? else {
            return Ok(None);
        };
        let timer = std::str::from_utf8(&v)
            .map_err(|_| EntryErrorReason::NotUtf8)
            .and_then(|s| parse_warm_timer(s).ok_or(EntryErrorReason::BadValue));
        match timer {
            Ok(t) => Ok(Some(t)),
            Err(reason) => {
                self.entry_errors
                    .record("CONFIG_DB", k.as_bytes(), reason, "portsyncd_timer");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_timer_range() {
        assert_eq!(parse_warm_timer("120"), Some(120));
        assert_eq!(parse_warm_timer("1"), Some(1));
        assert_eq!(parse_warm_timer("9999"), Some(9999));
        for bad in ["0", "10000", "-5", "", "abc", "1.5"] {
            assert_eq!(parse_warm_timer(bad), None, "{bad}");
        }
    }

    #[test]
    fn restore_counts() {
        assert_eq!(parse_restore_count(b"3"), RestoreCount::Count(3));
        assert_eq!(parse_restore_count(b" 7 "), RestoreCount::Count(7));
        assert_eq!(
            parse_restore_count(b"18446744073709551615"),
            RestoreCount::Count(u64::MAX)
        );
        assert_eq!(
            parse_restore_count(b"18446744073709551616"),
            RestoreCount::Unparsable(EntryErrorReason::BadValue)
        );
        assert_eq!(
            parse_restore_count(b"-1"),
            RestoreCount::Unparsable(EntryErrorReason::BadValue)
        );
        assert_eq!(
            parse_restore_count(b"\xff1"),
            RestoreCount::Unparsable(EntryErrorReason::NotUtf8)
        );
        assert_eq!(next_restore_count(u64::MAX), None);
        assert_eq!(next_restore_count(4), Some(5));
    }

    proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        // Regression files live under tests/ (not beside src/).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/sonic_warm.txt"
            )
        )),
        ..proptest::prelude::ProptestConfig::default()
    })]
        #[test]
        fn restore_count_parsing_is_total(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            match parse_restore_count(&v) {
                RestoreCount::Count(n) => {
                    let text = std::str::from_utf8(&v).expect("a count is text");
                    proptest::prop_assert_eq!(text.trim().parse::<u64>().ok(), Some(n));
                }
                RestoreCount::Unparsable(_) | RestoreCount::Missing => {}
            }
        }
    }
}
