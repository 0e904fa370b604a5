//! `exclusive`: the job runs on the calling thread, but only one job at a time
//! in the whole process, as the original's `exclusive_apply`.
//!
//! Under CPython's GIL that lock stopped threads fighting over the
//! interpreter; in Rust it only serialises the work onto one core, which is
//! what the benchmark shows.
//!
//! The lock is a token in a one-slot channel, so that waiting for it can be
//! bounded by the queue wait, which `std::sync::Mutex` cannot do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::done::{Caller, Done};
use super::run::{deadline, join_queue, run_here};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, BusyReason};
use crate::job::{Answer, Cancel, Job};
use crate::stats::{Gauge, Stats};

/// One global lock around the work.
#[derive(Debug)]
pub(crate) struct Exclusive {
    /// Holds the token while nobody runs a job.
    free: Receiver<()>,
    /// Puts the token back.
    release: Sender<()>,
    queue: usize,
    queue_wait: Duration,
    job_timeout: Option<Duration>,
    stats: Arc<Stats>,
    /// Raised by `shutdown`: running jobs stop at their next yield point.
    stopping: AtomicBool,
}

/// Holding the lock; dropping it (even while unwinding) gives the token back.
struct Held<'a>(&'a Sender<()>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // The channel has one slot and this guard took the only token, so
        // putting it back cannot fail.
        let _ = self.0.try_send(());
    }
}

impl Exclusive {
    pub(crate) fn new(config: &StrategyConfig, stats: &Arc<Stats>) -> Self {
        let (release, free) = crossbeam_channel::bounded(1);
        release
            .send(())
            .expect("the receiver is alive and the slot empty");
        stats.alive.store(1, Ordering::Relaxed);
        Exclusive {
            free,
            release,
            queue: config.queue,
            queue_wait: config.queue_wait,
            job_timeout: config.job_timeout,
            stats: Arc::clone(stats),
            stopping: AtomicBool::new(false),
        }
    }

    /// Runs `job` on this thread under the lock and completes `done` before
    /// returning. A blocking caller waits for the lock at most the queue
    /// wait; a non-blocking one (an event loop) gets `Busy` at once if
    /// another thread holds it, and otherwise stalls for the whole job.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        let mut timing = Timing::default();
        let result = self.run(job, caller, &mut timing);
        done.complete(result, timing);
    }

    fn run(&self, job: Job, caller: Caller, timing: &mut Timing) -> Result<Answer, ApplyError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(ApplyError::ShuttingDown { job });
        }
        let arrived = Instant::now();
        let place = join_queue(&self.stats, self.queue, job)?;
        let got_token = match caller {
            Caller::Blocking => self.free.recv_timeout(self.queue_wait).is_ok(),
            Caller::NonBlocking => self.free.try_recv().is_ok(),
        };
        timing.queue_wait = Some(arrived.elapsed());
        drop(place);
        if !got_token {
            let reason = match caller {
                Caller::NonBlocking => BusyReason::Locked,
                Caller::Blocking if self.queue_wait.is_zero() => BusyReason::NoneFree,
                Caller::Blocking => BusyReason::Waited {
                    queue_wait: self.queue_wait,
                },
            };
            return Err(ApplyError::Busy { job, reason });
        }
        let _held = Held(&self.release);
        let _running = Gauge::raise(&self.stats.running);
        let cancel = Cancel::never()
            .with_deadline(deadline(self.job_timeout))
            .with_pool_flag(&self.stopping);
        run_here(job, &cancel, &mut timing.run)
    }

    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}
