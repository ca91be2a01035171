//! SONiC's old-netdev handling off the loop: an `Ethernet*` netdev that exists at a cold start is
//! set admin-down on a worker thread of its own. Each request waits up to 2 s for the kernel's
//! acknowledgement; the loop only queues it and never blocks. Results are logged.

use std::thread::JoinHandle;

use crossbeam_channel::{self as chan, Sender};
use tracing::{info, warn};

use crate::faults;
use crate::netlink;
use crate::supervise::Supervisor;

/// The loop's handle on the admin-down worker.
pub struct AdminDown {
    tx: Sender<(u32, String)>,
}

impl AdminDown {
    /// Starts the worker (supervised, thread `admin-down`).
    pub fn start(sup: &Supervisor) -> std::io::Result<(AdminDown, JoinHandle<()>)> {
        let (tx, rx) = chan::unbounded::<(u32, String)>();
        let handle = sup.spawn("admin-down", move || {
            for (ifindex, name) in rx {
                if let Some(d) = faults::admin_down_delay() {
                    std::thread::sleep(d); // fault injection: a slow kernel acknowledgement
                }
                match netlink::set_admin_down(ifindex) {
                    Ok(()) => info!(ifname = %name, ifindex, "old netdev set admin down"),
                    Err(e) => {
                        warn!(ifname = %name, ifindex, error = %e, "cannot set old netdev admin down")
                    }
                }
            }
        })?;
        Ok((AdminDown { tx }, handle))
    }

    /// Queues `ifindex` (named `name`) to be set admin-down; never blocks. The core asks once per
    /// old netdev of the initial dump, so the queue is bounded by the number of netdevs.
    pub fn request(&self, ifindex: u32, name: String) {
        if self.tx.send((ifindex, name)).is_err() {
            // The worker is gone; supervision is ending the process.
            warn!(ifindex, "admin-down worker gone: request dropped");
        }
    }
}
