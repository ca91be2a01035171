//! `portsyncd`: thin — options → tracing → run → exit status.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portsyncd::config::Config;

/// glibc's mmap threshold, fixed (bytes). By default glibc raises it every time a mapped block is freed
/// (up to 32 MiB), after which sled's 512 KiB log buffers — one per flush — come from the heap arenas and
/// fragment them. Fixing it keeps such blocks in their own mappings, returned on free: the 2048-port
/// storm's peak RSS drops by about 2 MiB at no measurable CPU cost.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Tune glibc's allocator before any thread starts (see [`MMAP_THRESHOLD`]).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt(3) only sets a tuning parameter of glibc's allocator; it takes two plain
        // integers, touches no memory of ours, and runs here before any other thread exists.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok != 1 {
            tracing::warn!(
                threshold = MMAP_THRESHOLD,
                "mallopt(M_MMAP_THRESHOLD) refused"
            );
        }
    }
}

/// Files and directories the daemon creates (sled's included) are private to its user: 0600 / 0700.
fn private_umask() {
    // SAFETY: umask(2) only sets the process's file-creation mask and cannot fail; it runs before
    // any other thread exists. (std has no safe wrapper.)
    unsafe {
        libc::umask(0o077);
    }
}

fn main() -> ExitCode {
    // Invalid options or environment values: clap prints the option and value, exit status 2.
    let cfg = Config::parse_args().unwrap_or_else(|e| e.exit());
    portsyncd::logging::init(&cfg.log_level, cfg.log_level_explicit, cfg.log_output);
    portsyncd::daemon::install_panic_hook();
    tune_allocator();
    private_umask();

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
    // A panic of the loop itself (this thread) is logged by the hook and exits with status 1 too.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        portsyncd::daemon::run(cfg, stop, sig_rx)
    }));
    let Ok(result) = run else {
        return ExitCode::from(1);
    };
    match result {
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
