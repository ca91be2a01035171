//! `--redis-url` parsing: `unix:///path/redis.sock` or `redis://host[:port]`.

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
