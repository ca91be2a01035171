//! SONiC database layout: which Redis instance, database id and key separator each database uses.
//!
//! Read from SONiC's `database_config.json` (`INSTANCES.<name>.{hostname, port, unix_socket_path}`,
//! `DATABASES.<NAME>.{id, separator, instance}`), optionally through `database_global.json` for a
//! multi-ASIC namespace, or built from a single `--redis-url` with SONiC's default ids.
//!
//! The files come from outside: they are read up to [`MAX_FILE_BYTES`], and every value portsyncd
//! uses is checked before it is used (a database id that Redis can select, a separator that is not
//! empty, a socket path or host name without NUL, a port that is not 0). A bad value is an error
//! that names the file, the database or instance, and the value.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::DbConfigError;
pub use super::redis_url::parse_redis_url;

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// A unix-domain socket (what SONiC uses).
    Unix(PathBuf),
    /// A TCP endpoint.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            RedisAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "redis://[{host}]:{port}")
            }
            RedisAddr::Tcp { host, port } => write!(f, "redis://{host}:{port}"),
        }
    }
}

/// One logical SONiC database: its server, its numeric id (for `SELECT`) and its key separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEndpoint {
    /// The server.
    pub addr: RedisAddr,
    /// The database number (`SELECT id`).
    pub id: i64,
    /// The separator between table name and key (`:` in APPL_DB, `|` in CONFIG_DB and STATE_DB).
    pub separator: String,
}

/// The three databases portsyncd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbLayout {
    /// APPL_DB (ProducerStateTable writes, read by orchagent).
    pub appl: DbEndpoint,
    /// CONFIG_DB (port configuration, warm-restart timers).
    pub config: DbEndpoint,
    /// STATE_DB (link state, warm-restart state).
    pub state: DbEndpoint,
}

/// SONiC's default APPL_DB id and separator.
pub const DEFAULT_APPL: (i64, &str) = (0, ":");
/// SONiC's default CONFIG_DB id and separator.
pub const DEFAULT_CONFIG: (i64, &str) = (4, "|");
/// SONiC's default STATE_DB id and separator.
pub const DEFAULT_STATE: (i64, &str) = (6, "|");

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "INSTANCES")]
    instances: BTreeMap<String, InstanceJson>,
    #[serde(rename = "DATABASES")]
    databases: BTreeMap<String, DatabaseJson>,
}

#[derive(Deserialize)]
struct InstanceJson {
    hostname: Option<String>,
    port: Option<u16>,
    unix_socket_path: Option<String>,
}

#[derive(Deserialize)]
struct DatabaseJson {
    id: i64,
    separator: String,
    instance: String,
}

#[derive(Deserialize)]
struct GlobalFile {
    #[serde(rename = "INCLUDES")]
    includes: Vec<IncludeJson>,
}

#[derive(Deserialize)]
struct IncludeJson {
    namespace: Option<String>,
    include: String,
}

/// The largest `database_config.json` / `database_global.json` read (SONiC's are a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Highest database id accepted (Redis numbers its databases with a C `int`).
pub const MAX_DB_ID: i64 = i32::MAX as i64;

fn read(path: &Path) -> Result<String, DbConfigError> {
    let err = |source| DbConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut text = String::new();
    // One byte more than allowed tells a file that is too large (or a device that never ends).
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(err)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        )));
    }
    Ok(text)
}

/// A value of the file that portsyncd cannot use, as a JSON error of that file.
fn bad_value(path: &Path, what: String) -> DbConfigError {
    DbConfigError::Json {
        path: path.to_path_buf(),
        source: serde::de::Error::custom(what),
    }
}

impl DbLayout {
    /// Reads the layout from a `database_config.json`. With a namespace, the file actually read is the
    /// one that `database_global.json` (in the same directory as `path`) lists for that namespace,
    /// resolved relative to the global file's directory.
    pub fn from_config_file(path: &Path, namespace: Option<&str>) -> Result<Self, DbConfigError> {
        // SONiC spells the default namespace as the empty string.
        let config_path = match namespace.filter(|ns| !ns.is_empty()) {
            None => path.to_path_buf(),
            Some(ns) => {
                let dir = path.parent().unwrap_or_else(|| Path::new("."));
                let global = dir.join("database_global.json");
                let include = namespace_include(&read(&global)?, &global, ns)?;
                dir.join(include)
            }
        };
        Self::from_config_str(&read(&config_path)?, &config_path)
    }

    /// Parses the text of a `database_config.json`; `path` only names the file in errors.
    pub fn from_config_str(text: &str, path: &Path) -> Result<Self, DbConfigError> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|source| DbConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let endpoint = |db: &'static str| -> Result<DbEndpoint, DbConfigError> {
            let d = file
                .databases
                .get(db)
                .ok_or_else(|| DbConfigError::MissingDatabase {
                    path: path.to_path_buf(),
                    db,
                })?;
            let inst =
                file.instances
                    .get(&d.instance)
                    .ok_or_else(|| DbConfigError::MissingInstance {
                        path: path.to_path_buf(),
                        db,
                        instance: d.instance.clone(),
                    })?;
            if !(0..=MAX_DB_ID).contains(&d.id) {
                return Err(bad_value(
                    path,
                    format!("database {db}: id {} is not from 0 to {MAX_DB_ID}", d.id),
                ));
            }
            if d.separator.is_empty() || d.separator.contains('\0') {
                return Err(bad_value(
                    path,
                    format!(
                        "database {db}: separator {:?} is empty or holds NUL",
                        d.separator
                    ),
                ));
            }
            let addr = match (&inst.unix_socket_path, &inst.hostname, inst.port) {
                (Some(sock), _, _) if sock.contains('\0') => {
                    return Err(bad_value(
                        path,
                        format!("instance {:?}: unix_socket_path {sock:?} holds NUL", d.instance),
                    ))
                }
                (Some(sock), _, _) if !sock.is_empty() => RedisAddr::Unix(PathBuf::from(sock)),
                (_, Some(host), Some(port)) if host.contains('\0') || port == 0 => {
                    return Err(bad_value(
                        path,
                        format!(
                            "instance {:?}: hostname {host:?} port {port} (NUL in the name or port 0)",
                            d.instance
                        ),
                    ))
                }
                (_, Some(host), Some(port)) if !host.is_empty() => RedisAddr::Tcp {
                    host: host.clone(),
                    port,
                },
                _ => {
                    return Err(DbConfigError::NoAddress {
                        path: path.to_path_buf(),
                        instance: d.instance.clone(),
                    })
                }
            };
            Ok(DbEndpoint {
                addr,
                id: d.id,
                separator: d.separator.clone(),
            })
        };
        Ok(DbLayout {
            appl: endpoint("APPL_DB")?,
            config: endpoint("CONFIG_DB")?,
            state: endpoint("STATE_DB")?,
        })
    }

    /// One Redis server for every database, with SONiC's default ids and separators.
    /// Accepts `unix:///abs/path/redis.sock` and `redis://host[:port][/]` (port defaults to 6379).
    pub fn from_redis_url(url: &str) -> Result<Self, DbConfigError> {
        let addr = parse_redis_url(url)?;
        let ep = |(id, sep): (i64, &str)| DbEndpoint {
            addr: addr.clone(),
            id,
            separator: sep.to_string(),
        };
        Ok(DbLayout {
            appl: ep(DEFAULT_APPL),
            config: ep(DEFAULT_CONFIG),
            state: ep(DEFAULT_STATE),
        })
    }
}

/// Finds the include path for `namespace` in the text of a `database_global.json`.
fn namespace_include(text: &str, path: &Path, namespace: &str) -> Result<String, DbConfigError> {
    let global: GlobalFile = serde_json::from_str(text).map_err(|source| DbConfigError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    global
        .includes
        .into_iter()
        .find(|inc| inc.namespace.as_deref() == Some(namespace))
        .map(|inc| inc.include)
        .ok_or_else(|| DbConfigError::NamespaceNotFound {
            path: path.to_path_buf(),
            namespace: namespace.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like SONiC's /var/run/redis/sonic-db/database_config.json on a single-ASIC switch.
    const SONIC_CONFIG: &str = r#"{
    "INSTANCES": {
        "redis": {
            "hostname": "127.0.0.1",
            "port": 6379,
            "unix_socket_path": "/var/run/redis/redis.sock",
            "persistence_for_warm_boot": "yes"
        },
        "redis_chassis": {
            "hostname": "redis_chassis.server",
            "port": 6380,
            "unix_socket_path": "/var/run/redis-chassis/redis_chassis.sock"
        },
        "redis_bmp": {
            "hostname": "10.0.0.9",
            "port": 6400
        }
    },
    "DATABASES": {
        "APPL_DB": { "id": 0, "separator": ":", "instance": "redis" },
        "ASIC_DB": { "id": 1, "separator": ":", "instance": "redis" },
        "COUNTERS_DB": { "id": 2, "separator": ":", "instance": "redis" },
        "LOGLEVEL_DB": { "id": 3, "separator": ":", "instance": "redis" },
        "CONFIG_DB": { "id": 4, "separator": "|", "instance": "redis" },
        "PFC_WD_DB": { "id": 5, "separator": ":", "instance": "redis" },
        "FLEX_COUNTER_DB": { "id": 5, "separator": ":", "instance": "redis" },
        "STATE_DB": { "id": 6, "separator": "|", "instance": "redis" },
        "SNMP_OVERLAY_DB": { "id": 7, "separator": "|", "instance": "redis" },
        "CHASSIS_APP_DB": { "id": 12, "separator": "|", "instance": "redis_chassis" },
        "BMP_STATE_DB": { "id": 20, "separator": "|", "instance": "redis_bmp" }
    },
    "VERSION": "1.0"
}"#;

    fn p() -> &'static Path {
        Path::new("/x/database_config.json")
    }

    #[test]
    fn parses_sonic_config_preferring_unix_socket() {
        let l = DbLayout::from_config_str(SONIC_CONFIG, p()).unwrap();
        let sock = RedisAddr::Unix("/var/run/redis/redis.sock".into());
        assert_eq!(
            l.appl,
            DbEndpoint {
                addr: sock.clone(),
                id: 0,
                separator: ":".into()
            }
        );
        assert_eq!(
            l.config,
            DbEndpoint {
                addr: sock.clone(),
                id: 4,
                separator: "|".into()
            }
        );
        assert_eq!(
            l.state,
            DbEndpoint {
                addr: sock,
                id: 6,
                separator: "|".into()
            }
        );
    }

    #[test]
    fn falls_back_to_tcp_without_socket() {
        let text = SONIC_CONFIG.replace(
            r#""STATE_DB": { "id": 6, "separator": "|", "instance": "redis" }"#,
            r#""STATE_DB": { "id": 13, "separator": "|", "instance": "redis_bmp" }"#,
        );
        let l = DbLayout::from_config_str(&text, p()).unwrap();
        assert_eq!(
            l.state.addr,
            RedisAddr::Tcp {
                host: "10.0.0.9".into(),
                port: 6400
            }
        );
        assert_eq!(l.state.id, 13);
    }

    #[test]
    fn missing_database_is_named() {
        let text = SONIC_CONFIG.replace("\"STATE_DB\"", "\"STATE_DB_X\"");
        let err = DbLayout::from_config_str(&text, p()).unwrap_err();
        assert!(
            matches!(err, DbConfigError::MissingDatabase { db: "STATE_DB", .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/x/database_config.json") && msg.contains("STATE_DB"),
            "{msg}"
        );
    }

    #[test]
    fn missing_instance_is_named() {
        let text = SONIC_CONFIG.replace(
            r#""CONFIG_DB": { "id": 4, "separator": "|", "instance": "redis" }"#,
            r#""CONFIG_DB": { "id": 4, "separator": "|", "instance": "nope" }"#,
        );
        let err = DbLayout::from_config_str(&text, p()).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn instance_without_address_is_an_error() {
        let text = r#"{"INSTANCES": {"redis": {}}, "DATABASES": {
            "APPL_DB": {"id": 0, "separator": ":", "instance": "redis"},
            "CONFIG_DB": {"id": 4, "separator": "|", "instance": "redis"},
            "STATE_DB": {"id": 6, "separator": "|", "instance": "redis"}}}"#;
        let err = DbLayout::from_config_str(text, p()).unwrap_err();
        assert!(matches!(err, DbConfigError::NoAddress { .. }), "{err}");
    }

    #[test]
    fn bad_json_names_the_file() {
        let err = DbLayout::from_config_str("{\"INSTANCES\": ", p()).unwrap_err();
        assert!(err.to_string().contains("/x/database_config.json"), "{err}");
    }

    #[test]
    fn namespace_include_lookup() {
        let global = r#"{"INCLUDES": [
            {"include": "database_config.json"},
            {"namespace": "asic0", "include": "../redis0/sonic-db/database_config.json"},
            {"namespace": "asic1", "include": "../redis1/sonic-db/database_config.json"}
        ], "VERSION": "1.0"}"#;
        let g = Path::new("/g/database_global.json");
        assert_eq!(
            namespace_include(global, g, "asic1").unwrap(),
            "../redis1/sonic-db/database_config.json"
        );
        let err = namespace_include(global, g, "asic7").unwrap_err();
        assert!(err.to_string().contains("asic7"), "{err}");
    }

    #[test]
    fn reads_files_and_namespaces() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sonic-db");
        let ns_dir = root.path().join("redis0/sonic-db");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&ns_dir).unwrap();
        std::fs::write(dir.join("database_config.json"), SONIC_CONFIG).unwrap();
        let asic0 = SONIC_CONFIG.replace("/var/run/redis/redis.sock", "/var/run/redis0/redis.sock");
        std::fs::write(ns_dir.join("database_config.json"), asic0).unwrap();
        std::fs::write(
            dir.join("database_global.json"),
            r#"{"INCLUDES": [{"include": "database_config.json"},
                {"namespace": "asic0", "include": "../redis0/sonic-db/database_config.json"}]}"#,
        )
        .unwrap();
        let cfg = dir.join("database_config.json");
        let host = DbLayout::from_config_file(&cfg, None).unwrap();
        assert_eq!(
            host.appl.addr,
            RedisAddr::Unix("/var/run/redis/redis.sock".into())
        );
        let ns = DbLayout::from_config_file(&cfg, Some("asic0")).unwrap();
        assert_eq!(
            ns.appl.addr,
            RedisAddr::Unix("/var/run/redis0/redis.sock".into())
        );
        let err = DbLayout::from_config_file(&cfg, Some("asic9")).unwrap_err();
        assert!(
            matches!(err, DbConfigError::NamespaceNotFound { .. }),
            "{err}"
        );
        let err = DbLayout::from_config_file(&dir.join("absent.json"), None).unwrap_err();
        assert!(
            matches!(err, DbConfigError::Read { .. }) && err.to_string().contains("absent.json")
        );
    }
}
