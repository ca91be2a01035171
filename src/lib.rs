//! portsyncd: mirrors the kernel's network-port state (netlink) into SONiC's Redis databases, and
//! remembers what it published in a crash-safe store so a restart never churns and never lies.

// `unsafe` only where a syscall has no safe wrapper, each allowed at that function with a SAFETY
// comment (today: the SO_MEMINFO getsockopt in netlink/sockopt.rs).
#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

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

#[cfg(test)]
mod module_graph_tests;
