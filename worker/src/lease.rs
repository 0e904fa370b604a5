//! The lease thread: every quarter lease it measures the broker's clock,
//! writes this worker's [`Heartbeat`] in the `seen` hash, and renews the
//! leases of the jobs this worker holds; now and then it also removes from
//! the group the consumers of workers that are gone.
//!
//! It runs beside the jobs, never on their threads, so a job that keeps a
//! core busy cannot starve it. A renewal is `XCLAIM … 0 … JUSTID` by the
//! owner, which resets the entry's idle time without counting a delivery;
//! it runs in a script that first looks at each entry: still this worker's
//! (renewed), another worker's (taken over while this one was paused: it
//! is not taken back), or no longer pending (settled meanwhile by the
//! thread that finished it: nothing to say). An entry still this worker's
//! but gone from the stream was withdrawn by its server (its client went
//! away): the job is cut short here.

use std::time::Duration;

use offload::broker::{Broker, Every, Heartbeat, Keys, COMMAND_TIMEOUT, OFFSET_WARNING_MS};
use redis::{Connection, RedisResult, Script};

use crate::counts::Counts;
use crate::running::Running;
use crate::stop::Stop;

/// Looks at the entries in `ARGV[3..]` for consumer `ARGV[2]` of group
/// `ARGV[1]` on stream `KEYS[1]`; renews those still pending with it.
/// Returns three lists: renewed, taken over (pending with another
/// consumer), withdrawn (pending with it, but deleted from the stream).
const RENEW: &str = r"
local owned, taken, withdrawn = {}, {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if entry[1] ~= nil then
    if entry[1][2] ~= ARGV[2] then
      taken[#taken + 1] = id
    elseif #redis.call('XRANGE', KEYS[1], id, id) == 0 then
      withdrawn[#withdrawn + 1] = id
    else
      owned[#owned + 1] = id
    end
  end
end
if #owned > 0 then
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(owned) do args[#args + 1] = id end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return {owned, taken, withdrawn}
";

/// Removes from group `ARGV[1]` of stream `KEYS[1]` each consumer named in
/// `ARGV[2..]` that holds no entry, and its heartbeat from hash `KEYS[2]`;
/// returns how many it removed. A consumer that holds entries is kept:
/// removing it would drop them.
const FORGET: &str = r"
local removed = 0
for i = 2, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[i])
  if #held == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    removed = removed + 1
  end
end
return removed
";

/// The janitor looks for gone workers every this many ticks.
const JANITOR_EVERY_TICKS: u64 = 40;

/// A worker whose heartbeat is older than this many of its leases is gone.
const GONE_AFTER_LEASES: u64 = 10;

/// What the lease thread knows of this worker.
#[derive(Debug)]
pub(crate) struct Identity<'a> {
    /// Its consumer name.
    pub(crate) name: &'a str,
    /// Its slots.
    pub(crate) slots: usize,
    /// Its lease.
    pub(crate) lease: Duration,
    /// What it counts.
    pub(crate) counts: &'a Counts,
}

/// Renews every `every` until the helpers are released; calls `withdraw`
/// with each entry its server withdrew.
pub(crate) fn run(
    broker: &Broker,
    me: &Identity<'_>,
    running: &Running,
    every: Duration,
    stop: &Stop,
    withdraw: &dyn Fn(&str),
) {
    let renew_script = Script::new(RENEW);
    let forget_script = Script::new(FORGET);
    let skew_logged = Every::new(Duration::from_secs(600));
    let mut conn: Option<Connection> = None;
    let mut generation = broker.generation();
    let mut lost: Vec<String> = Vec::new();
    let mut ticks = 0u64;
    while !stop.helpers_released() {
        // The first heartbeat at once: servers count this worker's slots
        // from it (fair share), and list it in `stats`.
        if ticks > 0 {
            std::thread::sleep(every);
        }
        ticks += 1;
        // Under Sentinel: a switch of primary is seen here within a tick,
        // and every thread of this worker follows it.
        broker.check_primary();
        broker.drop_if_stale(&mut conn, &mut generation);
        if conn.is_none() {
            conn = broker.connect(COMMAND_TIMEOUT).ok();
        }
        let Some(live) = conn.as_mut() else {
            me.counts.broker_failed(false);
            continue;
        };
        let entries = running.entries();
        let looked = heartbeat(live, broker, me, &skew_logged).and_then(|()| {
            if entries.is_empty() {
                Ok(Looked::default())
            } else {
                renew(&renew_script, live, broker.keys(), me.name, &entries)
            }
        });
        match looked {
            Ok(looked) => {
                Counts::add(&me.counts.leases_renewed, looked.renewed);
                Counts::add(&me.counts.withdrawn, looked.withdrawn.len());
                for entry in looked.taken.iter().filter(|e| running.contains(e)) {
                    if !lost.contains(entry) {
                        Counts::add(&me.counts.lost_to_another, 1);
                        // Its result is still sent: if it comes first, the
                        // client has its answer sooner; if not, the server
                        // drops it.
                        tracing::warn!(entry = %entry, "job taken over by another worker; still running it");
                        lost.push(entry.clone());
                    }
                }
                lost.retain(|e| entries.contains(e));
                for entry in &looked.withdrawn {
                    tracing::debug!(entry = %entry, "its server withdrew the job; cutting it short");
                    withdraw(entry);
                }
            }
            Err(err) => {
                me.counts.broker_failed(false);
                tracing::debug!(%err, "could not renew leases");
                conn = None;
                continue;
            }
        }
        if ticks.is_multiple_of(JANITOR_EVERY_TICKS) {
            if let Err(err) = forget_gone(&forget_script, live, broker, me.name) {
                tracing::debug!(%err, "could not look for gone workers");
            }
        }
    }
    // Leaving: a worker that holds nothing leaves the group at once.
    if let Some(live) = conn.as_mut() {
        let _ = forget(&forget_script, live, broker.keys(), &[me.name.to_owned()]);
    }
}

/// Measures the broker's clock, then records that this worker is alive now
/// (on the broker's clock), with what the servers' `stats` show of it.
fn heartbeat(
    conn: &mut Connection,
    broker: &Broker,
    me: &Identity<'_>,
    skew_logged: &Every,
) -> RedisResult<()> {
    let offset_ms = broker.clock().measure(conn)?;
    if offset_ms.abs() > OFFSET_WARNING_MS && skew_logged.pass().is_some() {
        tracing::warn!(
            offset_ms,
            "this machine's clock is off from the broker's by more than a second; \
             deadlines are judged on the broker's, but fix the clock (NTP)"
        );
    }
    let beat = Heartbeat {
        at_ms: broker.clock().now_ms(),
        offset_ms: Some(offset_ms),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        format: Some(broker.format()),
        slots: Some(me.slots as u64),
        lease_ms: Some(u64::try_from(me.lease.as_millis()).unwrap_or(u64::MAX)),
    };
    redis::cmd("HSET")
        .arg(broker.keys().seen())
        .arg(me.name)
        .arg(beat.to_string())
        .exec(conn)
}

/// What the renewal script found.
#[derive(Debug, Default)]
struct Looked {
    renewed: usize,
    taken: Vec<String>,
    withdrawn: Vec<String>,
}

fn renew(
    script: &Script,
    conn: &mut Connection,
    keys: &Keys,
    name: &str,
    entries: &[String],
) -> RedisResult<Looked> {
    let mut call = script.key(keys.jobs());
    call.arg(keys.group()).arg(name);
    for entry in entries {
        call.arg(entry);
    }
    let (owned, taken, withdrawn): (Vec<String>, Vec<String>, Vec<String>) = call.invoke(conn)?;
    Ok(Looked {
        renewed: owned.len(),
        taken,
        withdrawn,
    })
}

/// Removes the consumers of workers whose heartbeat is older than
/// [`GONE_AFTER_LEASES`] of their leases (or who never wrote one and have
/// been idle that long by this worker's lease) and that hold no entry.
fn forget_gone(
    script: &Script,
    conn: &mut Connection,
    broker: &Broker,
    me: &str,
) -> RedisResult<()> {
    let keys = broker.keys();
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys.jobs())
        .arg(keys.group())
        .query(conn)?;
    let seen: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(keys.seen()).query(conn)?;
    let now = broker.clock().now_ms();
    let gone: Vec<String> = consumers
        .consumers
        .into_iter()
        .filter(|c| c.name != me && c.pending == 0)
        .filter(|c| {
            let beat = seen.get(&c.name).and_then(|text| Heartbeat::parse(text));
            let silent_ms = beat
                .as_ref()
                .map_or(c.idle as u64, |b| now.saturating_sub(b.at_ms));
            let lease_ms = beat.and_then(|b| b.lease_ms).unwrap_or(2_000);
            silent_ms > lease_ms * GONE_AFTER_LEASES && (c.idle as u64) > lease_ms
        })
        .map(|c| c.name)
        .collect();
    if !gone.is_empty() {
        let removed = forget(script, conn, keys, &gone)?;
        if removed > 0 {
            tracing::info!(removed, "removed the consumers of workers that are gone");
        }
    }
    Ok(())
}

fn forget(
    script: &Script,
    conn: &mut Connection,
    keys: &Keys,
    names: &[String],
) -> RedisResult<u64> {
    let mut call = script.key(keys.jobs());
    call.key(keys.seen()).arg(keys.group());
    for name in names {
        call.arg(name);
    }
    call.invoke(conn)
}
