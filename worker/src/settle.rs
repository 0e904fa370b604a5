//! Settling a job in Redis: its reply pushed (with the reply list's expiry
//! renewed) and its entry acknowledged and deleted, all in one `MULTI`, so
//! that a job is never acknowledged without its answer, nor answered and
//! left pending.

use offload::broker::{Keys, REPLY_TTL_S};
use redis::streams::{StreamId, StreamReadReply};
use redis::{Connection, RedisResult, Value};

/// One job to settle.
#[derive(Debug, Clone)]
pub(crate) struct Settle {
    /// The stream entry id.
    pub(crate) entry: String,
    /// The reply list and the reply, or `None` to acknowledge without a
    /// reply (a job whose deadline passed: its server has answered it).
    pub(crate) reply: Option<(String, String)>,
}

/// Settles every job in one `MULTI … EXEC`, one round trip.
///
/// Deleting the entry once acknowledged keeps the stream as long as the jobs
/// not yet settled, and nothing longer: the stream is never trimmed, so no
/// pending entry can be lost to a trim.
pub(crate) fn settle(conn: &mut Connection, keys: &Keys, jobs: &[Settle]) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    add_settlements(&mut pipe, keys, jobs);
    pipe.query(conn)
}

/// The commands that settle `jobs`, added to `pipe`.
fn add_settlements(pipe: &mut redis::Pipeline, keys: &Keys, jobs: &[Settle]) {
    for job in jobs {
        if let Some((list, text)) = &job.reply {
            // Only a reply list of this deployment: whatever an entry
            // names, a worker writes nowhere else.
            debug_assert!(keys.is_reply_list(list), "{list}");
            pipe.cmd("RPUSH").arg(list).arg(text).ignore();
            pipe.cmd("EXPIRE").arg(list).arg(REPLY_TTL_S).ignore();
        }
        pipe.cmd("XACK")
            .arg(keys.jobs())
            .arg(keys.group())
            .arg(&job.entry)
            .ignore();
        pipe.cmd("XDEL").arg(keys.jobs()).arg(&job.entry).ignore();
    }
}

/// How idle a left entry is made: more than any worker's lease, so that the
/// next `XAUTOCLAIM` of any worker takes it (a day).
const LEFT_IDLE_MS: u64 = 86_400_000;

/// Leaves each entry of `left` (with the times it was delivered) for
/// another worker: it stays pending with consumer `name`, but idle for
/// longer than any lease and with its delivery undone (`XCLAIM … IDLE …
/// RETRYCOUNT … JUSTID`), so the next worker to claim expired leases takes
/// it, and leaving it never brings it nearer to `worker-lost`.
pub(crate) fn leave(
    conn: &mut Connection,
    keys: &Keys,
    name: &str,
    left: &[(String, u64)],
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    for (entry, delivered) in left {
        pipe.cmd("XCLAIM")
            .arg(keys.jobs())
            .arg(keys.group())
            .arg(name)
            .arg(0)
            .arg(entry)
            .arg("IDLE")
            .arg(LEFT_IDLE_MS)
            .arg("RETRYCOUNT")
            .arg(delivered.saturating_sub(1))
            .arg("JUSTID")
            .ignore();
    }
    pipe.query(conn)
}

/// Settles `jobs` and, in the same round trip, reads up to `count` new
/// entries for consumer `name` without waiting (`XREADGROUP … COUNT count`,
/// no `BLOCK`): for the thread that has just finished a job, whose freed
/// slot the read is for. The outer error says the settling failed (nothing
/// known to be settled); the inner one that only the read did.
pub(crate) fn settle_then_read(
    conn: &mut Connection,
    keys: &Keys,
    jobs: &[Settle],
    name: &str,
    count: usize,
) -> RedisResult<RedisResult<Vec<StreamId>>> {
    // The transaction by hand, so that the read after it is in the same
    // pipeline but not in the transaction: a failed read must not hide that
    // the jobs were settled.
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI").ignore();
    add_settlements(&mut pipe, keys, jobs);
    pipe.cmd("EXEC");
    pipe.cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys.group())
        .arg(name)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(keys.jobs())
        .arg(">");
    // Errors are looked at one by one below.
    pipe.ignore_errors();
    let (exec, read): (Value, Value) = pipe.query(conn)?;
    match exec {
        Value::Array(replies) => {
            if let Some(Value::ServerError(err)) =
                replies.iter().find(|r| matches!(r, Value::ServerError(_)))
            {
                return Err(err.clone().into());
            }
        }
        Value::ServerError(err) => return Err(err.into()),
        other => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "unexpected EXEC reply",
                format!("{other:?}"),
            )))
        }
    }
    Ok(entries(read))
}

/// The entries of an `XREADGROUP` reply (none for nil).
pub(crate) fn entries(read: Value) -> RedisResult<Vec<StreamId>> {
    if let Value::ServerError(err) = read {
        return Err(err.into());
    }
    let reply: Option<StreamReadReply> = redis::from_redis_value(read)?;
    Ok(reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect())
}
