//! Yield points: where a long job stops to ask whether it should go on.
//!
//! The reading in `shared/seeds/001` puts `await asyncio.sleep(0)` every
//! 100 000 iterations of its prime checker so that other tasks get a turn. A
//! thread needs no such turn-taking, but it does need a place where a job that
//! has run out of time, or whose caller has gone, can stop. [`Cancel`] is that
//! place: jobs call [`Cancel::check`] every [`YIELD_EVERY`] iterations.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How many loop iterations a job runs between two yield points.
///
/// At about a nanosecond per iteration this is a check every ~0.1 ms, so a
/// cancelled job stops quickly while the check itself stays far below 1% of the
/// work (measured by `cargo bench -p ysum-offload`).
pub const YIELD_EVERY: u64 = 100_000;

/// Why a job stopped at a yield point before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The job's deadline passed.
    Deadline,
    /// Someone raised the job's cancellation flag (its caller gave up, or the
    /// pool is shutting down).
    Cancelled,
}

/// What a job consults at each yield point: an optional deadline and up to two
/// cancellation flags (the job's own and its pool's).
///
/// `Cancel::never()` costs one branch per yield point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cancel<'a> {
    deadline: Option<Instant>,
    job_flag: Option<&'a AtomicBool>,
    pool_flag: Option<&'a AtomicBool>,
}

impl<'a> Cancel<'a> {
    /// A token that never stops the job.
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Stops the job once `deadline` (if any) has passed.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Stops the job once `flag` is raised.
    pub fn with_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.job_flag = Some(flag);
        self
    }

    /// Stops the job once the pool-wide `flag` is raised.
    pub fn with_pool_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.pool_flag = Some(flag);
        self
    }

    /// The deadline, if the token has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A yield point: `Err` when the job should stop now.
    ///
    /// # Errors
    ///
    /// [`Stop::Cancelled`] when a flag is raised, [`Stop::Deadline`] when the
    /// deadline has passed.
    #[inline]
    pub fn check(&self) -> Result<(), Stop> {
        let raised = |flag: Option<&AtomicBool>| flag.is_some_and(|f| f.load(Ordering::Relaxed));
        if raised(self.job_flag) || raised(self.pool_flag) {
            return Err(Stop::Cancelled);
        }
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Stop::Deadline),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A token with nothing set never stops a job.
    #[test]
    fn never_passes() {
        assert_eq!(Cancel::never().check(), Ok(()));
    }

    /// A past deadline stops the job; a future one does not.
    #[test]
    fn deadline_stops() {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(
            Cancel::never().with_deadline(Some(past)).check(),
            Err(Stop::Deadline)
        );
        let future = Instant::now() + Duration::from_secs(60);
        assert_eq!(Cancel::never().with_deadline(Some(future)).check(), Ok(()));
    }

    /// Either flag, once raised, stops the job.
    #[test]
    fn flags_stop() {
        let job = AtomicBool::new(false);
        let pool = AtomicBool::new(false);
        let token = Cancel::never().with_flag(&job).with_pool_flag(&pool);
        assert_eq!(token.check(), Ok(()));
        pool.store(true, Ordering::Relaxed);
        assert_eq!(token.check(), Err(Stop::Cancelled));
        pool.store(false, Ordering::Relaxed);
        job.store(true, Ordering::Relaxed);
        assert_eq!(token.check(), Err(Stop::Cancelled));
    }
}
