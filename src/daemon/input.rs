//! What wakes the daemon's loop: the one message type of its two inbound channels (netlink bursts on
//! the bounded one, everything else on the control one; see `inbox.rs`).

use std::time::Duration;

use crate::core::WorkResult;
use crate::netlink::NetlinkItem;

/// Everything that wakes the loop.
#[derive(Debug)]
pub enum Input {
    Netlink(Vec<NetlinkItem>),
    Overrun,
    /// A batch ended; `reconnected`: Redis was reconnected since the previous batch (it may have
    /// restarted or been flushed, so what it holds is no longer known).
    WorkDone {
        result: WorkResult,
        reconnected: bool,
    },
    /// A commit ended; `took` is its wall-clock time (it paces the next one).
    Committed {
        result: Result<u64, String>,
        took: Duration,
    },
    Stop,
    /// A supervised thread panicked or ended unexpectedly: the daemon exits with status 1.
    WorkerDied {
        thread: String,
    },
}
