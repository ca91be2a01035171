//! Step 6, shut down, by one of two paths: after a stop request, the Redis batch in flight is
//! finished and the state committed one last time before the workers are joined; after a worker's
//! death, a quick best-effort final commit and exit status 1 (the exit watchdog of `src/supervise.rs`
//! ends the process within 1 s of the death regardless).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel as chan;
use tracing::{error, info};

use super::error::DaemonError;
use super::event_loop::Loop;
use super::inbox::Inbox;
use super::input::Input;
use super::workers::Threads;

/// Longest wait for the final commit after a worker's death (within `supervise::EXIT_WATCHDOG`).
const DEATH_COMMIT_GRACE: Duration = Duration::from_millis(300);

/// Longest wait for the Redis batch in flight at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Ends the daemon once the loop has returned: Ok after a stop, the worker's death otherwise.
pub fn shut_down(
    mut lp: Loop,
    mut inbox: Inbox,
    threads: Threads,
    stop: &AtomicBool,
) -> Result<(), DaemonError> {
    // The reader may be blocked on the full netlink queue; stop it first.
    stop.store(true, Ordering::SeqCst);
    inbox.close_netlink();
    if let Some(thread) = lp.died.take() {
        after_death(&mut lp, &thread);
        drop(lp);
        drop(threads);
        return Err(DaemonError::WorkerDied { thread });
    }
    finish_in_flight(&mut lp, &inbox);
    let answered = final_commit(&mut lp);
    drop(lp);
    threads.join(answered);
    info!("portsyncd stopped");
    Ok(())
}

/// A worker died: no wait for the batch in flight; a final commit if the store thread lives and is
/// quick.
fn after_death(lp: &mut Loop, thread: &str) {
    if thread == "store" {
        return;
    }
    let (reply_tx, reply_rx) = chan::bounded(1);
    let last = lp.hand_over();
    lp.commits.finish(last, reply_tx);
    match reply_rx.recv_timeout(DEATH_COMMIT_GRACE) {
        Ok(Ok(generation)) => info!(generation, "final state committed"),
        Ok(Err(e)) => error!(error = %e, "final state commit failed"),
        Err(_) => error!("final state commit did not finish in time"),
    }
}

/// Waits (up to [`SHUTDOWN_GRACE`]) for the Redis batch in flight and applies its result.
fn finish_in_flight(lp: &mut Loop, inbox: &Inbox) {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while lp.core.work_in_flight() {
        let left = deadline.saturating_duration_since(Instant::now());
        match inbox.recv_control(left) {
            Ok(Input::WorkDone {
                result,
                reconnected,
            }) => lp.on_work_done(result, reconnected, Instant::now()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// The final commit; true when the committer answered (then it can be joined: a hung disk must not
/// hold the exit).
fn final_commit(lp: &mut Loop) -> bool {
    let (reply_tx, reply_rx) = chan::bounded(1);
    let final_delta = lp.hand_over();
    let ports = lp.core.published_ports().count();
    lp.commits.finish(final_delta, reply_tx);
    match reply_rx.recv_timeout(SHUTDOWN_GRACE) {
        Ok(Ok(generation)) => {
            info!(generation, ports, "final state committed");
            true
        }
        Ok(Err(e)) => {
            error!(error = %e, "final state commit failed");
            true
        }
        Err(_) => {
            error!("final state commit did not finish in time (hung disk?); exiting without it");
            false
        }
    }
}
