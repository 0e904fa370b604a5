//! The outbox thread: `XADD`s submitted jobs to the jobs stream, many per
//! round trip when many are waiting.
//!
//! Submitting threads (an event loop among them) never wait for the broker:
//! they only queue a number here. If the broker does not take a job, the
//! job is new, not in flight, so it is answered `unavailable` at once and
//! the broker is marked down until the dispatcher reaches it again.

use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use redis::Connection;

use super::Shared;
use crate::broker::wire::JobMessage;
use crate::broker::{keys, COMMAND_TIMEOUT};
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
        if conn.is_none() {
            conn = shared.broker.connect(COMMAND_TIMEOUT).ok();
        }
        let sent = match conn.as_mut() {
            Some(conn) => add(conn, &messages).map_err(|err| err.to_string()),
            None => Err("could not connect".to_owned()),
        };
        if let Err(why) = sent {
            conn = None;
            shared.up.store(false, Ordering::Release);
            tracing::warn!(%why, jobs = messages.len(), "could not hand jobs to the broker");
            let reason = shared.unreachable(&why);
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

/// `XADD`s every message in one pipeline.
pub(super) fn add(conn: &mut Connection, messages: &[JobMessage]) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for message in messages {
        let cmd = pipe.cmd("XADD").arg(keys::JOBS).arg("*");
        for (field, value) in message.fields() {
            cmd.arg(field).arg(value);
        }
        cmd.ignore();
    }
    pipe.query(conn)
}
