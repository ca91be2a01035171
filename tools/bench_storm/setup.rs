//! Preparing the run: the storm generator, `ip -batch`, the built-in ConsumerStateTable stand-in, Redis
//! connections and a SONiC database_config.json.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::guards::sh;
use crate::observe::View;

/// xorshift64*: a small deterministic generator, good enough to pick ports and changes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// M `link set` commands, each a real change of the simulated kernel state (admin toggle or a new MTU).
pub fn storm_batch(ports: &[String], kernel: &[View], m: usize, seed: u64) -> String {
    const MTUS: [u32; 4] = [1500, 9000, 9100, 9216];
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut sim: Vec<(bool, u32)> = kernel
        .iter()
        .map(|v| match v {
            View::Present { admin_up, mtu, .. } => (*admin_up, *mtu),
            View::Absent => (false, 1500),
        })
        .collect();
    let mut out = String::with_capacity(m * 32);
    for _ in 0..m {
        let i = rng.below(ports.len());
        if rng.below(100) < 85 {
            sim[i].0 = !sim[i].0;
            let _ = writeln!(
                out,
                "link set dev {} {}",
                ports[i],
                if sim[i].0 { "up" } else { "down" }
            );
        } else {
            let choices: Vec<u32> = MTUS.iter().copied().filter(|&x| x != sim[i].1).collect();
            sim[i].1 = choices[rng.below(choices.len())];
            let _ = writeln!(out, "link set dev {} mtu {}", ports[i], sim[i].1);
        }
    }
    out
}

pub fn ip_batch(ns: &str, file: &Path) -> Result<()> {
    sh(Command::new("ip").args(["-n", ns, "-batch"]).arg(file))
}

/// Starts `ip -batch` without waiting, so STATE_DB can be polled while the kernel changes.
pub fn spawn_ip_batch(ns: &str, file: &Path) -> Result<Child> {
    Command::new("ip")
        .args(["-n", ns, "-batch"])
        .arg(file)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting ip -batch")
}

pub const CONSUMER_LUA: &str = r"
local ks = redis.call('SPOP', KEYS[1], ARGV[1])
for _, k in ipairs(ks) do
  local dst = ARGV[2] .. ':' .. k
  if redis.call('SREM', KEYS[2], k) == 1 then redis.call('DEL', dst) end
  local fv = redis.call('HGETALL', '_' .. dst)
  if #fv > 0 then redis.call('HSET', dst, unpack(fv)) end
  redis.call('DEL', '_' .. dst)
end
return #ks
";

/// The built-in consumer's thread; stopped and joined on drop (before redis-server goes away).
pub struct Consumer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}
impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The built-in ConsumerStateTable stand-in: one atomic Lua pop-and-move every millisecond.
pub fn builtin_consumer(url: String) -> Consumer {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = thread::spawn(move || {
        let stop = flag;
        let run = || -> Result<()> {
            let mut con = redis::Client::open(url.as_str())?.get_connection()?;
            redis::cmd("SELECT").arg(0).query::<()>(&mut con)?;
            let script = redis::Script::new(CONSUMER_LUA);
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = script
                    .key("PORT_TABLE_KEY_SET")
                    .key("PORT_TABLE_DEL_SET")
                    .arg(1024)
                    .arg("PORT_TABLE")
                    .invoke(&mut con)?;
                if n == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            if !stop.load(Ordering::Relaxed) {
                eprintln!("bench-storm: built-in consumer stopped: {e:#}");
            }
        }
    });
    Consumer {
        stop,
        thread: Some(thread),
    }
}

pub fn connect(url: &str, db: i64) -> Result<redis::Connection> {
    let mut con = redis::Client::open(url)?
        .get_connection()
        .context("connecting to redis")?;
    redis::cmd("SELECT").arg(db).query::<()>(&mut con)?;
    Ok(con)
}

/// SONiC's DB layout with every database on one redis instance at `sock`.
pub fn database_config(sock: &Path) -> String {
    let dbs = [
        ("APPL_DB", 0, ":"),
        ("ASIC_DB", 1, ":"),
        ("COUNTERS_DB", 2, ":"),
        ("LOGLEVEL_DB", 3, ":"),
        ("CONFIG_DB", 4, "|"),
        ("FLEX_COUNTER_DB", 5, "|"),
        ("STATE_DB", 6, "|"),
    ];
    let databases: serde_json::Map<String, serde_json::Value> = dbs
        .iter()
        .map(|(name, id, sep)| {
            (
                name.to_string(),
                serde_json::json!({"id": id, "separator": sep, "instance": "redis"}),
            )
        })
        .collect();
    serde_json::json!({
        "INSTANCES": {"redis": {"hostname": "127.0.0.1", "port": 6379, "unix_socket_path": sock}},
        "DATABASES": databases,
        "VERSION": "1.0"
    })
    .to_string()
}
