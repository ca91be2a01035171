//! Warm-restart tables (sonic-swss-common WarmStart) as portsyncd uses them.

use super::error::DbError;
use super::tables::{db_key, SonicDb};

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

impl SonicDb {
    fn state_hget(
        &mut self,
        table: &str,
        key: &str,
        field: &str,
    ) -> Result<Option<String>, DbError> {
        let k = db_key(&self.layout.state, table, key);
        self.state.run(&format!("HGET {k} {field}"), |con| {
            redis::cmd("HGET").arg(&k).arg(field).query(con)
        })
    }

    fn state_hset(
        &mut self,
        table: &str,
        key: &str,
        field: &str,
        value: &str,
    ) -> Result<(), DbError> {
        let k = db_key(&self.layout.state, table, key);
        self.state.run(&format!("HSET {k} {field}"), |con| {
            redis::cmd("HSET").arg(&k).arg(field).arg(value).exec(con)
        })
    }

    /// Warm restart is enabled iff STATE_DB `WARM_RESTART_ENABLE_TABLE|system` or `|swss` has
    /// `enable` = `true`.
    pub fn warm_enabled(&mut self) -> Result<bool, DbError> {
        for key in ["system", DOCKER_NAME] {
            if self
                .state_hget(WARM_RESTART_ENABLE_TABLE, key, "enable")?
                .as_deref()
                == Some("true")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// STATE_DB `WARM_RESTART_TABLE|portsyncd` `restore_count`; None if missing or not a number.
    pub fn read_restore_count(&mut self) -> Result<Option<u64>, DbError> {
        let v = self.state_hget(WARM_RESTART_TABLE, APP_NAME, "restore_count")?;
        Ok(v.and_then(|s| match s.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                tracing::warn!(value = %s, "ignoring unparsable warm-restart restore_count");
                None
            }
        }))
    }

    /// Writes STATE_DB `WARM_RESTART_TABLE|portsyncd` `restore_count`.
    pub fn write_restore_count(&mut self, n: u64) -> Result<(), DbError> {
        self.state_hset(
            WARM_RESTART_TABLE,
            APP_NAME,
            "restore_count",
            &n.to_string(),
        )
    }

    /// Writes STATE_DB `WARM_RESTART_TABLE|portsyncd` `state` (`initialized`, `restored`,
    /// `replayed`, `reconciled`, `disabled`, `unknown`).
    pub fn write_warm_state(&mut self, state: &str) -> Result<(), DbError> {
        self.state_hset(WARM_RESTART_TABLE, APP_NAME, "state", state)
    }

    /// CONFIG_DB `WARM_RESTART|swss` `portsyncd_timer` in seconds, if set and within 1..=9999.
    pub fn read_warm_timer(&mut self) -> Result<Option<u64>, DbError> {
        let k = db_key(&self.layout.config, CONFIG_WARM_RESTART, DOCKER_NAME);
        let field = format!("{APP_NAME}_timer");
        let v: Option<String> = self.config.run(&format!("HGET {k} {field}"), |con| {
            redis::cmd("HGET").arg(&k).arg(&field).query(con)
        })?;
        Ok(v.as_deref().and_then(parse_warm_timer))
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
}
