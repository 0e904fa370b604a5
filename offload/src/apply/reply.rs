//! The one-slot reply that an `apply` caller waits on.
//!
//! A mutex, a condvar and an `Option`, rather than a channel: channels that
//! spin before they sleep (crossbeam's, and std's, built on it) call
//! `sched_yield` while the caller waits. With more waiting callers than
//! cores that is CPU taken from the workers and the threads that do have
//! work: `strace -c` of `procs` under 8 clients counted two `sched_yield`s
//! per request, half the server's system time. A caller here goes to sleep
//! at once and is woken once, and only if it sleeps: a value put before the
//! wait (the common case) costs no wake-up.

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
    state: Mutex<State<T>>,
    filled: Condvar,
    /// How many times a putter woke the waiter (tests count them).
    #[cfg(test)]
    wakes: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct State<T> {
    value: Option<T>,
    /// The waiter sleeps on `filled`. Most values are put before anyone
    /// waits (`inline`, `exclusive` and `procs` complete an `apply` on the
    /// caller's own thread, before it waits), and a condvar's notify is a
    /// `futex` system call even when nobody sleeps: under `inline`, one of
    /// the four system calls of a request.
    waiting: bool,
}

/// A new empty slot; `on_drop` is what the waiter gets if the putter is
/// dropped without putting anything.
pub(crate) fn slot<T>(on_drop: T) -> (Putter<T>, Waiter<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            waiting: false,
        }),
        filled: Condvar::new(),
        #[cfg(test)]
        wakes: std::sync::atomic::AtomicUsize::new(0),
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

    /// Puts `value`, and wakes the waiter if it sleeps. One that does not
    /// yet sleep finds the value when it takes the lock, before it would.
    fn fill(&self, value: T) {
        let mut state = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        state.value = Some(value);
        let asleep = state.waiting;
        drop(state);
        if asleep {
            #[cfg(test)]
            self.slot
                .wakes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.slot.filled.notify_one();
        }
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
    #[cfg(test)]
    pub(crate) fn wait(self, within: Option<Duration>) -> Option<T> {
        self.wait_checking(within, None, || {})
    }

    /// [`Waiter::wait`], calling `check` (without the slot's lock) every
    /// `every` while the value has not come: a value that comes at once
    /// costs no call.
    pub(crate) fn wait_checking(
        self,
        within: Option<Duration>,
        every: Option<Duration>,
        mut check: impl FnMut(),
    ) -> Option<T> {
        let deadline = within.and_then(|within| Instant::now().checked_add(within));
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(value) = state.value.take() {
                return Some(value);
            }
            let now = Instant::now();
            let tick = every.and_then(|every| now.checked_add(every));
            let until = match (deadline, tick) {
                (Some(deadline), Some(tick)) => Some(deadline.min(tick)),
                (deadline, tick) => deadline.or(tick),
            };
            // Raised under the lock that the putter takes to read it, and
            // held until this thread has the lock back: a put in between
            // sees it, and wakes the sleep that the condvar's wait starts.
            state.waiting = true;
            state = match until {
                None => self.0.filled.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(until) => {
                    if deadline.is_some_and(|deadline| deadline <= now) {
                        state.waiting = false;
                        return None;
                    }
                    let left = until.saturating_duration_since(now);
                    let (mut state, timed_out) = self
                        .0
                        .filled
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner());
                    if timed_out.timed_out() && state.value.is_none() && Some(until) == tick {
                        state.waiting = false;
                        drop(state);
                        check();
                        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
                    } else {
                        state
                    }
                }
            };
            state.waiting = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check runs every period while the value has not come, and not
    /// once for a value already there.
    #[test]
    fn checks_while_waiting() {
        let (putter, waiter) = slot(0);
        let mut checks = 0;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(120));
            putter.put(5);
        });
        let got = waiter.wait_checking(
            Some(Duration::from_secs(5)),
            Some(Duration::from_millis(20)),
            || checks += 1,
        );
        assert_eq!(got, Some(5));
        assert!(
            checks >= 2,
            "{checks} checks in 120 ms, one due every 20 ms"
        );
        let (putter, waiter) = slot(0);
        putter.put(1);
        let mut none = 0;
        waiter.wait_checking(None, Some(Duration::from_millis(1)), || none += 1);
        assert_eq!(none, 0);
    }

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

    /// A value put before anyone waits wakes nobody: no system call.
    #[test]
    fn a_put_before_the_wait_wakes_nobody() {
        let (putter, waiter) = slot(0);
        let shared = Arc::clone(&waiter.0);
        putter.put(3);
        assert_eq!(waiter.wait(None), Some(3));
        assert_eq!(shared.wakes.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    /// A waiter that sleeps is woken by the put, once.
    #[test]
    fn a_sleeping_waiter_is_woken_once() {
        let (putter, waiter) = slot(0);
        let shared = Arc::clone(&waiter.0);
        let putting = std::thread::spawn(move || {
            // Until the waiter has gone to sleep (bounded, so that a
            // waiter that never says so fails the test rather than hangs).
            let until = Instant::now() + Duration::from_secs(5);
            while !shared.state.lock().unwrap().waiting && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            putter.put(9);
            shared
        });
        assert_eq!(waiter.wait(Some(Duration::from_secs(5))), Some(9));
        let shared = putting.join().unwrap();
        assert_eq!(shared.wakes.load(std::sync::atomic::Ordering::Relaxed), 1);
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
