//! The one-slot reply that an `apply` caller waits on.
//!
//! A mutex, a condvar and an `Option`, rather than a channel: channels that
//! spin before they sleep (crossbeam's, and std's, built on it) call
//! `sched_yield` while the caller waits. With more waiting callers than
//! cores that is CPU taken from the workers and the threads that do have
//! work: `strace -c` of `procs` under 8 clients counted two `sched_yield`s
//! per request, half the server's system time. A caller here goes to sleep
//! at once and is woken once.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The caller's end: waits for the value.
#[derive(Debug)]
pub(crate) struct Waiter<T>(Arc<Slot<T>>);

/// The completer's end: puts the value once. Dropped unused, it puts
/// `on_drop`, so a waiter never waits for a value that cannot come.
#[derive(Debug)]
pub(crate) struct Putter<T> {
    slot: Arc<Slot<T>>,
    on_drop: Option<T>,
}

#[derive(Debug)]
struct Slot<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
}

/// A new empty slot; `on_drop` is what the waiter gets if the putter is
/// dropped without putting anything.
pub(crate) fn slot<T>(on_drop: T) -> (Putter<T>, Waiter<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        filled: Condvar::new(),
    });
    let putter = Putter {
        slot: Arc::clone(&slot),
        on_drop: Some(on_drop),
    };
    (putter, Waiter(slot))
}

impl<T> Putter<T> {
    /// Puts `value` and wakes the waiter.
    pub(crate) fn put(mut self, value: T) {
        self.on_drop = None;
        self.fill(value);
    }

    fn fill(&self, value: T) {
        let mut slot = self.slot.value.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(value);
        drop(slot);
        self.slot.filled.notify_one();
    }
}

impl<T> Drop for Putter<T> {
    fn drop(&mut self) {
        if let Some(value) = self.on_drop.take() {
            self.fill(value);
        }
    }
}

impl<T> Waiter<T> {
    /// The value, waiting for it at most `within` (for ever if `None`);
    /// `None` if it did not come in time.
    pub(crate) fn wait(self, within: Option<Duration>) -> Option<T> {
        let deadline = within.and_then(|within| Instant::now().checked_add(within));
        let mut slot = self.0.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(value) = slot.take() {
                return Some(value);
            }
            slot = match deadline {
                None => self.0.filled.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    self.0
                        .filled
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value put on another thread reaches the waiter.
    #[test]
    fn put_then_wait() {
        let (putter, waiter) = slot(0);
        std::thread::spawn(move || putter.put(7));
        assert_eq!(waiter.wait(Some(Duration::from_secs(5))), Some(7));
    }

    /// A putter dropped unused delivers its fallback, so nobody waits for
    /// ever.
    #[test]
    fn dropped_putter_delivers_the_fallback() {
        let (putter, waiter) = slot(-1);
        drop(putter);
        assert_eq!(waiter.wait(None), Some(-1));
    }

    /// Nothing put: the wait ends at its bound with nothing.
    #[test]
    fn wait_is_bounded() {
        let (_putter, waiter) = slot(0);
        let started = Instant::now();
        assert_eq!(waiter.wait(Some(Duration::from_millis(50))), None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
