//! The watchdog: one thread per pool that kills a worker whose job runs past
//! the job timeout, so that the thread waiting for the reply can block in a
//! plain `recv` instead of a `poll` with a timeout.
//!
//! Why not a timed wait in each round trip: `poll` with a timeout followed by
//! `recvmsg` cost about 10 µs of CPU more per tiny job than a blocking
//! `recvmsg` on this kind of VM (measured with `--workers 8`, where every
//! caller does its own round trip: 42 against 28–32 µs of server CPU per
//! request), which is a third of procs' whole cost. A killed worker closes
//! its end of every reply channel, so the blocked `recv` ends at once with
//! EOF, and the job's slot in the worker's status page says that the
//! watchdog claimed it.
//!
//! A job's deadline counts from when its worker starts it (a small job may
//! wait in the channel behind others first), and the worker writes it in its
//! status page. Every job of a pool gets the same timeout, so a job started
//! after the watchdog last looked has a deadline later than the watchdog's
//! next wake-up: starting a job never needs to wake it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::fork_server::Command;
use super::status::monotonic_ns;
use super::Shared;
use crate::error::StartError;

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

/// The watchdog's life: look at every worker's running job, kill those past
/// their deadline, sleep until the earliest deadline still to come (or one
/// whole limit, which no job started meanwhile can beat).
fn watch(shared: &Shared, limit: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
    let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    while !*stopped {
        let now = monotonic_ns();
        let mut next = now.saturating_add(limit);
        let mut due = Vec::new();
        for (pid, worker) in shared
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            match worker.page.claim_overdue(now) {
                Ok(true) => {
                    // Raised at once, before the worker can see the claim
                    // and exit: the supervisor then logs its end as a
                    // timeout kill, not as a lost worker or a clean exit.
                    worker.timed_out.store(true, Ordering::Relaxed);
                    due.push((*pid, Arc::clone(worker)));
                }
                Ok(false) => {}
                Err(at) => next = next.min(at),
            }
        }
        for (pid, _) in due {
            shared.command(Command::Kill { pid });
        }
        let sleep = Duration::from_nanos(next.saturating_sub(now));
        stopped = wake
            .wait_timeout(stopped, sleep)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
