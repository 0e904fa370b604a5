//! Turning finished jobs into replies and settling them.
//!
//! The thread that finishes a job (a pool thread of the local strategy)
//! settles it itself ([`settle_here`]), on a connection of its own. What it
//! cannot settle goes to the replier thread ([`run`]), many per round trip. If the broker is unreachable, the
//! replies are kept and sent again after reconnection until their deadline
//! (the server drops a reply to a job it has answered already). A job the
//! local strategy refused or cut short because this worker is stopping is
//! not settled at all: it stays pending, and another worker takes it over
//! after the lease.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use offload::broker::wire::{answer_reply, error_reply, JobMessage, ReplyCode};
use offload::broker::{unix_ms_now, Backoff, Broker, COMMAND_TIMEOUT};
use offload::{Answer, ApplyError};
use redis::Connection;

use crate::running::Running;
use crate::settle::{settle, Settle};

/// Most jobs settled in one round trip.
const BATCH: usize = 64;

/// How long after a job's deadline its reply is still worth sending.
const LATE: u64 = 1_000;

/// A job the local strategy finished.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its stream entry id.
    pub(crate) entry: String,
    /// What the local strategy said.
    pub(crate) result: Result<Answer, ApplyError>,
}

/// How long replies not yet sent are still tried once the worker stops.
const LAST_TRIES: Duration = Duration::from_secs(2);

/// Settles finished jobs until `stop` is raised and nothing is left to send
/// (or [`LAST_TRIES`] has passed since).
pub(crate) fn run(
    broker: &Broker,
    running: &Running,
    finished: &Receiver<Finished>,
    stop: &AtomicBool,
) {
    let mut stopped_at: Option<Instant> = None;
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::default();
    // Replies not yet accepted by the broker, with their deadlines.
    let mut unsent: Vec<(Settle, u64)> = Vec::new();
    loop {
        if stop.load(Ordering::Acquire) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if unsent.is_empty() && finished.is_empty() {
                return;
            }
            if since.elapsed() > LAST_TRIES {
                tracing::warn!(
                    replies = unsent.len(),
                    "stopping with replies not sent; their jobs stay pending"
                );
                return;
            }
        }
        let wait = if unsent.is_empty() {
            Duration::from_millis(50)
        } else {
            backoff.next_wait()
        };
        match finished.recv_timeout(wait) {
            Ok(first) => {
                for done in std::iter::once(first).chain(finished.try_iter().take(BATCH - 1)) {
                    if let Some(job) = prepare(running, done) {
                        unsent.push(job);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if unsent.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = unix_ms_now();
        unsent.retain(|(job, deadline)| {
            let keep = now <= deadline.saturating_add(LATE);
            if !keep {
                // Left pending: whoever claims it sees the deadline passed.
                tracing::warn!(entry = %job.entry, "gave up sending a reply past its deadline");
                running.remove(&job.entry);
            }
            keep
        });
        if unsent.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = broker.connect(COMMAND_TIMEOUT).ok();
        }
        let jobs: Vec<Settle> = unsent.iter().map(|(job, _)| job.clone()).collect();
        match conn.as_mut().map(|live| settle(live, &jobs)) {
            Some(Ok(())) => {
                backoff.reset();
                for (job, _) in unsent.drain(..) {
                    running.remove(&job.entry);
                }
            }
            Some(Err(err)) => {
                tracing::warn!(%err, replies = jobs.len(), "could not send replies; will retry");
                conn = None;
            }
            None => {}
        }
    }
}

/// The reply to a finished job, or `None` when it is handed back instead.
fn reply_text(message: &JobMessage, done: &Finished) -> Option<String> {
    match &done.result {
        Ok(answer) => Some(answer_reply(message.id, answer)),
        Err(err) => match ReplyCode::of(err) {
            Some(code) => Some(error_reply(message.id, code, &err.to_string())),
            None => {
                tracing::info!(entry = %done.entry, %err, "handing the job back");
                None
            }
        },
    }
}

/// The settlement for a finished job, or `None` when it is handed back.
fn prepare(running: &Running, done: Finished) -> Option<(Settle, u64)> {
    let message = running.get(&done.entry)?;
    let Some(text) = reply_text(&message, &done) else {
        running.remove(&done.entry);
        return None;
    };
    Some((
        Settle {
            entry: done.entry,
            reply: Some((message.reply_to, text)),
        },
        message.deadline_ms,
    ))
}

thread_local! {
    /// The broker connection of a thread that finishes jobs (a pool thread
    /// of the local strategy), for [`settle_here`].
    static HERE: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

/// Settles a finished job on the thread that finished it, saving the hand-off
/// to the replier thread; gives the job back when the broker did not take
/// it, for the replier to retry.
pub(crate) fn settle_here(broker: &Broker, running: &Running, done: Finished) -> Option<Finished> {
    let message = running.get(&done.entry)?;
    let Some(text) = reply_text(&message, &done) else {
        running.remove(&done.entry);
        return None;
    };
    let job = Settle {
        entry: done.entry.clone(),
        reply: Some((message.reply_to, text)),
    };
    let settled = HERE.with(|cell| {
        let mut conn = cell.borrow_mut();
        if conn.is_none() {
            *conn = broker.connect(COMMAND_TIMEOUT).ok();
        }
        let settled = conn
            .as_mut()
            .is_some_and(|live| settle(live, std::slice::from_ref(&job)).is_ok());
        if !settled {
            *conn = None;
        }
        settled
    });
    if settled {
        running.remove(&done.entry);
        None
    } else {
        Some(done)
    }
}
