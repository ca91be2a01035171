//! The sans-IO heart of portsyncd: the port table, the warm-restart state machine and the reconcile.
//! Nothing in here touches a socket, Redis or sled; every behaviour is a plain unit test.

pub mod baseline;
pub mod engine;
pub mod link;
pub mod port;
pub mod sync;

#[cfg(test)]
mod engine_tests;

pub use baseline::{Baseline, BaselineInputs, BaselineSource};
pub use engine::{
    Core, CoreConfig, CoreStats, KernelPort, Notice, ReadBack, StartMode, StateRow, Work,
    WorkResult,
};
pub use link::{Link, LinkEvent, LinkOp};
pub use port::{PortStatus, RawFields};
pub use sync::{SyncEnd, SyncOutcome};
