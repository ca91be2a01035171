//! SONiC's Redis databases: the layout (`database_config.json`), resilient connections, the
//! ProducerStateTable protocol for APPL_DB, and the CONFIG_DB / STATE_DB / warm-restart tables
//! portsyncd reads and writes. `docs/configuration.md` and `docs/deployment.md` describe what they do.

pub mod conn;
pub mod dbconfig;
pub mod error;
pub mod logger;
pub mod producer;
pub mod redis_url;
pub mod reply;
pub mod tables;
pub mod warm;

pub use crate::backoff::Backoff;
pub use conn::{Conn, ConnOptions};
pub use dbconfig::{DbEndpoint, DbLayout, RedisAddr};
pub use error::{DbConfigError, DbError, EntryErrorReason, ErrorClass, ENTRY_DBS};
pub use producer::ProducerStateTable;
pub use redis_url::parse_redis_url;
pub use tables::{PortConfig, SonicDb, StateBatch, StateWrite};
