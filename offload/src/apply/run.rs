//! What the flavors share: running a job on the current thread with panics
//! caught, and the bounded wait for a turn.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ApplyError, BusyReason};
use crate::job::{Answer, Cancel, Job, Stop};
use crate::stats::Stats;

/// Runs `job` on this thread, turning a stop at a yield point into the
/// matching error and a panic into [`ApplyError::JobPanicked`], and records
/// the run time in `run`.
pub(crate) fn run_here(
    job: Job,
    cancel: &Cancel<'_>,
    run: &mut Option<Duration>,
) -> Result<Answer, ApplyError> {
    let started = Instant::now();
    // The job owns no shared state that a panic could leave half-written, so
    // unwinding out of it is safe to observe.
    let outcome = catch_unwind(AssertUnwindSafe(|| job.run(cancel)));
    let elapsed = started.elapsed();
    *run = Some(elapsed);
    match outcome {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(Stop::Deadline)) => Err(ApplyError::Timeout { job, elapsed }),
        Ok(Err(Stop::Cancelled)) => Err(ApplyError::ShuttingDown { job }),
        Err(payload) => Err(ApplyError::JobPanicked {
            job,
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The text of a panic, when it has one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with no message".to_owned()
    }
}

/// A place among the jobs waiting for a worker; dropping it leaves. It owns
/// its handle on the counters, so that it can travel with a job to another
/// thread.
#[derive(Debug)]
pub(crate) struct Place(Arc<Stats>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a place among the jobs waiting for a worker.
///
/// # Errors
///
/// [`ApplyError::Busy`] at once when `capacity` jobs are already waiting.
pub(crate) fn join_queue(
    stats: &Arc<Stats>,
    capacity: usize,
    job: Job,
) -> Result<Place, ApplyError> {
    let ahead = stats.queued.fetch_add(1, Ordering::Relaxed);
    let place = Place(Arc::clone(stats));
    if ahead >= capacity {
        return Err(ApplyError::Busy {
            job,
            reason: BusyReason::QueueFull { queued: ahead },
        });
    }
    Ok(place)
}

/// The deadline of a job that starts now and may run for `timeout`.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}
