//! The monitor thread: reads the broker's side of things every half second
//! for `stats`, so that `stats` itself never waits for the broker, and
//! measures the broker's clock each time.
//!
//! A worker is listed while it is alive (its heartbeat is younger than
//! [`GONE_AFTER_LEASES`] of its leases) or holds jobs; a worker that
//! stopped long ago leaves the list even before its consumer is removed
//! from the group.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::streams::{StreamInfoConsumersReply, StreamPendingReply};
use redis::{Connection, RedisResult};
use serde::Serialize;

use super::Shared;
use crate::broker::{Every, Heartbeat, Keys, COMMAND_TIMEOUT, OFFSET_WARNING_MS};

/// How often the broker is read.
const EVERY: Duration = Duration::from_millis(500);

/// How often while long jobs wait here for room (fair share): a worker that
/// arrives is seen, and given jobs, sooner.
const EVERY_WHILE_HELD: Duration = Duration::from_millis(100);

/// A worker whose heartbeat is older than this many of its leases, and
/// which holds no job, is gone from `stats`.
pub(crate) const GONE_AFTER_LEASES: u64 = 5;

/// How long a worker that never said its lease (an earlier build) may stay
/// silent before it is gone from `stats`.
const GONE_AFTER_MS: u64 = 30_000;

/// The remote side in `stats`: the broker's view, as last read, and this
/// server's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoteSnapshot {
    /// The broker's URL, its password shown as `***`.
    pub broker: String,
    /// Under Sentinel: `host:port` of the primary, as last found.
    pub primary: Option<String>,
    /// Under Sentinel: times this server saw the primary change.
    pub failovers: u64,
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
    /// The broker's clock minus this server's, in ms, as last measured.
    pub clock_offset_ms: i64,
    /// The slots of the workers alive now (from their heartbeats): how many
    /// long jobs this server lets into the stream at once (fair share).
    pub live_slots: u64,
    /// Long jobs waiting at this server for their turn (fair share).
    pub held: usize,
    /// Jobs withdrawn because their client went away, before any worker
    /// took them.
    pub withdrawn: u64,
    /// Jobs withdrawn because their client went away after a worker took
    /// them (it stops them; their answers are dropped).
    pub abandoned: u64,
    /// The workers alive now, and those that hold jobs.
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
    /// quarter lease while it runs), on the broker's clock; `None` if it
    /// never did.
    pub alive_ms_ago: Option<u64>,
    /// The broker's clock minus the worker's own, in ms, as it last
    /// measured it; `None` for a worker of an earlier build.
    pub clock_offset_ms: Option<i64>,
    /// Its version.
    pub version: Option<String>,
    /// The newest job format it speaks.
    pub format: Option<u32>,
    /// The jobs it runs at once.
    pub slots: Option<u64>,
}

/// Reads the broker until `stop` is disconnected; a message on it makes it
/// read at once.
pub(super) fn run(shared: &Shared, stop: &Receiver<()>) {
    let mut conn: Option<Connection> = None;
    let mut generation = shared.broker.generation();
    let skew_logged = Every::new(Duration::from_secs(600));
    loop {
        // Under Sentinel: a switch of primary, planned or not, is seen
        // here within a turn, and every connection follows it.
        shared.broker.check_primary();
        shared.broker.drop_if_stale(&mut conn, &mut generation);
        if conn.is_none() {
            conn = shared.broker.connect(COMMAND_TIMEOUT).ok();
        }
        if let Some(live) = conn.as_mut() {
            if let Ok(offset_ms) = shared.broker.clock().measure(live) {
                if offset_ms.abs() > OFFSET_WARNING_MS && skew_logged.pass().is_some() {
                    tracing::warn!(
                        offset_ms,
                        "this machine's clock is off from the broker's by more than a second; \
                         deadlines are judged on the broker's, but fix the clock (NTP)"
                    );
                }
            }
            let now_ms = shared.broker.clock().now_ms();
            match read(live, shared.broker.keys(), now_ms) {
                Ok(reading) => {
                    let going = shared
                        .fair
                        .set_window(usize::try_from(reading.live_slots).unwrap_or(usize::MAX));
                    *shared.seen.lock().unwrap_or_else(|p| p.into_inner()) = reading;
                    shared.release(going);
                }
                Err(err) => {
                    tracing::debug!(%err, "could not read the broker's statistics");
                    conn = None;
                }
            }
        }
        let every = if shared.fair.held() > 0 {
            EVERY_WHILE_HELD
        } else {
            EVERY
        };
        match stop.recv_timeout(every) {
            // A nudge, or the next turn.
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn read(conn: &mut Connection, keys: &Keys, now_ms: u64) -> RedisResult<RemoteSnapshot> {
    let stream_length: u64 = redis::cmd("XLEN").arg(keys.jobs()).query(conn)?;
    let seen: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.seen()).query(conn)?;
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
    let mut live_slots = 0;
    let workers = match consumers {
        Ok(reply) => reply
            .consumers
            .into_iter()
            .filter_map(|c| {
                let beat = seen.get(&c.name).and_then(|text| Heartbeat::parse(text));
                let worker = WorkerSeen {
                    alive_ms_ago: beat.as_ref().map(|b| now_ms.saturating_sub(b.at_ms)),
                    clock_offset_ms: beat.as_ref().and_then(|b| b.offset_ms),
                    version: beat.as_ref().and_then(|b| b.version.clone()),
                    format: beat.as_ref().and_then(|b| b.format),
                    slots: beat.as_ref().and_then(|b| b.slots),
                    name: c.name,
                    pending: c.pending as u64,
                    idle_ms: c.idle as u64,
                };
                let silent_for = worker.alive_ms_ago.unwrap_or(worker.idle_ms);
                let lease = beat.as_ref().and_then(|b| b.lease_ms);
                let gone_after = lease.map_or(GONE_AFTER_MS, |lease| lease * GONE_AFTER_LEASES);
                // Alive: heard from within a lease or so.
                if silent_for <= lease.map_or(GONE_AFTER_MS, |lease| lease * 2) {
                    live_slots += worker.slots.unwrap_or(1);
                }
                (worker.pending > 0 || silent_for <= gone_after).then_some(worker)
            })
            .collect(),
        Err(err) if crate::broker::is_missing_group(&err) => Vec::new(),
        Err(err) => return Err(err),
    };
    Ok(RemoteSnapshot {
        live_slots,
        stream_length,
        pending,
        redeliveries: redeliveries.unwrap_or(0),
        workers,
        ..RemoteSnapshot::default()
    })
}
