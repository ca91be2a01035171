//! The daemon: start-up as a sequence of named steps, the loop, and shutdown ([`run`]).
//!
//! ```text
//! netlink thread ──Items/Overrun── (bounded) ──┐
//! redis thread ────WorkDone───────┐            ├──▶ loop (Core) ──Work──▶ redis thread (write Redis first)
//! store thread ────Committed──────┼─ control ──┘                ──PortDelta─▶ store thread (then commit)
//! signal thread ───Stop───────────┤
//! supervision ─────WorkerDied─────┘
//! ```
//!
//! Every thread is supervised (`src/supervise.rs`): a worker's death exits the process with status 1;
//! the auxiliary threads (metrics endpoint, LOGGER follower) are restarted with backoff instead.
//!
//! The files, in the order [`run`] uses them:
//!
//! | step | file |
//! |------|------|
//! | 1. open the store | `open_store.rs` |
//! | 2. connect to Redis | `connect.rs` |
//! | 3. restore (warm or cold, baseline) | `startup.rs` (`saved_names.rs`) |
//! | 4. spawn the workers | `workers.rs`: `reader.rs` (`loss.rs`, `link_source.rs`), `redis_writer.rs` (`redis_work.rs`), `committer.rs`, `admin_down.rs` |
//! | 5. run the loop | `event_loop.rs` (`inbox.rs`, `input.rs`, `pacer.rs`, `commit_slot.rs`, `saved.rs`, `reconcile.rs`) |
//! | 6. shut down | `shutdown.rs` |
//!
//! Shared by the steps: `error.rs` (fatal errors, exit status) and `handoff.rs` (the loop-to-writer
//! queue). Thread supervision (`src/supervise.rs`) and the test-only fault hooks (`src/faults.rs`) are
//! the crate's: the metrics endpoint and the LOGGER follower use them too.

mod admin_down;
mod commit_slot;
mod committer;
mod connect;
mod error;
mod event_loop;
mod handoff;
mod inbox;
mod input;
mod link_source;
mod loss;
mod open_store;
pub mod pacer; // public for tests/simulation.rs (the deterministic simulation drives it)
pub mod reader; // public for tests/core_overrun_replay.rs (the real reader against a model socket)
mod reconcile;
mod redis_work;
mod redis_writer;
pub mod saved; // public for tests/simulation.rs
pub mod saved_names; // public for tests/simulation.rs
mod shutdown;
mod startup;
mod workers;

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tracing::{error, info};

use crate::config::Config;
use crate::metrics::{Metrics, MetricsServer};

pub use crate::core::BaselineSource;
pub use crate::supervise::install_panic_hook;
pub use error::DaemonError;
pub use input::Input;
pub use open_store::store_config;

/// Runs the daemon until `stop` is set (SIGTERM/SIGINT). Returns after the final commit; a stop
/// during start-up returns at once.
pub fn run(
    cfg: Config,
    stop: Arc<AtomicBool>,
    signals: mpsc::Receiver<()>,
) -> Result<(), DaemonError> {
    let t_start = Instant::now();
    // 1. The store (local, before anything else): the saved state and the lifetime counters.
    let opened = open_store::open(&cfg)?;
    let metrics = Arc::clone(&opened.metrics);
    let _metrics_server = serve_metrics(&cfg, &metrics);
    // 2. Redis.
    let Some(mut db) = connect::connect(&cfg, &stop, &metrics)? else {
        return Ok(());
    };
    // 3. Warm or cold, APPL_DB, the baseline.
    let Some(startup) = startup::restore(&mut db, &opened.recovered, &cfg, &stop, &metrics)? else {
        return Ok(());
    };
    // 4. Netlink and the worker threads.
    let (mut inbox, handles, threads) =
        workers::spawn(db, opened.store, opened.store_cfg, &metrics, &stop, signals)?;
    // 5. The loop.
    let mut lp = event_loop::Loop::new(startup, handles, &cfg, &metrics, t_start);
    lp.run(&mut inbox);
    // 6. Shutdown.
    shutdown::shut_down(lp, inbox, threads, &stop)
}

/// The metrics endpoint, when enabled; it serves until dropped. One that cannot listen is logged and
/// done without.
fn serve_metrics(cfg: &Config, metrics: &Arc<Metrics>) -> Option<MetricsServer> {
    if !cfg.metrics_enabled {
        return None;
    }
    match MetricsServer::start(cfg.metrics_listen, Arc::clone(metrics)) {
        Ok(s) => {
            info!(addr = %s.addr, "metrics at GET /metrics");
            Some(s)
        }
        Err(e) => {
            error!(error = %e, "metrics endpoint not available");
            None
        }
    }
}
