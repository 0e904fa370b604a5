//! `inline`: the job runs on the calling thread, as the original's default
//! `apply`. In Rust, with no GIL, this already uses every core when several
//! connections are busy at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::done::Done;
use super::run::{deadline, run_here};
use super::{StrategyConfig, Timing};
use crate::error::ApplyError;
use crate::job::{Answer, Cancel, Job};
use crate::stats::{Gauge, Stats};

/// Runs each job where it is applied.
#[derive(Debug)]
pub(crate) struct Inline {
    job_timeout: Option<Duration>,
    stats: Arc<Stats>,
    /// Raised by `shutdown`: running jobs stop at their next yield point.
    stopping: AtomicBool,
}

impl Inline {
    pub(crate) fn new(config: &StrategyConfig, stats: &Arc<Stats>) -> Self {
        Inline {
            job_timeout: config.job_timeout,
            stats: Arc::clone(stats),
            stopping: AtomicBool::new(false),
        }
    }

    /// Runs `job` now and completes `done` before returning, for either
    /// caller: an event loop that submits here stalls for the whole job (the
    /// point of the experiment). A job over its timeout stops at its next
    /// yield point.
    pub(crate) fn submit(&self, job: Job, done: Done) {
        let mut timing = Timing::default();
        let result = self.run(job, &mut timing);
        done.complete(result, timing);
    }

    fn run(&self, job: Job, timing: &mut Timing) -> Result<Answer, ApplyError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(ApplyError::ShuttingDown { job });
        }
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
