//! The lease thread: renews the leases of the jobs this worker runs, and
//! records in the `seen` hash ([`Keys::seen`]) that the worker is alive.
//!
//! It runs beside the jobs, never on their threads, so a job that keeps a
//! core busy cannot starve it. A renewal is `XCLAIM … 0 … JUSTID` by the
//! owner, which resets the entry's idle time without counting a delivery;
//! it runs in a script that first checks that the entry is still this
//! worker's, so a worker that was stopped (SIGSTOP, a long pause) and whose
//! job was taken over meanwhile does not take it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use offload::broker::{unix_ms_now, Broker, Keys, COMMAND_TIMEOUT};
use redis::{Connection, RedisResult, Script};

use crate::running::Running;

/// Renews the entries in `ARGV[3..]` that are still pending with consumer
/// `ARGV[2]` of group `ARGV[1]`; returns those.
const RENEW: &str = r"
local owned = {}
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if entry[1] ~= nil and entry[1][2] == ARGV[2] then
    owned[#owned + 1] = ARGV[i]
  end
end
if #owned > 0 then
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(owned) do args[#args + 1] = id end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return owned
";

/// Renews every `every` until `stop` is raised.
pub(crate) fn run(
    broker: &Broker,
    name: &str,
    running: &Running,
    every: Duration,
    stop: &AtomicBool,
) {
    let script = Script::new(RENEW);
    let mut conn: Option<Connection> = None;
    let mut lost: Vec<String> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(every);
        if conn.is_none() {
            conn = broker.connect(COMMAND_TIMEOUT).ok();
        }
        let Some(live) = conn.as_mut() else { continue };
        let entries = running.entries();
        let keys = broker.keys();
        let renewed = heartbeat(live, keys, name).and_then(|()| {
            if entries.is_empty() {
                Ok(Vec::new())
            } else {
                renew(&script, live, keys, name, &entries)
            }
        });
        match renewed {
            Ok(owned) => {
                // An entry settled since `entries` was read is no longer
                // pending, but it was not taken over either.
                let taken_over = entries
                    .iter()
                    .filter(|e| !owned.contains(e) && running.contains(e));
                for entry in taken_over {
                    if !lost.contains(entry) {
                        // Its result is still sent: if it comes first, the
                        // client has its answer sooner; if not, the server
                        // drops it.
                        tracing::warn!(entry = %entry, "job taken over by another worker; still running it");
                        lost.push(entry.clone());
                    }
                }
                lost.retain(|e| entries.contains(e));
            }
            Err(err) => {
                tracing::debug!(%err, "could not renew leases");
                conn = None;
            }
        }
    }
}

/// Records that this worker is alive now, for the servers' `stats`.
fn heartbeat(conn: &mut Connection, keys: &Keys, name: &str) -> RedisResult<()> {
    redis::cmd("HSET")
        .arg(keys.seen())
        .arg(name)
        .arg(unix_ms_now())
        .exec(conn)
}

fn renew(
    script: &Script,
    conn: &mut Connection,
    keys: &Keys,
    name: &str,
    entries: &[String],
) -> RedisResult<Vec<String>> {
    let mut call = script.key(keys.jobs());
    call.arg(keys.group()).arg(name);
    for entry in entries {
        call.arg(entry);
    }
    call.invoke(conn)
}
