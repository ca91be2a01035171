//! Test-only fault hooks of the daemon's threads, compiled with the `fault-injection` feature only
//! (no-ops otherwise):
//!
//! - `PORTSYNCD_FAULT_PANIC=<thread>[:<n>]` panics the thread named `netlink`, `redis` or `store`
//!   at its `n+1`-th pass through [`panic_point`] (default `n` = 0: the first). The netlink reader
//!   passes once per burst it hands to the loop, the Redis writer once per batch, the store
//!   committer once per commit.
//! - `PORTSYNCD_FAULT_LOOP_DELAY_MS=<ms>` makes the loop sleep that long per batch of inputs (a
//!   slow core).
//! - `PORTSYNCD_FAULT_ADMIN_DOWN_DELAY_MS=<ms>` makes each old-netdev admin-down that long.

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    fn panic_spec() -> Option<&'static (String, u64)> {
        static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let v = std::env::var("PORTSYNCD_FAULT_PANIC").ok()?;
            let (name, n) = match v.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().ok()?),
                None => (v, 0),
            };
            Some((name, n))
        })
        .as_ref()
    }

    static PASSES: AtomicU64 = AtomicU64::new(0);

    pub fn panic_point(thread: &str) {
        if let Some((name, after)) = panic_spec() {
            if name == thread && PASSES.fetch_add(1, Ordering::SeqCst) >= *after {
                panic!("fault injection: PORTSYNCD_FAULT_PANIC={name}:{after}");
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
