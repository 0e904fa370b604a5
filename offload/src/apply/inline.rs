//! `inline`: the job runs on the calling thread, as the original's default
//! `apply`. In Rust, with no GIL, this already uses every core when several
//! connections are busy at once.

use std::sync::Arc;
use std::time::Duration;

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
}

impl Inline {
    pub(crate) fn new(config: &StrategyConfig, stats: &Arc<Stats>) -> Self {
        Inline {
            job_timeout: config.job_timeout,
            stats: Arc::clone(stats),
        }
    }

    /// Runs `job` now; a job over its timeout stops at its next yield point.
    pub(crate) fn apply(&self, job: Job, timing: &mut Timing) -> Result<Answer, ApplyError> {
        let _running = Gauge::raise(&self.stats.running);
        let cancel = Cancel::never().with_deadline(deadline(self.job_timeout));
        run_here(job, &cancel, &mut timing.run)
    }
}
