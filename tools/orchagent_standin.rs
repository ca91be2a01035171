//! orchagent-standin: consumes APPL_DB `PORT_TABLE` the way SONiC's ConsumerStateTable does, so tests
//! and demos without orchagent see `PORT_TABLE:<port>` appear.
//!
//! It subscribes to `PORT_TABLE_CHANNEL@<appl id>`; on every message, at start, and every ~100 ms as a
//! safety net it runs one Lua script that pops `PORT_TABLE_KEY_SET` and, per key: deletes
//! `PORT_TABLE:<key>` if the key was in `PORT_TABLE_DEL_SET` (removing it from there), merges the
//! staged `_PORT_TABLE:<key>` fields into `PORT_TABLE:<key>`, and deletes the staging hash.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portsyncd::sonic::conn::open_connection;
use portsyncd::sonic::{DbEndpoint, DbLayout, ProducerStateTable};
use redis::Script;

/// KEYS: key set, delete set. ARGV: table prefix (`PORT_TABLE:`), staging prefix (`_`), batch size.
/// Returns, per popped key: {key, 1 if a delete was consumed else 0, flat field/value list}.
const POPS_LUA: &str = r"
local popped = redis.call('SPOP', KEYS[1], ARGV[3])
local out = {}
for _, key in ipairs(popped) do
    local target = ARGV[1] .. key
    local deleted = redis.call('SREM', KEYS[2], key)
    if deleted == 1 then
        redis.call('DEL', target)
    end
    local staged = ARGV[2] .. target
    local fv = redis.call('HGETALL', staged)
    for i = 1, #fv, 2 do
        redis.call('HSET', target, fv[i], fv[i + 1])
    end
    redis.call('DEL', staged)
    table.insert(out, {key, deleted, fv})
end
return out
";

/// A failure and what was being done when it happened, printed as `doing: cause: cause's source...`
/// (as anyhow's `{:#}`). Not anyhow: the stand-in is built by every integration test, without the
/// `tools` feature that brings the tools' crates.
struct Error {
    doing: Option<&'static str>,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

type Result<T> = std::result::Result<T, Error>;

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Self {
        Error {
            doing: None,
            cause: Box::new(e),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(doing) = self.doing {
            write!(f, "{doing}: ")?;
        }
        write!(f, "{}", self.cause)?;
        let mut source = self.cause.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// `main`'s `Err` is printed with `Debug`: the same one line.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// anyhow's `.context(...)`, for this tool's few calls.
trait Context<T> {
    fn context(self, doing: &'static str) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: &'static str) -> Result<T> {
        self.map_err(|e| Error {
            doing: Some(doing),
            cause: Box::new(e),
        })
    }
}

const TABLE: &str = "PORT_TABLE";
const POP_BATCH: usize = 128;
const SAFETY_POLL: Duration = Duration::from_millis(100);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser, Debug)]
#[command(
    name = "orchagent-standin",
    about = "Consume APPL_DB PORT_TABLE like orchagent's ConsumerStateTable"
)]
struct Args {
    /// One Redis for every DB with SONiC default ids: unix:///path/redis.sock or redis://host:port.
    #[arg(long, conflicts_with = "db_config")]
    redis_url: Option<String>,
    /// SONiC database_config.json.
    #[arg(long, default_value = "/var/run/redis/sonic-db/database_config.json")]
    db_config: PathBuf,
    /// Multi-ASIC namespace (resolved through database_global.json next to --db-config).
    #[arg(long)]
    namespace: Option<String>,
    /// Drain what is pending and exit.
    #[arg(long)]
    once: bool,
}

/// One popped entry: key, deleted flag, field/value pairs. Bytes, as orchagent's consumer takes them
/// (swss-common strings): a value that is not UTF-8 is consumed like any other, and only its log line
/// escapes it.
type Popped = (Vec<u8>, i64, Vec<Vec<u8>>);

struct Consumer {
    script: Script,
    producer_names: ProducerStateTable,
    table_prefix: String,
}

impl Consumer {
    fn new(appl: &DbEndpoint) -> Self {
        Consumer {
            script: Script::new(POPS_LUA),
            producer_names: ProducerStateTable::new(TABLE, &appl.separator, appl.id),
            table_prefix: format!("{TABLE}{}", appl.separator),
        }
    }

    /// Pops until the key set is empty; returns how many keys were consumed.
    fn drain(&self, con: &mut redis::Connection) -> Result<usize> {
        let mut total = 0;
        loop {
            let popped: Vec<Popped> = self
                .script
                .key(self.producer_names.key_set())
                .key(self.producer_names.del_set())
                .arg(&self.table_prefix)
                .arg("_")
                .arg(POP_BATCH)
                .invoke(con)
                .context("running the consumer pops script")?;
            for (key, deleted, fv) in &popped {
                let key = key.escape_ascii().to_string();
                let fields: Vec<String> = fv
                    .chunks(2)
                    .map(|c| {
                        let value = c.get(1).map_or(&[][..], Vec::as_slice);
                        format!("{}={}", c[0].escape_ascii(), value.escape_ascii())
                    })
                    .collect();
                if *deleted == 1 {
                    tracing::info!(key = %key, "consumed DEL");
                }
                if !fields.is_empty() {
                    tracing::info!(key = %key, fields = %fields.join(" "), "consumed SET");
                }
            }
            total += popped.len();
            if popped.len() < POP_BATCH {
                return Ok(total);
            }
        }
    }
}

fn layout(args: &Args) -> Result<DbLayout> {
    Ok(match &args.redis_url {
        Some(url) => DbLayout::from_redis_url(url)?,
        None => DbLayout::from_config_file(&args.db_config, args.namespace.as_deref())?,
    })
}

/// Subscribes and consumes until `stop` is set. Returns Err on a Redis failure (caller reconnects).
fn serve(appl: &DbEndpoint, consumer: &Consumer, stop: &AtomicBool) -> Result<()> {
    let mut pops_con = open_connection(appl, IO_TIMEOUT).context("connecting to APPL_DB")?;
    let mut sub_con = open_connection(appl, IO_TIMEOUT).context("connecting the subscriber")?;
    let channel = consumer.producer_names.channel();
    let mut pubsub = sub_con.as_pubsub();
    pubsub.subscribe(&channel).context("SUBSCRIBE")?;
    pubsub.set_read_timeout(Some(SAFETY_POLL))?;
    tracing::info!(%channel, "subscribed");
    // Anything staged before we subscribed.
    consumer.drain(&mut pops_con)?;
    while !stop.load(Ordering::Relaxed) {
        match pubsub.get_message() {
            Ok(_) => {}
            Err(e) if e.is_timeout() => {}
            // A signal interrupted the read (EINTR): the loop condition sees the stop request.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => return Err(e).context("reading the channel"),
        }
        consumer.drain(&mut pops_con)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let layout = layout(&args)?;
    let appl = layout.appl;
    let consumer = Consumer::new(&appl);

    if args.once {
        let mut con = open_connection(&appl, IO_TIMEOUT).context("connecting to APPL_DB")?;
        let n = consumer.drain(&mut con)?;
        tracing::info!(consumed = n, "drained");
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = serve(&appl, &consumer, &stop) {
            tracing::warn!(error = %e, "consumer failed; reconnecting");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    tracing::info!("stopping");
    Ok(())
}
