//! [`Done`]: how a job's result gets back to whoever handed it in, exactly
//! once, whatever happens to the job on the way.
//!
//! Both ways into a strategy end here: [`Strategy::submit`] wraps the
//! caller's callback, and [`Strategy::apply`] wraps a one-slot reply
//! (`reply.rs`) that its thread then waits on. A flavor completes the `Done` wherever the
//! result becomes known (the caller's thread, a worker thread, a `procs`
//! collector). If a `Done` is dropped instead — a queued task thrown away while
//! the strategy stops — its `Drop` completes it with
//! [`ApplyError::ShuttingDown`], so no submission is ever lost silently.
//!
//! [`Strategy::submit`]: super::Strategy::submit
//! [`Strategy::apply`]: super::Strategy::apply

use std::fmt;
use std::sync::Arc;

use super::client::Client;
use super::queue::Running;
use super::Timing;
use crate::error::ApplyError;
use crate::job::{Answer, Job};
use crate::stats::{Outcome, Stats};

/// What a submitter is told: called once with the job's result.
pub(crate) type Callback = Box<dyn FnOnce(Result<Answer, ApplyError>) + Send>;

/// Who hands a job in, which decides whether the flavor may block the
/// caller's thread before the job is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// [`Strategy::apply`](super::Strategy::apply): a thread that waits for
    /// the answer anyway, so it may wait (up to the queue wait) for room in a
    /// queue or for the token, and `procs` does the round trip on it.
    Blocking,
    /// [`Strategy::submit`](super::Strategy::submit): an event loop, which
    /// must not wait for room: a full queue is `Busy` at once.
    NonBlocking,
}

/// A promise to report one job's result; see the module documentation.
pub(crate) struct Done {
    job: Job,
    stats: Arc<Stats>,
    /// Who the job is for: its address for fair share, its flag for a
    /// withdrawal.
    client: Client,
    /// While the job runs, its count among its address's running jobs;
    /// ended just before the result is reported, so that the client's next
    /// job already finds it over.
    running: Option<Running>,
    /// Taken by the first (and only) completion.
    callback: Option<Callback>,
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("job", &self.job)
            .field("address", &self.client.address())
            .field("completed", &self.callback.is_none())
            .finish()
    }
}

impl Done {
    /// A promise for `client`'s `job`, whose outcome is counted in `stats`
    /// when it is completed.
    pub(crate) fn new(job: Job, client: Client, stats: &Arc<Stats>, callback: Callback) -> Self {
        Done {
            job,
            stats: Arc::clone(stats),
            client,
            running: None,
            callback: Some(callback),
        }
    }

    /// Who the job is for.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Counts the job as running for its address until it is completed.
    pub(crate) fn set_running(&mut self, running: Running) {
        self.running = Some(running);
    }

    /// Whether the job counts as running now.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Ends that count now (the job goes back to waiting).
    pub(crate) fn take_running(&mut self) -> Option<Running> {
        self.running.take()
    }

    /// Records the outcome and hands `result` to the submitter.
    pub(crate) fn complete(mut self, result: Result<Answer, ApplyError>, timing: Timing) {
        self.finish(result, timing);
    }

    fn finish(&mut self, result: Result<Answer, ApplyError>, timing: Timing) {
        drop(self.running.take());
        // A job that ran to its end for a client who has gone: its answer
        // is dropped, and counted as such.
        let result = match result {
            Ok(_) if self.client.is_gone() => Err(ApplyError::Cancelled { job: self.job }),
            other => other,
        };
        if let Some(callback) = self.callback.take() {
            self.stats.record(
                self.job.kind(),
                Outcome::of(&result),
                timing.queue_wait,
                timing.run,
            );
            callback(result);
        }
    }
}

impl Drop for Done {
    /// A promise nobody kept: the job was dropped on its way (the strategy is
    /// stopping), so say so.
    fn drop(&mut self) {
        let job = self.job;
        self.finish(Err(ApplyError::ShuttingDown { job }), Timing::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<Result<Answer, ApplyError>>>>;

    fn recording() -> (Seen, Callback) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let callback: Callback = {
            let seen = Arc::clone(&seen);
            Box::new(move |result| seen.lock().unwrap().push(result))
        };
        (seen, callback)
    }

    /// Completing calls the callback once and counts the outcome.
    #[test]
    fn completes_once() {
        let stats = Arc::new(Stats::new());
        let (seen, callback) = recording();
        let done = Done::new(Job::Sumn(3), Client::anonymous(), &stats, callback);
        done.complete(Ok(Answer::Sum(6)), Timing::default());
        assert_eq!(*seen.lock().unwrap(), vec![Ok(Answer::Sum(6))]);
        let snapshot = stats.snapshot("test", 0);
        assert_eq!(snapshot.jobs[&crate::JobKind::Sumn].ok, 1);
    }

    /// A dropped promise reports `ShuttingDown` rather than nothing.
    #[test]
    fn dropped_reports_shutting_down() {
        let stats = Arc::new(Stats::new());
        let (seen, callback) = recording();
        drop(Done::new(
            Job::Sleep(5),
            Client::anonymous(),
            &stats,
            callback,
        ));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Err(ApplyError::ShuttingDown { job: Job::Sleep(5) })]
        );
    }
}
