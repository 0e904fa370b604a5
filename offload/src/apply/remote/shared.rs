//! [`Shared`]: what the remote strategy's threads share, above all the
//! in-flight table, whose one rule is that whoever removes a job from it
//! completes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::monitor::RemoteSnapshot;
use crate::apply::done::Done;
use crate::apply::Timing;
use crate::broker::wire::JobMessage;
use crate::broker::Broker;
use crate::error::ApplyError;
use crate::job::{Answer, Job};

/// One job handed out and not yet answered.
pub(super) struct InFlight {
    /// What went into the stream (kept to hand it out again).
    pub(super) message: JobMessage,
    /// The promise to the submitter.
    pub(super) done: Done,
    /// When it was submitted.
    pub(super) submitted: Instant,
}

/// What the threads share.
pub(super) struct Shared {
    pub(super) broker: Broker,
    /// This server's reply list.
    pub(super) reply_list: String,
    /// Jobs handed out and not yet answered, by number.
    pub(super) in_flight: Mutex<HashMap<u64, InFlight>>,
    /// Whether the broker answered the last time anyone asked.
    pub(super) up: AtomicBool,
    /// Raised by `shutdown` and on drop.
    pub(super) stopping: AtomicBool,
    /// Replies for jobs already completed (a second worker's answer, or one
    /// after the deadline), dropped.
    pub(super) late_replies: AtomicU64,
    /// Jobs handed out again after the broker lost them.
    pub(super) resubmitted: AtomicU64,
    /// The monitor's last reading.
    pub(super) seen: Mutex<RemoteSnapshot>,
}

impl Shared {
    pub(super) fn in_flight(&self) -> MutexGuard<'_, HashMap<u64, InFlight>> {
        // Completions run outside the lock, so a poisoned table is intact.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes job `id` with `result` unless it was completed already;
    /// returns whether this call completed it.
    pub(super) fn complete(
        &self,
        id: u64,
        result: impl FnOnce(Job, Duration) -> Result<Answer, ApplyError>,
    ) -> bool {
        let Some(job) = self.in_flight().remove(&id) else {
            return false;
        };
        let elapsed = job.submitted.elapsed();
        let outcome = result(job.message.job, elapsed);
        job.done.complete(
            outcome,
            Timing {
                queue_wait: None,
                run: Some(elapsed),
            },
        );
        true
    }

    pub(super) fn unreachable(&self, why: &str) -> String {
        format!("the broker at {} is unreachable ({why})", self.broker.url())
    }
}
