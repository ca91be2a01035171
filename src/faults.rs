//! Test-only fault hooks of the daemon's threads, compiled with the `fault-injection` feature only
//! (no-ops otherwise):
//!
//! - `PORTSYNCD_FAULT_PANIC=<thread>[:<n>[:<times>]]` panics the thread named `netlink`, `redis`,
//!   `store`, `metrics` or `swss-logger` at its `n+1`-th pass through [`panic_point`] (default `n` =
//!   0: the first) and at every later pass, or only at the `times` passes from there when `times` is
//!   given (a thread that is restarted then runs on). The netlink reader passes once per burst it
//!   hands to the loop, the Redis writer once per batch, the store committer once per commit, the
//!   metrics endpoint once per request, the LOGGER follower once per read of `LOGGER|portsyncd`.
//! - `PORTSYNCD_FAULT_LOOP_DELAY_MS=<ms>` makes the loop sleep that long per batch of inputs (a
//!   slow core).
//! - `PORTSYNCD_FAULT_ADMIN_DOWN_DELAY_MS=<ms>` makes each old-netdev admin-down that long.

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    /// The thread, the first pass that panics, how many passes panic (None: all from there).
    type Spec = (String, u64, Option<u64>);

    fn panic_spec() -> Option<&'static Spec> {
        static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let v = std::env::var("PORTSYNCD_FAULT_PANIC").ok()?;
            let mut parts = v.split(':');
            let name = parts.next()?.to_string();
            let after = parts.next().map_or(Some(0), |n| n.parse().ok())?;
            let times = match parts.next() {
                Some(t) => Some(t.parse().ok()?),
                None => None,
            };
            Some((name, after, times))
        })
        .as_ref()
    }

    static PASSES: AtomicU64 = AtomicU64::new(0);

    pub fn panic_point(thread: &str) {
        if let Some((name, after, times)) = panic_spec() {
            if name != thread {
                return;
            }
            let pass = PASSES.fetch_add(1, Ordering::SeqCst);
            let in_range = pass >= *after && times.is_none_or(|t| pass - after < t);
            if in_range {
                panic!("fault injection: PORTSYNCD_FAULT_PANIC={name}:{after} (pass {pass})");
            }
        }
    }

    fn ms(var: &str, cell: &'static OnceLock<Option<Duration>>) -> Option<Duration> {
        *cell.get_or_init(|| {
            let ms: u64 = std::env::var(var).ok()?.parse().ok()?;
            Some(Duration::from_millis(ms))
        })
    }

    pub fn loop_delay() -> Option<Duration> {
        static D: OnceLock<Option<Duration>> = OnceLock::new();
        ms("PORTSYNCD_FAULT_LOOP_DELAY_MS", &D)
    }

    pub fn admin_down_delay() -> Option<Duration> {
        static D: OnceLock<Option<Duration>> = OnceLock::new();
        ms("PORTSYNCD_FAULT_ADMIN_DOWN_DELAY_MS", &D)
    }
}

#[cfg(not(feature = "fault-injection"))]
mod imp {
    use std::time::Duration;

    #[inline(always)]
    pub fn panic_point(_thread: &str) {}

    #[inline(always)]
    pub fn loop_delay() -> Option<Duration> {
        None
    }

    #[inline(always)]
    pub fn admin_down_delay() -> Option<Duration> {
        None
    }
}

pub use imp::*;
