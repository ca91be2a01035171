//! A hand-over queue between two threads whose receiver sleeps without spinning.
//!
//! The loop hands the Redis writer one batch at a time (the core keeps at most one in flight), so the
//! writer spends nearly all its life waiting. crossbeam's channels spin and then call `sched_yield`
//! before they park a waiting receiver: right for a busy consumer, wasted for this one. A profile of a
//! 2048-port storm put 4.5 % of the whole daemon's CPU in the writer's `sched_yield` calls
//! (docs/performance.md). Here the receiver waits on a condition variable at once.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    queue: VecDeque<T>,
    /// The other side is gone.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A poisoned mutex only means a panic on the other side; the queue is still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// The sending side. Dropping it ends the receiver's iteration once the queue is empty.
pub struct Giver<T>(Arc<Shared<T>>);

/// The receiving side: an iterator that blocks until an item comes or the giver is gone.
pub struct Taker<T>(Arc<Shared<T>>);

/// A connected pair.
pub fn handoff<T>() -> (Giver<T>, Taker<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (Giver(Arc::clone(&shared)), Taker(shared))
}

impl<T> Giver<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub fn give(&self, item: T) -> Result<(), T> {
        let mut s = self.0.lock();
        if s.closed {
            return Err(item);
        }
        s.queue.push_back(item);
        drop(s);
        self.0.ready.notify_one();
        Ok(())
    }
}

impl<T> Drop for Giver<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl<T> Drop for Taker<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl<T> Iterator for Taker<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let mut s = self.0.lock();
        loop {
            if let Some(item) = s.queue.pop_front() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.0.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_across_threads_and_the_end_is_seen() {
        let (tx, rx) = handoff();
        let consumer = std::thread::spawn(move || rx.collect::<Vec<u32>>());
        for i in 0..1000 {
            tx.give(i).unwrap();
        }
        drop(tx);
        assert_eq!(consumer.join().unwrap(), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn queued_items_are_still_taken_after_the_giver_is_gone() {
        let (tx, mut rx) = handoff();
        tx.give("a").unwrap();
        drop(tx);
        assert_eq!(rx.next(), Some("a"));
        assert_eq!(rx.next(), None);
    }

    #[test]
    fn giving_to_a_gone_taker_returns_the_item() {
        let (tx, rx) = handoff();
        drop(rx);
        assert_eq!(tx.give(7), Err(7));
    }
}
