//! Start-up step 4, spawn the workers: join the netlink link group, wire the loop's channels and start
//! the supervised threads (netlink reader, Redis writer, store committer, admin-down, signals).

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tracing::info;

use crate::core::Work;
use crate::metrics::Metrics;
use crate::netlink::LinkSocket;
use crate::sonic::SonicDb;
use crate::store::StoreConfig;

use super::admin_down::AdminDown;
use super::commit_slot::CommitSlot;
use super::error::DaemonError;
use super::handoff::{self, Giver};
use super::inbox::{self, Inbox};
use super::input::Input;
use super::open_store::StoreStart;
use super::{committer, reader, redis_writer};
use crate::supervise::Supervisor;

/// The loop's ends of the workers.
pub struct Handles {
    pub sock: Arc<LinkSocket>,
    /// To the Redis writer, one batch at a time.
    pub work_tx: Giver<Work>,
    /// To the store committer.
    pub commits: Arc<CommitSlot>,
    pub admin_down: AdminDown,
}

/// The worker threads, joined at shutdown.
pub struct Threads {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    committer: JoinHandle<()>,
    _admin_down: JoinHandle<()>,
    /// Tells the loop of a worker's death; kept until the end.
    _sup: Supervisor,
}

impl Threads {
    /// Joins the workers; the committer only when it answered the final commit (a hung disk must not
    /// hold the exit).
    pub fn join(self, committer_answered: bool) {
        if committer_answered {
            let _ = self.committer.join();
        }
        let _ = self.writer.join();
        let _ = self.reader.join();
    }
}

/// Joins the netlink link group (before the loop requests the first dump) and starts every worker
/// under supervision: a worker's death ends the process with status 1 (see `src/supervise.rs`).
pub fn spawn(
    db: SonicDb,
    store: StoreStart,
    store_cfg: StoreConfig,
    metrics: &Arc<Metrics>,
    stop: &Arc<AtomicBool>,
    signals: mpsc::Receiver<()>,
) -> Result<(Inbox, Handles, Threads), DaemonError> {
    let sock = Arc::new(LinkSocket::open()?);
    info!(rcvbuf = sock.rcvbuf_bytes(), "netlink link group joined");

    let (inbox, tx, nl_tx) = inbox::inbox();
    let (work_tx, work_rx) = handoff::handoff::<Work>();
    let commits = Arc::new(CommitSlot::default());
    let death_tx = tx.clone();
    let sup = Supervisor::new(Arc::clone(stop), move |thread| {
        let _ = death_tx.send(Input::WorkerDied {
            thread: thread.to_string(),
        });
    });
    let reader = reader::netlink_reader(&sup, Arc::clone(&sock), nl_tx, Arc::clone(stop))?;
    metrics.redis_reconnects.add(db.reconnects()); // those of start-up
    let writer = redis_writer::redis_writer(&sup, db, work_rx, tx.clone(), Arc::clone(metrics))?;
    let committer = committer::spawn(
        &sup,
        store,
        store_cfg,
        Arc::clone(&commits),
        tx.clone(),
        Arc::clone(metrics),
    )?;
    let (admin_down, admin_down_thread) = AdminDown::start(&sup)?;
    let sig_tx = tx.clone();
    sup.spawn("signals", move || {
        if signals.recv().is_ok() {
            let _ = sig_tx.send(Input::Stop);
        }
    })?;
    drop(tx);
    let handles = Handles {
        sock,
        work_tx,
        commits,
        admin_down,
    };
    let threads = Threads {
        reader,
        writer,
        committer,
        _admin_down: admin_down_thread,
        _sup: sup,
    };
    Ok((inbox, handles, threads))
}
