//! The netlink edge: a socket that receives link notifications and dumps, and a pure parser that
//! turns datagrams into [`NetlinkItem`]s carrying [`crate::core::LinkEvent`]s.
//!
//! - [`parser`]: no I/O; decodes every message of one datagram, never panics.
//! - [`socket`]: `NETLINK_ROUTE` socket joined to `RTNLGRP_LINK`, dump requests, overrun detection,
//!   and [`set_admin_down`] for SONiC's old-netdev handling at cold start.

pub mod parser;
pub mod socket;
mod sockopt;

pub use parser::{is_escaped_name, parse_datagram, NetlinkItem, NOT_UTF8_MARK};
pub use socket::{set_admin_down, LinkSocket, NetlinkError, RecvOutcome};
