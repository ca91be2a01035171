//! `portsyncd`: thin — options → tracing → run → exit status.

// `unsafe` only in the two libc calls below (mallopt, umask), each allowed where it is made.
#![deny(unsafe_code)]
#![warn(clippy::too_many_lines)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portsyncd::config::Config;

#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` are exclusive: pick one global allocator");

/// Optional global allocator (feature `mimalloc`); glibc's otherwise.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Optional global allocator (feature `jemalloc`); glibc's otherwise.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// glibc's allocator tuning (not with another global allocator).
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(any(feature = "mimalloc", feature = "jemalloc"))
))]
mod glibc_malloc {
    /// glibc's mmap threshold, fixed (bytes). By default glibc raises it every time a mapped block is
    /// freed (up to 32 MiB), after which sled's 512 KiB log buffers — one per flush — come from the heap
    /// arenas and fragment them. Fixing it keeps such blocks in their own mappings, returned on free:
    /// the 2048-port storm's peak RSS drops by about 2 MiB at no measurable CPU cost.
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

    /// glibc's malloc arenas: one. By default glibc gives each thread that allocates an arena of its
    /// own (up to 8 per core; 15 besides the main heap after a 2048-port run), each keeping its own
    /// freed memory; the daemon's few threads allocate little and rarely at once, so one shared arena
    /// costs no measurable CPU and peaks 0.7 MiB lower at 512 ports and 2.4 MiB at 2048 (medians;
    /// docs/performance.md, "Memory").
    /// `MALLOC_ARENA_MAX` in the environment still wins (glibc reads it; we then leave it alone).
    const ARENA_MAX: libc::c_int = 1;

    /// Sets [`MMAP_THRESHOLD`] and [`ARENA_MAX`]; must run before any other thread exists.
    #[allow(unsafe_code)] // mallopt(3): see the SAFETY comment at the call
    pub fn tune() {
        let mut settings = vec![(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD")];
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            settings.push((libc::M_ARENA_MAX, ARENA_MAX, "M_ARENA_MAX"));
        }
        for (param, value, name) in settings {
            // SAFETY: mallopt(3) only sets a tuning parameter of glibc's allocator; it takes two plain
            // integers, touches no memory of ours, and runs before any other thread exists. std has
            // no safe wrapper: this is the only way to set these from the program.
            let ok = unsafe { libc::mallopt(param, value) };
            if ok != 1 {
                tracing::warn!(param = name, value, "mallopt refused");
            }
        }
    }
}

/// Tune glibc's allocator before any thread starts (see `glibc_malloc`).
fn tune_allocator() {
    #[cfg(all(
        target_os = "linux",
        target_env = "gnu",
        not(any(feature = "mimalloc", feature = "jemalloc"))
    ))]
    glibc_malloc::tune();
}

/// Files and directories the daemon creates (sled's included) are private to its user: 0600 / 0700.
#[allow(unsafe_code)] // umask(2): see the SAFETY comment at the call
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
    // Not supervised itself, but watched: should it die, `sig_rx` disconnects, the supervised
    // "signals" thread of `daemon::run` ends, and an ended supervised thread exits with status 1.
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
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            if matches!(e, portsyncd::daemon::DaemonError::InvalidOption(_)) {
                // As clap does for the options it checks itself: the operator reads it on stderr.
                eprintln!("portsyncd: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
