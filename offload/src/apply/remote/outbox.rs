//! The outbox thread: `XADD`s submitted jobs to the jobs stream, many per
//! round trip when many are waiting.
//!
//! Submitting threads (an event loop among them) never wait for the broker:
//! they only queue a number here. If the broker does not take a job, the
//! job is new, not in flight, so it is answered `unavailable` at once and
//! the broker is marked down until the dispatcher reaches it again.

use crossbeam_channel::Receiver;
use redis::Connection;

use super::shared::Outgoing;
use super::Shared;
use std::sync::atomic::Ordering;

use crate::broker::wire::JobMessage;
use crate::broker::{Broker, COMMAND_TIMEOUT};
use crate::error::ApplyError;

/// Most jobs sent in one round trip.
const BATCH: usize = 128;

pub(super) fn run(shared: &Shared, outgoing: &Receiver<Outgoing>) {
    let mut conn: Option<Connection> = None;
    let mut generation = shared.broker.generation();
    while let Ok(first) = outgoing.recv() {
        shared.broker.drop_if_stale(&mut conn, &mut generation);
        let mut batch: Vec<u64> = Vec::new();
        let mut withdrawn: Vec<String> = Vec::new();
        let mut deleted: Vec<String> = Vec::new();
        for what in std::iter::once(first).chain(outgoing.try_iter().take(BATCH - 1)) {
            match what {
                Outgoing::Add(id) => batch.push(id),
                Outgoing::Withdraw(entries) => withdrawn.extend(entries),
                Outgoing::Delete(entries) => deleted.extend(entries),
            }
        }
        if !withdrawn.is_empty() {
            withdraw(shared, &mut conn, &withdrawn, true);
        }
        if !deleted.is_empty() {
            withdraw(shared, &mut conn, &deleted, false);
        }
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

/// Records each message's entry id in the in-flight table. An entry whose
/// job left the table meanwhile (its client went away while it was being
/// added) is withdrawn at once.
pub(super) fn note_entries(shared: &Shared, messages: &[JobMessage], entries: Vec<String>) {
    let mut orphans = Vec::new();
    {
        let mut in_flight = shared.in_flight();
        for (message, entry) in messages.iter().zip(entries) {
            match in_flight.get_mut(&message.id) {
                Some(job) => job.entry = Some(entry),
                // Answered already (by a worker faster than this thread,
                // whose entry is gone anyway, or at its deadline) or
                // withdrawn: nobody waits for it.
                None => orphans.push(entry),
            }
        }
    }
    if !orphans.is_empty() {
        shared.send(Outgoing::Delete(orphans));
    }
}

/// Deletes `entries` from the stream, and counts those a worker had taken
/// already (they stay in its pending list: it stops the job at its next
/// lease renewal and settles it).
const WITHDRAW: &str = r"
local started = 0
for i = 2, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #held > 0 then started = started + 1 end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return started
";

/// Deletes `entries` (see [`WITHDRAW`]); counts them in `stats` if
/// `counted` (a client went away; not for the entries of jobs answered
/// before their id was known).
fn withdraw(shared: &Shared, conn: &mut Option<Connection>, entries: &[String], counted: bool) {
    let keys = shared.broker.keys();
    let script = redis::Script::new(WITHDRAW);
    let mut call = script.key(keys.jobs());
    call.arg(keys.group());
    for entry in entries {
        call.arg(entry);
    }
    let done = match conn.take() {
        Some(live) => Ok(live),
        None => shared.broker.connect(COMMAND_TIMEOUT),
    }
    .and_then(|mut live| call.invoke::<u64>(&mut live).map(|started| (live, started)));
    match done {
        Ok((live, started)) => {
            *conn = Some(live);
            if !counted {
                return;
            }
            let total = entries.len() as u64;
            shared
                .withdrawn
                .fetch_add(total - started.min(total), Ordering::Relaxed);
            shared
                .abandoned
                .fetch_add(started.min(total), Ordering::Relaxed);
        }
        // Not fatal: a worker that reads them answers a job nobody waits
        // for, and the answer is dropped as late.
        Err(err) => tracing::debug!(%err, entries = entries.len(), "could not withdraw entries"),
    }
}
