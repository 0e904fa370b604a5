//! The monitor thread: reads the broker's side of things every half second
//! for `stats`, so that `stats` itself never waits for the broker.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::streams::{StreamInfoConsumersReply, StreamPendingReply};
use redis::{Connection, RedisResult};
use serde::Serialize;

use super::Shared;
use crate::broker::{Keys, COMMAND_TIMEOUT};

/// How often the broker is read.
const EVERY: Duration = Duration::from_millis(500);

/// The remote side in `stats`: the broker's view, as last read, and this
/// server's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoteSnapshot {
    /// The broker's URL, its password shown as `***`.
    pub broker: String,
    /// Whether the broker answered the last time the server asked.
    pub connected: bool,
    /// This server's jobs handed out and not yet answered.
    pub in_flight: usize,
    /// Entries in the jobs stream (waiting or running, from every server).
    pub stream_length: u64,
    /// Entries delivered to a worker and not yet acknowledged.
    pub pending: u64,
    /// Jobs that workers took over from a worker that stopped renewing its
    /// lease, since the broker started.
    pub redeliveries: u64,
    /// Replies dropped because their job was already answered.
    pub late_replies: u64,
    /// Replies dropped because their signature was missing or wrong
    /// (`--broker-secret-file`): forged, or from a worker with another key.
    pub forged_replies: u64,
    /// Jobs handed out again after the broker restarted.
    pub resubmitted: u64,
    /// Every worker the group has seen.
    pub workers: Vec<WorkerSeen>,
}

/// One worker (consumer) in the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerSeen {
    /// Its `--name`.
    pub name: String,
    /// Jobs delivered to it and not acknowledged.
    pub pending: u64,
    /// Milliseconds since it last took a job or renewed a lease (the
    /// group's idle time for it).
    pub idle_ms: u64,
    /// Milliseconds since its lease thread last said it is alive (every
    /// quarter lease while it runs); `None` if it never did.
    pub alive_ms_ago: Option<u64>,
}

pub(super) fn run(shared: &Shared, stop: &Receiver<()>) {
    let mut conn: Option<Connection> = None;
    loop {
        if conn.is_none() {
            conn = shared.broker.connect(COMMAND_TIMEOUT).ok();
        }
        if let Some(live) = conn.as_mut() {
            match read(live, shared.broker.keys()) {
                Ok(reading) => {
                    *shared.seen.lock().unwrap_or_else(|p| p.into_inner()) = reading;
                }
                Err(err) => {
                    tracing::debug!(%err, "could not read the broker's statistics");
                    conn = None;
                }
            }
        }
        match stop.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

fn read(conn: &mut Connection, keys: &Keys) -> RedisResult<RemoteSnapshot> {
    let stream_length: u64 = redis::cmd("XLEN").arg(keys.jobs()).query(conn)?;
    let seen: std::collections::HashMap<String, u64> =
        redis::cmd("HGETALL").arg(keys.seen()).query(conn)?;
    let now = crate::broker::unix_ms_now();
    let redeliveries: Option<u64> = redis::cmd("GET").arg(keys.redeliveries()).query(conn)?;
    // The group may not exist yet (no worker and no job since the broker
    // started): then nothing is pending and no worker was seen.
    let pending: RedisResult<StreamPendingReply> = redis::cmd("XPENDING")
        .arg(keys.jobs())
        .arg(keys.group())
        .query(conn);
    let consumers: RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys.jobs())
        .arg(keys.group())
        .query(conn);
    let pending = match pending {
        Ok(reply) => reply.count() as u64,
        Err(err) if crate::broker::is_missing_group(&err) => 0,
        Err(err) => return Err(err),
    };
    let workers = match consumers {
        Ok(reply) => reply
            .consumers
            .into_iter()
            .map(|c| WorkerSeen {
                alive_ms_ago: seen.get(&c.name).map(|at| now.saturating_sub(*at)),
                name: c.name,
                pending: c.pending as u64,
                idle_ms: c.idle as u64,
            })
            .collect(),
        Err(err) if crate::broker::is_missing_group(&err) => Vec::new(),
        Err(err) => return Err(err),
    };
    Ok(RemoteSnapshot {
        stream_length,
        pending,
        redeliveries: redeliveries.unwrap_or(0),
        workers,
        ..RemoteSnapshot::default()
    })
}
