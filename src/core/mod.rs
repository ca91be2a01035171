//! The sans-IO heart of portsyncd: the port table, the warm-restart state machine and the reconcile.
//! Nothing in here touches a socket, Redis or sled; every behaviour is a plain unit test.

pub mod link;

pub use link::{Link, LinkEvent, LinkOp};
