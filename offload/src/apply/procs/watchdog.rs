//! The watchdog: one thread per pool that kills a worker whose job runs past
//! the job timeout, so that the thread waiting for the reply can block in a
//! plain `recv` instead of a `poll` with a timeout.
//!
//! Why not a timed wait in each round trip: `poll` with a timeout followed by
//! `recvmsg` cost about 10 µs of CPU more per tiny job than a blocking
//! `recvmsg` on this kind of VM (measured with `--workers 8`, where every
//! caller does its own round trip: 42 against 28–32 µs of server CPU per
//! request), which is a third of procs' whole cost. A killed worker closes
//! its end of the reply channel, so the blocked `recv` ends at once with
//! EOF, and the round trip reads in the worker's [`Deadline`] that the
//! watchdog got there first.
//!
//! Every job of a pool gets the same timeout, so a job sent after the
//! watchdog last looked has a deadline later than the watchdog's next
//! wake-up: sending a job never needs to wake it, and it costs two atomic
//! stores per job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fork_server::Command;
use super::Shared;
use crate::error::StartError;

/// No job in flight.
const IDLE: u64 = 0;
/// The watchdog claimed the job: its worker is being killed.
const KILLED: u64 = u64::MAX;

/// One worker's job deadline, in nanoseconds since the pool's epoch, shared
/// by the thread doing the round trip and the watchdog. Whichever of the two
/// moves it off the deadline first decides: the round trip, with its answer,
/// or the watchdog, with a kill.
#[derive(Debug, Default)]
pub(super) struct Deadline(AtomicU64);

impl Deadline {
    /// Arms the deadline for a job sent now, `limit` from `sent_at`.
    pub(super) fn arm(&self, epoch: Instant, sent_at: Instant, limit: Duration) {
        let at = sent_at.checked_add(limit).map_or(u128::MAX, |at| {
            at.saturating_duration_since(epoch).as_nanos()
        });
        // Never IDLE (a job sent at the epoch with no limit) nor KILLED.
        let at = u64::try_from(at).unwrap_or(KILLED - 1).clamp(1, KILLED - 1);
        self.0.store(at, Ordering::Release);
    }

    /// Disarms it once the reply came or the wait failed; true if the
    /// watchdog had already claimed the job (it ran past its timeout and
    /// its worker is being killed).
    pub(super) fn disarm(&self) -> bool {
        self.0.swap(IDLE, Ordering::AcqRel) == KILLED
    }

    /// The watchdog's side: claims the job if its deadline is at or before
    /// `now`; otherwise returns the deadline still to come, if any.
    fn claim_if_due(&self, now: u64) -> Result<bool, u64> {
        let at = self.0.load(Ordering::Acquire);
        if at == IDLE || at == KILLED {
            return Ok(false);
        }
        if at > now {
            return Err(at);
        }
        // A round trip that disarms first keeps its answer.
        Ok(self
            .0
            .compare_exchange(at, KILLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }
}

/// The watchdog thread and the way to stop it.
#[derive(Debug)]
pub(super) struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the watchdog of a pool whose jobs may run `limit` each.
    pub(super) fn start(shared: &Arc<Shared>, limit: Duration) -> Result<Self, StartError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (shared, stopped) = (Arc::clone(shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("offload-watchdog".into())
            .spawn(move || watch(&shared, limit, &stopped))
            .map_err(|e| StartError::os("could not start the pool's watchdog thread", e))?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watchdog's life: look at every busy worker, kill those past their
/// deadline, sleep until the earliest deadline still to come (or one whole
/// limit, which no job sent meanwhile can beat).
fn watch(shared: &Shared, limit: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
    while !*stopped {
        let now = shared.epoch.elapsed().as_nanos() as u64;
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let mut next = now.saturating_add(limit);
        let mut due = Vec::new();
        for (pid, end) in shared
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            match end.deadline.claim_if_due(now) {
                Ok(true) => due.push((*pid, Arc::clone(end))),
                Ok(false) => {}
                Err(at) => next = next.min(at),
            }
        }
        for (pid, end) in due {
            // Raised before the kill, so that the supervisor logs the end
            // as a timeout kill, not as a lost worker.
            end.timed_out.store(true, Ordering::Relaxed);
            shared.command(Command::Kill { pid });
        }
        let sleep = Duration::from_nanos(next.saturating_sub(now));
        stopped = wake
            .wait_timeout(stopped, sleep)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_to_move_the_deadline_decides() {
        let epoch = Instant::now();
        let deadline = Deadline::default();
        deadline.arm(epoch, epoch, Duration::from_millis(5));
        let at = 5_000_000;
        assert_eq!(deadline.claim_if_due(at - 1), Err(at), "not due yet");
        assert_eq!(deadline.claim_if_due(at), Ok(true), "due at its deadline");
        assert_eq!(deadline.claim_if_due(at + 1), Ok(false), "claimed once");
        assert!(deadline.disarm(), "the round trip sees the claim");

        deadline.arm(epoch, epoch, Duration::from_millis(5));
        assert!(!deadline.disarm(), "answered first");
        assert_eq!(deadline.claim_if_due(at * 2), Ok(false), "nothing to kill");
    }

    #[test]
    fn no_limit_is_too_long_to_arm() {
        let epoch = Instant::now();
        let deadline = Deadline::default();
        deadline.arm(epoch, epoch, Duration::MAX / 2);
        assert_eq!(deadline.claim_if_due(u64::MAX - 2), Err(KILLED - 1));
        assert!(!deadline.disarm());
    }
}
