//! Catching a panic where portsyncd expects one: sled can panic on a damaged database, on reads and
//! writes as well as on open, and the store turns such a panic into an error (a ladder step, a
//! poisoned store). The process's panic hook (`supervise::install_panic_hook`) reports a panic on a
//! supervised thread as that thread's death, which exits the daemon; it runs before any unwinding,
//! so it cannot see a `catch_unwind` further up. [`catch`] marks the calling thread while it runs,
//! and the hook only logs a panic raised there.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// How many [`catch`] calls the current thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, catching a panic it raises (see the module docs).
pub fn catch<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    DEPTH.with(|d| d.set(d.get().saturating_add(1)));
    let r = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    r
}

/// True while the current thread runs inside [`catch`]: a panic now will be caught.
pub fn expected() -> bool {
    DEPTH.with(|d| d.get() > 0)
}
