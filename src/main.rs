//! `portsyncd`: thin — options → tracing → run → exit status.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portsyncd::config::Config;

fn main() -> ExitCode {
    // Invalid options or environment values: clap prints the option and value, exit status 2.
    let cfg = Config::try_parse().unwrap_or_else(|e| e.exit());
    portsyncd::logging::init(&cfg.log_level);

    let stop = Arc::new(AtomicBool::new(false));
    let (sig_tx, sig_rx) = mpsc::channel::<()>();
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let flag = Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("sigwait".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "signal received");
                flag.store(true, Ordering::Relaxed);
                let _ = sig_tx.send(());
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the signal thread");
        return ExitCode::from(1);
    }

    tracing::info!(version = env!("CARGO_PKG_VERSION"), "portsyncd starting");
    match portsyncd::daemon::run(cfg, stop, sig_rx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ portsyncd::daemon::DaemonError::InvalidOption(_)) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("portsyncd: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            ExitCode::from(1)
        }
    }
}
