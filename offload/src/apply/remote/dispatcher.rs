//! The dispatcher thread: takes this server's replies ([`Taker`]), completes each job
//! the first time its answer arrives, and keeps the broker's health.
//!
//! It is the only thread that marks the broker up: after a failure (its
//! own, or the outbox's) it reconnects with capped [`Backoff`], recreates
//! the group if the broker lost it, and compares the broker's run id with
//! the one it knew. A different run id means the broker restarted and the
//! jobs in flight may be gone with it, so they are all `XADD`ed again under
//! the same numbers: whichever answer comes first completes the job.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{Connection, RedisResult};

use super::shared::Delivery;
use super::taken::Taker;
use super::{outbox, Shared};
use crate::broker::wire::{JobMessage, Reply};
use crate::broker::{run_id, Backoff, COMMAND_TIMEOUT};

/// How long one take blocks: the longest the thread takes to see a stop,
/// and a reply a lost round left on the taken list to be read again.
const BLOCK: Duration = Duration::from_millis(250);

pub(super) fn run(shared: &Shared) {
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::default();
    let mut known_run_id: Option<String> = None;
    let mut generation = shared.broker.generation();
    let mut taker = Taker::new(&shared.reply_list, &shared.taken_list);
    while !shared.stopping.load(Ordering::Acquire) {
        shared.broker.drop_if_stale(&mut conn, &mut generation);
        if conn.is_none() || !shared.up.load(Ordering::Acquire) {
            match reconnect(shared, &mut known_run_id, &mut taker) {
                Ok(fresh) => {
                    conn = Some(fresh);
                    backoff.reset();
                    shared.came_up();
                }
                Err(err) => {
                    conn = None;
                    shared.went_down(&err, "cannot reach the broker");
                    std::thread::sleep(backoff.next_wait());
                    continue;
                }
            }
        }
        let Some(live) = conn.as_mut() else { continue };
        match taker.take(live, BLOCK) {
            Ok(replies) => replies.iter().for_each(|text| deliver(shared, text)),
            Err(err) => {
                // A planned failover ends this wait (the old primary turns
                // replica and unblocks it), and so does a lost connection:
                // one fresh try at once, so that a switch the broker makes
                // smoothly costs no job an `unavailable`.
                conn = reconnect(shared, &mut known_run_id, &mut taker).ok();
                if conn.is_none() {
                    shared.went_down(&err, "lost the broker while waiting for replies");
                }
            }
        }
    }
}

/// Opens a connection, makes sure the group exists, and, if the broker is
/// not the one it was (restarted, or another node after a failover), hands
/// out again every job in flight whose entry it lacks.
fn reconnect(
    shared: &Shared,
    known_run_id: &mut Option<String>,
    taker: &mut Taker,
) -> RedisResult<Connection> {
    let mut conn = shared.broker.connect_with_group(BLOCK + COMMAND_TIMEOUT)?;
    taker.connected(&mut conn)?;
    let now = run_id(&mut conn)?;
    shared.broker.clock().measure(&mut conn)?;
    if known_run_id.as_ref().is_some_and(|known| *known != now) {
        let messages = missing(shared, &mut conn)?;
        if !messages.is_empty() {
            let entries = outbox::add(&mut conn, &shared.broker, &messages)?;
            outbox::note_entries(shared, &messages, entries);
            shared
                .resubmitted
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            tracing::info!(
                jobs = messages.len(),
                "the broker is another (restarted, or failed over); handed out again the jobs it lacks"
            );
        }
    }
    if known_run_id.as_deref() != Some(now.as_str()) {
        tracing::info!(broker = shared.broker.shown(), run_id = %now, "connected to the broker");
    }
    *known_run_id = Some(now);
    Ok(conn)
}

/// The jobs in flight that went to the stream and whose entries `conn`'s
/// broker does not hold (it restarted empty, or a failover lost the last
/// writes), their deadlines stated anew on its clock. A job still on its
/// way (the outbox will add it here) or waiting for room (fair share) is
/// not among them.
fn missing(shared: &Shared, conn: &mut Connection) -> RedisResult<Vec<JobMessage>> {
    let out: Vec<(String, JobMessage)> = shared
        .in_flight()
        .values()
        .filter(|job| job.out)
        .filter_map(|job| Some((job.entry.clone()?, job.message_now(&shared.broker))))
        .collect();
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (entry, _) in &out {
        pipe.cmd("XRANGE")
            .arg(shared.broker.keys().jobs())
            .arg(entry)
            .arg(entry);
    }
    let found: Vec<Vec<redis::Value>> = pipe.query(conn)?;
    Ok(out
        .into_iter()
        .zip(found)
        .filter(|(_, there)| there.is_empty())
        .map(|((_, message), _)| message)
        .collect())
}

/// Completes the job a reply names, unless it was completed already or the
/// reply is not to be trusted (with `--broker-secret-file`: its MAC is
/// missing or wrong), in which case the job waits for the real one.
fn deliver(shared: &Shared, text: &str) {
    let reply = match Reply::parse(text) {
        Ok(reply) => reply,
        Err(err) => return tracing::warn!(%err, "dropped a reply that cannot be read"),
    };
    let id = reply.id;
    let signer = shared.broker.signer();
    let mut refusal = None;
    let delivery = shared.complete_checked(
        id,
        |message| match reply.check(message, signer) {
            Ok(()) => true,
            Err(err) => {
                refusal = Some(err);
                false
            }
        },
        |job, elapsed| reply.clone().into_result(job, elapsed),
    );
    match delivery {
        Delivery::Completed => {}
        Delivery::Late => {
            shared.late_replies.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(id, "dropped a reply for a job already answered");
        }
        Delivery::Refused => {
            shared.forged_replies.fetch_add(1, Ordering::Relaxed);
            let why = refusal.map(|err| err.to_string()).unwrap_or_default();
            tracing::warn!(id, %why, "dropped a reply that is not signed by a worker");
        }
    }
}
