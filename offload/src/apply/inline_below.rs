//! `--inline-below`: the hybrid. A job whose predicted run time is below a
//! threshold runs on the calling thread, as `inline` would run it; every
//! other job goes to the strategy, so heavy and runaway jobs keep their
//! isolation and their killable timeout.
//!
//! Handing a tiny job to another thread or process costs more than the job
//! (a `sumn 1` is nanoseconds, a round trip to a worker process tens of
//! microseconds), so below some size the hand-off is pure loss. The rule
//! wraps any strategy that hands work away, in [`Strategy`](super::Strategy)
//! itself, so a new strategy of that sort gets it without a line of its own.
//!
//! The prediction comes from the job's argument and the step costs measured
//! at start-up ([`StepCosts::calibrate`]), in the same context the job will
//! run in here: a deadline and a stop flag, whose checks are part of the
//! loop's cost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::cost::StepCosts;
use super::done::Done;
use super::run::{deadline, run_here};
use super::Timing;
use crate::error::ApplyError;
use crate::job::{Cancel, Job};
use crate::stats::{Gauge, Stats};

/// The rule, its calibration, and what it has done.
#[derive(Debug)]
pub(crate) struct InlineBelow {
    threshold: Duration,
    costs: StepCosts,
    job_timeout: Option<Duration>,
    stats: Arc<Stats>,
    /// Jobs run on the calling thread by this rule.
    ran_inline: AtomicU64,
    /// Raised by `shutdown`: running jobs stop at their next yield point.
    stopping: AtomicBool,
}

/// What `stats` shows of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InlineBelowSnapshot {
    /// The threshold, in µs: jobs predicted to run less than this run on
    /// the calling thread.
    pub threshold_us: f64,
    /// The step costs measured at start-up, which the prediction uses.
    pub calibrated: StepCosts,
    /// Jobs that ran on the calling thread by this rule (each is also
    /// counted under its kind in `jobs`).
    pub ran_inline: u64,
}

impl InlineBelow {
    /// The rule for `threshold`, calibrated now on this thread.
    pub(crate) fn start(
        threshold: Duration,
        job_timeout: Option<Duration>,
        stats: &Arc<Stats>,
    ) -> Self {
        let stopping = AtomicBool::new(false);
        let costs = StepCosts::calibrate(&Self::cancel(job_timeout, &stopping));
        InlineBelow {
            threshold,
            costs,
            job_timeout,
            stats: Arc::clone(stats),
            ran_inline: AtomicU64::new(0),
            stopping,
        }
    }

    /// The token of a job run here: the job timeout as a deadline, and the
    /// stop flag.
    fn cancel(job_timeout: Option<Duration>, stopping: &AtomicBool) -> Cancel<'_> {
        Cancel::never()
            .with_deadline(deadline(job_timeout))
            .with_pool_flag(stopping)
    }

    /// Whether `job` is predicted to run below the threshold; never for a
    /// job with no prediction (`sleep`).
    pub(crate) fn admits(&self, job: Job) -> bool {
        self.costs
            .predict(job)
            .is_some_and(|cost| cost < self.threshold)
    }

    /// Runs `job` on this thread and completes `done` before returning.
    pub(crate) fn run(&self, job: Job, done: Done) {
        let mut timing = Timing::default();
        let result = if self.stopping.load(Ordering::Relaxed) {
            Err(ApplyError::ShuttingDown { job })
        } else {
            self.ran_inline.fetch_add(1, Ordering::Relaxed);
            let _running = Gauge::raise(&self.stats.running);
            run_here(
                job,
                &Self::cancel(self.job_timeout, &self.stopping),
                &mut timing.run,
            )
        };
        done.complete(result, timing);
    }

    /// Stops the jobs running here at their next yield point, and refuses
    /// the next ones as shutting down.
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> InlineBelowSnapshot {
        InlineBelowSnapshot {
            threshold_us: self.threshold.as_secs_f64() * 1e6,
            calibrated: self.costs,
            ran_inline: self.ran_inline.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::client::Client;
    use crate::job::Answer;
    use std::sync::Mutex;

    fn rule(threshold: Duration) -> InlineBelow {
        InlineBelow {
            threshold,
            costs: StepCosts {
                sumn_step_ns: 1.0,
                prime_step_ns: 10.0,
            },
            job_timeout: Some(Duration::from_secs(30)),
            stats: Arc::new(Stats::new()),
            ran_inline: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    /// Jobs below the threshold are admitted, jobs at or above it and sleeps
    /// are not.
    #[test]
    fn admits_below_the_threshold_only() {
        let rule = rule(Duration::from_micros(100));
        assert!(rule.admits(Job::Sumn(1)));
        assert!(rule.admits(Job::Sumn(99_999)));
        assert!(!rule.admits(Job::Sumn(100_000)));
        // 4 999 divisions of 10 ns: 50 µs; 49 999: 500 µs.
        assert!(rule.admits(Job::Prime(99_990_001)));
        assert!(!rule.admits(Job::Prime(10_000_000_019)));
        assert!(!rule.admits(Job::Prime(18_446_744_073_709_551_557)));
        assert!(!rule.admits(Job::Sleep(0)));
    }

    /// An admitted job runs here, is answered before `run` returns, and is
    /// counted; after shutdown it is refused as shutting down, and not
    /// counted as run.
    #[test]
    fn runs_here_and_counts() {
        let rule = rule(Duration::from_micros(100));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let done = |seen: &Arc<Mutex<Vec<_>>>| {
            let seen = Arc::clone(seen);
            Done::new(
                Job::Sumn(3),
                Client::anonymous(),
                &rule.stats,
                Box::new(move |result| seen.lock().unwrap().push(result)),
            )
        };
        rule.run(Job::Sumn(3), done(&seen));
        assert_eq!(*seen.lock().unwrap(), vec![Ok(Answer::Sum(6))]);
        rule.shutdown();
        rule.run(Job::Sumn(3), done(&seen));
        assert_eq!(
            seen.lock().unwrap()[1],
            Err(ApplyError::ShuttingDown { job: Job::Sumn(3) })
        );
        assert_eq!(rule.snapshot().ran_inline, 1);
    }
}
