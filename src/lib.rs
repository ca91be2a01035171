//! portsyncd: mirrors the kernel's network-port state (netlink) into SONiC's Redis databases, and
//! remembers what it published in a crash-safe store so a restart never churns and never lies.

pub mod core;
pub mod store;
