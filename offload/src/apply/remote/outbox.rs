//! The outbox thread: `XADD`s submitted jobs to the jobs stream, many per
//! round trip when many are waiting.
//!
//! Submitting threads (an event loop among them) never wait for the broker:
//! they only queue a number here. If the broker does not take a job, the
//! job is new, not in flight, so it is answered `unavailable` at once and
//! the broker is marked down until the dispatcher reaches it again.

use crossbeam_channel::Receiver;
use redis::Connection;

use super::Shared;
use crate::broker::wire::JobMessage;
use crate::broker::{Broker, COMMAND_TIMEOUT};
use crate::error::ApplyError;

/// Most jobs sent in one round trip.
const BATCH: usize = 128;

pub(super) fn run(shared: &Shared, numbers: &Receiver<u64>) {
    let mut conn: Option<Connection> = None;
    while let Ok(first) = numbers.recv() {
        let batch: Vec<u64> = std::iter::once(first)
            .chain(numbers.try_iter().take(BATCH - 1))
            .collect();
        let messages: Vec<JobMessage> = {
            let in_flight = shared.in_flight();
            batch
                .iter()
                .filter_map(|id| in_flight.get(id).map(|job| job.message.clone()))
                .collect()
        };
        if messages.is_empty() {
            continue;
        }
        // A connection that died with a broker restart gets one fresh try
        // before the jobs fail.
        let sent = match conn.take() {
            Some(mut live) => match add(&mut live, &shared.broker, &messages) {
                Ok(entries) => Ok((live, entries)),
                Err(_) => add_fresh(&shared.broker, &messages),
            },
            None => add_fresh(&shared.broker, &messages),
        };
        match sent {
            Ok((live, entries)) => {
                note_entries(shared, &messages, entries);
                conn = Some(live);
            }
            Err(err) => {
                let reason = shared.went_down(&err, "could not hand jobs to the broker");
                for message in &messages {
                    shared.complete(message.id, |job, _| {
                        Err(ApplyError::Unavailable {
                            job,
                            reason: reason.clone(),
                        })
                    });
                }
            }
        }
    }
}

/// `XADD`s every message in one pipeline, signed if the broker's
/// deployment signs; returns their entry ids, in order.
pub(super) fn add(
    conn: &mut Connection,
    broker: &Broker,
    messages: &[JobMessage],
) -> redis::RedisResult<Vec<String>> {
    let mut pipe = redis::pipe();
    for message in messages {
        let cmd = pipe.cmd("XADD").arg(broker.keys().jobs()).arg("*");
        for (field, value) in message.fields(broker.signer()) {
            cmd.arg(field).arg(value);
        }
    }
    pipe.query(conn)
}

/// [`add`] on a new connection, which it returns.
pub(super) fn add_fresh(
    broker: &Broker,
    messages: &[JobMessage],
) -> redis::RedisResult<(Connection, Vec<String>)> {
    let mut conn = broker.connect(COMMAND_TIMEOUT)?;
    let entries = add(&mut conn, broker, messages)?;
    Ok((conn, entries))
}

/// Records each message's entry id in the in-flight table.
pub(super) fn note_entries(shared: &Shared, messages: &[JobMessage], entries: Vec<String>) {
    let mut in_flight = shared.in_flight();
    for (message, entry) in messages.iter().zip(entries) {
        if let Some(job) = in_flight.get_mut(&message.id) {
            job.entry = Some(entry);
        }
    }
}
