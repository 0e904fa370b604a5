//! The replier thread: settles, many per round trip, the finished jobs
//! whose thread could not settle them itself (see [`crate::take`]). If the
//! broker is unreachable, the replies are kept and sent again after
//! reconnection until their deadline (the server drops a reply to a job it
//! has answered already).

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use offload::broker::{redact, Backoff, Broker, Every, COMMAND_TIMEOUT};
use redis::Connection;

use crate::counts::Counts;
use crate::running::Running;
use crate::settle::{settle, Settle};
use crate::stop::Stop;

/// Most jobs settled in one round trip.
const BATCH: usize = 64;

/// How long after a job's deadline its reply is still worth sending.
const LATE: u64 = 1_000;

/// A finished job's settlement not yet accepted by the broker.
#[derive(Debug)]
pub(crate) struct Unsent {
    /// What to settle.
    pub(crate) job: Settle,
    /// The job's deadline, Unix ms.
    pub(crate) deadline_ms: u64,
}

/// Settles finished jobs until the helpers are released and nothing is left
/// to send, or the grace period is over (then what is unsent is abandoned:
/// its jobs stay pending, for another worker after the lease).
pub(crate) fn run(
    broker: &Broker,
    running: &Running,
    finished: &Receiver<Unsent>,
    stop: &Stop,
    counts: &Counts,
) {
    let mut conn: Option<Connection> = None;
    let mut generation = broker.generation();
    let mut backoff = Backoff::default();
    // A broker that stays away is one line every 10 s, not one per retry.
    let failures = Every::new(Duration::from_secs(10));
    // Replies not yet accepted by the broker, with their deadlines.
    let mut unsent: Vec<(Settle, u64)> = Vec::new();
    loop {
        if stop.helpers_released() && unsent.is_empty() && finished.is_empty() {
            return;
        }
        if stop.is_requested() && stop.left().unwrap_or_default().is_zero() {
            tracing::warn!(
                replies = unsent.len(),
                "the grace period is over with replies not sent; their jobs stay pending"
            );
            Counts::add(&counts.replies_abandoned, unsent.len());
            return;
        }
        let wait = if unsent.is_empty() {
            Duration::from_millis(50)
        } else {
            backoff.next_wait()
        };
        match finished.recv_timeout(wait) {
            Ok(first) => {
                for done in std::iter::once(first).chain(finished.try_iter().take(BATCH - 1)) {
                    unsent.push((done.job, done.deadline_ms));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if unsent.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = broker.clock().now_ms();
        unsent.retain(|(job, deadline)| {
            let keep = now <= deadline.saturating_add(LATE);
            if !keep {
                // Left pending: whoever claims it sees the deadline passed.
                tracing::warn!(entry = %job.entry, "gave up sending a reply past its deadline");
                Counts::add(&counts.replies_abandoned, 1);
                running.remove(&job.entry);
            }
            keep
        });
        if unsent.is_empty() {
            continue;
        }
        let jobs: Vec<Settle> = unsent.iter().map(|(job, _)| job.clone()).collect();
        broker.drop_if_stale(&mut conn, &mut generation);
        let sent = match conn.take() {
            Some(live) => Ok(live),
            None => broker.connect(COMMAND_TIMEOUT),
        }
        .and_then(|mut live| settle(&mut live, broker.keys(), &jobs).map(|()| live));
        match sent {
            Ok(live) => {
                conn = Some(live);
                backoff.reset();
                failures.reset();
                for (job, _) in unsent.drain(..) {
                    running.remove(&job.entry);
                }
            }
            Err(err) => {
                counts.broker_failed(false);
                if let Some(held_back) = failures.pass() {
                    let why = redact(&err.to_string());
                    tracing::warn!(%why, replies = jobs.len(), held_back, "could not send replies; will retry");
                }
            }
        }
    }
}
