//! portsyncd: mirrors the kernel's network-port state (netlink) into SONiC's Redis databases, and
//! remembers what it published in a crash-safe store so a restart never churns and never lies.

pub mod backoff;
pub mod config;
pub mod core;
pub mod daemon;
pub(crate) mod faults;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod sonic;
pub mod store;
mod supervise;
pub mod unwind;
