//! Supervision: a worker thread that panics or ends while the daemon is not stopping takes the whole
//! process down with exit status 1, so supervisord (SONiC's critical-process monitor) restarts swss
//! instead of leaving a portsyncd that is alive and doing nothing.
//!
//! Every worker is started by [`Supervisor::spawn`]. Its guard runs when the thread ends, by return
//! or by unwinding. An end while `stop` is not set is a death: the guard logs the thread's name,
//! tells the loop (which makes `daemon::run` return an error after a best-effort final commit) and arms a
//! watchdog that calls `std::process::exit(1)` after [`EXIT_WATCHDOG`], whether or not the loop
//! listens (it may be the thing that is stuck). [`install_panic_hook`] logs every panic through
//! `tracing`, with the thread's name, where it happened and a backtrace when `RUST_BACKTRACE` asks.
//!
//! Auxiliary threads, whose loss does not stop ports from being published (the metrics endpoint,
//! the CONFIG_DB `LOGGER|portsyncd` follower), are not worth restarting the whole daemon: they run
//! under [`spawn_restarting`], which logs a death and runs the thread's body again after a backoff
//! ([`RESTART_MIN`] doubling up to [`RESTART_MAX`]) until their stop flag is set.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::backoff::Backoff;

/// Longest time between a worker's death and the process exit (the bound is 1 s).
pub const EXIT_WATCHDOG: Duration = Duration::from_millis(500);

/// Starts worker threads whose unexpected end ends the process.
#[derive(Clone)]
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    on_death: Arc<dyn Fn(&str) + Send + Sync>,
    /// What the watchdog does (the process exit; a probe in unit tests).
    exit: Arc<dyn Fn() + Send + Sync>,
    armed: Arc<Once>,
}

impl Supervisor {
    /// Threads ending while `stop` is set are expected; any other end calls `on_death` with the
    /// thread's name (best effort: it must not block) and arms the exit watchdog.
    pub fn new(stop: Arc<AtomicBool>, on_death: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self::with_exit(stop, on_death, || std::process::exit(1))
    }

    /// As [`new`](Self::new), with `exit` instead of `std::process::exit(1)` (unit tests).
    pub fn with_exit(
        stop: Arc<AtomicBool>,
        on_death: impl Fn(&str) + Send + Sync + 'static,
        exit: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        Supervisor {
            stop,
            on_death: Arc::new(on_death),
            exit: Arc::new(exit),
            armed: Arc::new(Once::new()),
        }
    }

    /// Spawns `f` on a thread named `name` under supervision.
    pub fn spawn(
        &self,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let sup = self.clone();
        let name_owned = name.to_string();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                CURRENT.with(|c| {
                    *c.borrow_mut() = Some(Current {
                        name: name_owned,
                        sup,
                        reported: false,
                    })
                });
                let _guard = Guard;
                f();
            })
    }

    /// Logs the death of `thread`, tells the loop and arms the exit watchdog.
    fn report_death(&self, thread: &str, how: &str) {
        error!(
            thread = %thread,
            how,
            "worker thread died: portsyncd exits with status 1 so that it is restarted"
        );
        (self.on_death)(thread);
        self.arm_exit_watchdog(thread);
    }
}

/// The supervision of the current thread (set by [`Supervisor::spawn`]).
struct Current {
    name: String,
    sup: Supervisor,
    /// The panic hook already reported this thread's death.
    reported: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Reports the current supervised thread's death once (from the panic hook, before the slow part of
/// a panic such as resolving a backtrace, or from the guard).
fn report_current(how: &str) {
    let _ = CURRENT.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        let Some(cur) = c.as_mut() else {
            return; // not a supervised thread
        };
        if cur.reported || (how == "exited" && cur.sup.stop.load(Ordering::SeqCst)) {
            return; // already reported, or shutting down: every worker ends
        }
        cur.reported = true;
        cur.sup.report_death(&cur.name, how);
    });
}

/// Runs when a supervised thread ends, normally or by unwinding.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        report_current(if std::thread::panicking() {
            "panicked"
        } else {
            "exited"
        });
    }
}

impl Supervisor {
    /// Exits the process with status 1 after [`EXIT_WATCHDOG`] (once, whoever asks first).
    fn arm_exit_watchdog(&self, thread: &str) {
        self.armed.call_once(|| {
            let thread = thread.to_string();
            let exit = Arc::clone(&self.exit);
            let spawned = std::thread::Builder::new()
                .name("exit-watchdog".into())
                .spawn(move || {
                    std::thread::sleep(EXIT_WATCHDOG);
                    error!(thread = %thread, "orderly exit after a worker's death took too long: exiting now");
                    exit();
                });
            if spawned.is_err() {
                // No thread for the watchdog: exit at once rather than risk living on.
                (self.exit)();
            }
        });
    }
}

/// First wait before an auxiliary thread's body runs again after its death.
pub const RESTART_MIN: Duration = Duration::from_millis(100);
/// Longest wait between restarts of an auxiliary thread that keeps dying.
pub const RESTART_MAX: Duration = Duration::from_secs(30);
/// A body that ran this long before dying starts its backoff afresh.
const RESTART_HEALTHY: Duration = Duration::from_secs(60);

/// Spawns `body` on a thread named `name` and runs it again whenever it panics or returns while
/// `stop` is not set, after a backoff; each death is logged with the thread's name. The body must be
/// able to run again after a panic (its state is what it captured, possibly half-updated).
pub fn spawn_restarting(
    name: &str,
    stop: Arc<AtomicBool>,
    mut body: impl FnMut() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let thread = name.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut backoff = Backoff::new(RESTART_MIN, RESTART_MAX);
            let mut restarts: u64 = 0;
            loop {
                let started = Instant::now();
                // The panic hook has logged the panic (thread, place, message) by the time this returns.
                let how = match std::panic::catch_unwind(AssertUnwindSafe(&mut body)) {
                    Ok(()) => "exited",
                    Err(_) => "panicked",
                };
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if started.elapsed() >= RESTART_HEALTHY {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                restarts = restarts.saturating_add(1);
                error!(thread = %thread, how, restarts, retry_in = ?delay, "auxiliary thread died: restarting it; ports keep being published");
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20).min(delay));
                }
                info!(thread = %thread, restarts, "auxiliary thread restarted");
            }
        })
}

/// Logs every panic through `tracing` (thread, location, message; a backtrace if `RUST_BACKTRACE`
/// enables it) instead of only printing it to stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let current = std::thread::current();
        let thread = current.name().unwrap_or("<unnamed>");
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string panic payload>");
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        if crate::unwind::expected() {
            // Caught by the caller (a storage-engine panic the store turns into an error): not a
            // death of the thread.
            error!(thread = %thread, %location, message, "thread panicked; caught and handled as an error");
            return;
        }
        error!(thread = %thread, %location, message, "thread panicked");
        // The exit is under way before a backtrace is resolved (that can take a second).
        report_current("panicked");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            error!(thread = %thread, %backtrace, "backtrace of the panic");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    fn probe(stop: bool) -> (Supervisor, mpsc::Receiver<String>, mpsc::Receiver<Instant>) {
        let (death_tx, death_rx) = mpsc::channel::<String>();
        let (exit_tx, exit_rx) = mpsc::channel::<Instant>();
        let exit_tx = std::sync::Mutex::new(exit_tx);
        let sup = Supervisor::with_exit(
            Arc::new(AtomicBool::new(stop)),
            move |n| {
                let _ = death_tx.send(n.to_string());
            },
            move || {
                let _ = exit_tx.lock().map(|t| t.send(Instant::now()));
            },
        );
        (sup, death_rx, exit_rx)
    }

    /// A panic caught where it is expected (`crate::unwind::catch`, as the store runs every sled
    /// call) is no death of a supervised thread, although the process's hook sees it first; an
    /// uncaught one still is.
    #[test]
    fn a_caught_panic_is_not_a_death_even_with_the_hook() {
        install_panic_hook();
        let (sup, deaths, _exits) = probe(false);
        let (tx, rx) = mpsc::channel::<bool>();
        let (go_on, wait) = mpsc::channel::<()>();
        let h = sup
            .spawn("store", move || {
                let caught = crate::unwind::catch(|| panic!("sled: damaged page")).is_err();
                let _ = tx.send(caught);
                let _ = wait.recv();
                panic!("uncaught");
            })
            .expect("spawn");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
        // The hook runs on the panicking thread before it unwinds: a report would be here by now.
        assert!(deaths.try_recv().is_err(), "a caught panic was reported");
        go_on.send(()).unwrap();
        assert!(h.join().is_err());
        assert_eq!(
            deaths.recv_timeout(Duration::from_secs(5)).as_deref(),
            Ok("store")
        );
    }

    #[test]
    fn a_panic_is_reported_with_the_thread_name_and_exits_after_the_watchdog() {
        let (sup, deaths, exits) = probe(false);
        let t0 = Instant::now();
        let h = sup.spawn("netlink", || panic!("boom")).expect("spawn");
        assert!(h.join().is_err());
        assert_eq!(
            deaths.recv_timeout(Duration::from_secs(5)).as_deref(),
            Ok("netlink")
        );
        let at = exits
            .recv_timeout(Duration::from_secs(5))
            .expect("exit called");
        assert!(at - t0 >= EXIT_WATCHDOG);
    }

    #[test]
    fn a_return_while_not_stopping_is_a_death_too_and_exit_is_armed_once() {
        let (sup, deaths, exits) = probe(false);
        sup.spawn("redis", || {})
            .expect("spawn")
            .join()
            .expect("join");
        sup.spawn("store", || {})
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(
            deaths.recv_timeout(Duration::from_secs(5)).as_deref(),
            Ok("redis")
        );
        assert_eq!(
            deaths.recv_timeout(Duration::from_secs(5)).as_deref(),
            Ok("store")
        );
        assert!(exits.recv_timeout(Duration::from_secs(5)).is_ok());
        assert!(
            exits.recv_timeout(EXIT_WATCHDOG * 2).is_err(),
            "one watchdog"
        );
    }

    #[test]
    fn an_auxiliary_thread_is_restarted_until_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<u32>();
        let mut runs = 0u32;
        let stop_in = Arc::clone(&stop);
        let h = spawn_restarting("aux", Arc::clone(&stop), move || {
            runs += 1;
            let _ = tx.send(runs);
            match runs {
                1 => panic!("first run panics"),
                2 => {} // the second returns early: a death too
                _ => {
                    stop_in.store(true, Ordering::SeqCst);
                }
            }
        })
        .expect("spawn");
        h.join().expect("the restarting thread itself never panics");
        let seen: Vec<u32> = rx.try_iter().collect();
        assert_eq!(seen, vec![1, 2, 3]);
    }

    #[test]
    fn an_auxiliary_thread_that_ends_while_stopping_is_not_restarted() {
        let stop = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::channel::<()>();
        spawn_restarting("aux", stop, move || {
            let _ = tx.send(());
        })
        .expect("spawn")
        .join()
        .expect("join");
        assert_eq!(rx.try_iter().count(), 1);
    }

    #[test]
    fn an_end_while_stopping_is_expected() {
        let (sup, deaths, exits) = probe(true);
        sup.spawn("quiet", || {})
            .expect("spawn")
            .join()
            .expect("join");
        assert!(deaths.try_recv().is_err());
        assert!(exits.recv_timeout(EXIT_WATCHDOG * 2).is_err());
    }
}
