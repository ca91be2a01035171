//! The daemon's fatal errors and the exit status each one means (`docs/configuration.md`, "Exit
//! status": 0 after a stop, 2 for an option's value the system refuses, 1 for anything else).

use crate::netlink;
use crate::sonic::DbError;
use crate::store::StoreError;

/// Fatal errors of [`run`](super::run); [`exit_code`](Self::exit_code) is the process's status.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("netlink: {0}")]
    Netlink(#[from] netlink::NetlinkError),
    #[error("redis: {0}")]
    Redis(#[from] DbError),
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    /// A worker thread panicked or ended unexpectedly (exit status 1: the supervisor restarts us).
    #[error("worker thread `{thread}` died")]
    WorkerDied { thread: String },
    /// An option's value turned out wrong once read against the system (exit status 2).
    #[error("invalid option value: {0}")]
    InvalidOption(String),
}

impl DaemonError {
    /// The exit status this error ends the process with: 2 for an invalid option value, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::InvalidOption(_) => 2,
            DaemonError::Store(_)
            | DaemonError::Netlink(_)
            | DaemonError::Redis(_)
            | DaemonError::Thread(_)
            | DaemonError::WorkerDied { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_option_exits_2_and_everything_else_1() {
        assert_eq!(
            DaemonError::InvalidOption("--namespace x".into()).exit_code(),
            2
        );
        let thread = std::io::Error::other("no thread");
        assert_eq!(DaemonError::Thread(thread).exit_code(), 1);
        let died = DaemonError::WorkerDied {
            thread: "redis".into(),
        };
        assert_eq!(died.exit_code(), 1);
    }
}
