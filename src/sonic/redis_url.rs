//! `--redis-url` parsing: `unix:///path/redis.sock` or `redis://host[:port]`.
//!
//! Hand-written on purpose, not redis' own `IntoConnectionInfo` (redis 1.8, through the `url` crate):
//! that parser accepts a wider language and normalises paths, so using it (even under a thin check)
//! would change which values start the daemon and which Unix socket it connects to. Measured with
//! redis 1.8.1, input -> redis' result (ours):
//! - accepted by redis, refused here (exit status 2): `redis://h:0` (port 0), `redis://h:` (6379),
//!   `redis://h:1/3` (database 3), `redis://u:pw@h:1` (ACL user), `redis://h:1?protocol=resp3`,
//!   `redis://h:1#frag`, `unix:///` (path "/"), `unix:/tmp/r.sock`, `redis+unix:///tmp/r.sock`,
//!   `valkey://h:1`, `unix://localhost/tmp/x.sock`;
//! - refused by redis, accepted here: `redis://0.0.0.0:6379`, `redis://[::]:6379` ("wildcard
//!   address"), `redis://h x:1`;
//! - another socket path: `unix:///tmp/a%20b.sock` is `/tmp/a b.sock` for redis (percent-decoded),
//!   `unix:///tmp/r/../x.sock` is `/tmp/x.sock` (dot segments removed); both are taken literally here;
//! - its errors carry no reason (`Redis URL did not parse - InvalidClientConfig`), where ours name
//!   what is wrong.
//!
//! A check on top would have to re-parse every one of these cases itself: this parser is that check.
//! `redis_parser_differences` below pins our side of each case.

use std::path::PathBuf;

use super::dbconfig::RedisAddr;
use super::error::DbConfigError;

/// Parses `unix:///path` or `redis://host[:port][/]`.
pub fn parse_redis_url(url: &str) -> Result<RedisAddr, DbConfigError> {
    let bad = |reason| DbConfigError::BadUrl {
        url: url.to_string(),
        reason,
    };
    if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(bad(
                "a unix socket path must be absolute (unix:///path/redis.sock)",
            ));
        }
        if path.len() == 1 {
            return Err(bad("the unix socket path is empty"));
        }
        return Ok(RedisAddr::Unix(PathBuf::from(path)));
    }
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("the scheme must be unix:// or redis://"))?;
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.contains('/') || hostport.contains('@') {
        return Err(bad(
            "only redis://host[:port] is supported (no path, database or credentials)",
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in host"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
    };
    Ok(RedisAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sonic::dbconfig::DbLayout;

    #[test]
    fn redis_urls() {
        let l = DbLayout::from_redis_url("unix:///tmp/r/redis.sock").unwrap();
        assert_eq!(l.appl.addr, RedisAddr::Unix("/tmp/r/redis.sock".into()));
        assert_eq!((l.appl.id, l.appl.separator.as_str()), (0, ":"));
        assert_eq!((l.config.id, l.config.separator.as_str()), (4, "|"));
        assert_eq!((l.state.id, l.state.separator.as_str()), (6, "|"));
        let tcp = |h: &str, p| RedisAddr::Tcp {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            parse_redis_url("redis://127.0.0.1:6380").unwrap(),
            tcp("127.0.0.1", 6380)
        );
        assert_eq!(
            parse_redis_url("redis://localhost/").unwrap(),
            tcp("localhost", 6379)
        );
        assert_eq!(
            parse_redis_url("redis://[::1]:7000").unwrap(),
            tcp("::1", 7000)
        );
        for bad in [
            "unix://relative/x.sock",
            "unix:///",
            "http://x:1",
            "redis://:6379",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:1/3",
            "redis://u:pw@h:1",
            "/tmp/redis.sock",
        ] {
            assert!(parse_redis_url(bad).is_err(), "{bad} accepted");
        }
    }

    /// The inputs where redis' `IntoConnectionInfo` decides otherwise (module comment): refused
    /// here, or accepted with the literal address.
    #[test]
    fn redis_parser_differences() {
        for bad in [
            "redis://h:",
            "redis://h:1?protocol=resp3",
            "redis://h:1#frag",
            "unix:/tmp/r.sock",
            "redis+unix:///tmp/r.sock",
            "valkey://h:1",
            "unix://localhost/tmp/x.sock",
        ] {
            assert!(parse_redis_url(bad).is_err(), "{bad} accepted");
        }
        let tcp = |h: &str, p| RedisAddr::Tcp {
            host: h.into(),
            port: p,
        };
        for (url, host) in [
            ("redis://0.0.0.0:6379", "0.0.0.0"),
            ("redis://[::]:6379", "::"),
            ("redis://h x:1", "h x"),
        ] {
            let port = if host == "h x" { 1 } else { 6379 };
            assert_eq!(parse_redis_url(url).unwrap(), tcp(host, port), "{url}");
        }
        for path in ["/tmp/a%20b.sock", "/tmp/r/../x.sock"] {
            assert_eq!(
                parse_redis_url(&format!("unix://{path}")).unwrap(),
                RedisAddr::Unix(path.into())
            );
        }
    }

    #[test]
    fn addr_display_round_trips() {
        for url in [
            "unix:///var/run/redis/redis.sock",
            "redis://10.1.2.3:6379",
            "redis://[::1]:6379",
        ] {
            assert_eq!(parse_redis_url(url).unwrap().to_string(), url);
        }
    }
}
