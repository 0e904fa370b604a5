//! Settling a job in Redis: its reply pushed (with the reply list's expiry
//! renewed) and its entry acknowledged and deleted, all in one `MULTI`, so
//! that a job is never acknowledged without its answer, nor answered and
//! left pending.

use offload::broker::keys;
use redis::{Connection, RedisResult};

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
pub(crate) fn settle(conn: &mut Connection, jobs: &[Settle]) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for job in jobs {
        if let Some((list, text)) = &job.reply {
            pipe.cmd("RPUSH").arg(list).arg(text).ignore();
            pipe.cmd("EXPIRE").arg(list).arg(keys::REPLY_TTL_S).ignore();
        }
        pipe.cmd("XACK")
            .arg(keys::JOBS)
            .arg(keys::GROUP)
            .arg(&job.entry)
            .ignore();
        pipe.cmd("XDEL").arg(keys::JOBS).arg(&job.entry).ignore();
    }
    pipe.query(conn)
}
