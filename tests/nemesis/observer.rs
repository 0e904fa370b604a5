//! The broker as the checker sees it: a thread in the `ctl` host that asks
//! the sentinels for the primary every [`SAMPLE_EVERY`] and reads, on the
//! primary, its clock, the jobs stream's length and oldest entry, and the
//! group's pending list (count and oldest entry). An entry id is the
//! broker's clock at `XADD` (`<ms>-<seq>`), so its age is the broker's
//! `TIME` minus that.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::cluster::{primary_by, redis_conn, text};
use crate::netns::enter;
use crate::timeline::{Clock, SAMPLE_EVERY};

/// The jobs stream and its group (the default prefix).
const STREAM: &str = "ysum:jobs";
const GROUP: &str = "ysum:workers";

/// One reading of the broker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// On the run's timeline.
    pub(crate) at_ms: f64,
    /// The primary the sentinels named, if any answered.
    pub(crate) primary: Option<String>,
    /// Whether the primary answered every query.
    pub(crate) reachable: bool,
    /// Entries in the stream.
    pub(crate) stream: u64,
    /// Age of its oldest entry, on the broker's clock.
    pub(crate) oldest_entry_ms: Option<u64>,
    /// Entries delivered and not acknowledged.
    pub(crate) pending: u64,
    /// Age of the oldest of them.
    pub(crate) oldest_pending_ms: Option<u64>,
}

/// The sampling thread.
#[derive(Debug)]
pub(crate) struct Observer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

impl Observer {
    /// Starts sampling from namespace `ns`, asking `sentinels`.
    pub(crate) fn start(ns: String, sentinels: Vec<SocketAddr>, clock: Clock) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("observer".into())
            .spawn(move || {
                enter(&ns);
                let mut samples = Vec::new();
                let mut conn: Option<(SocketAddr, redis::Connection)> = None;
                while !stopped.load(Ordering::Acquire) {
                    let next = std::time::Instant::now() + SAMPLE_EVERY;
                    samples.push(sample(&sentinels, &mut conn, clock));
                    thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
                }
                samples
            })
            .expect("spawn the observer");
        Observer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; every sample taken.
    pub(crate) fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take().expect("not finished yet");
        thread.join().expect("the observer panicked")
    }
}

impl Drop for Observer {
    /// Stops the thread if the run ended early (a panic): it would go on
    /// asking a bed that is gone.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// One sample; `conn` is kept to the primary between samples.
fn sample(
    sentinels: &[SocketAddr],
    conn: &mut Option<(SocketAddr, redis::Connection)>,
    clock: Clock,
) -> Sample {
    let at_ms = clock.now_ms();
    let mut sample = Sample {
        at_ms,
        primary: None,
        reachable: false,
        stream: 0,
        oldest_entry_ms: None,
        pending: 0,
        oldest_pending_ms: None,
    };
    let Some(primary) = sentinels
        .iter()
        .find_map(|&s| primary_by(s))
        .map(SocketAddr::from)
    else {
        return sample;
    };
    sample.primary = Some(primary.to_string());
    if conn.as_ref().is_none_or(|(addr, _)| *addr != primary) {
        *conn = redis_conn(primary).map(|c| (primary, c));
    }
    let Some((_, c)) = conn.as_mut() else {
        return sample;
    };
    match read(c) {
        Some((stream, oldest_entry_ms, pending, oldest_pending_ms)) => {
            sample.reachable = true;
            sample.stream = stream;
            sample.oldest_entry_ms = oldest_entry_ms;
            sample.pending = pending;
            sample.oldest_pending_ms = oldest_pending_ms;
        }
        None => *conn = None,
    }
    sample
}

type Reading = (u64, Option<u64>, u64, Option<u64>);

/// `TIME`, `XLEN`, `XRANGE … COUNT 1` and `XPENDING` (summary) on `conn`.
fn read(conn: &mut redis::Connection) -> Option<Reading> {
    let (time, stream, first): (Vec<String>, u64, redis::Value) = redis::pipe()
        .cmd("TIME")
        .cmd("XLEN")
        .arg(STREAM)
        .cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(conn)
        .ok()?;
    let now_ms =
        time.first()?.parse::<u64>().ok()? * 1000 + time.get(1)?.parse::<u64>().ok()? / 1000;
    let age = |id: &str| id_ms(id).map(|at| now_ms.saturating_sub(at));
    let oldest_entry = match first {
        redis::Value::Array(entries) => match entries.first() {
            Some(redis::Value::Array(entry)) => {
                entry.first().and_then(text).and_then(|id| age(&id))
            }
            _ => None,
        },
        _ => None,
    };
    let pending: redis::RedisResult<redis::Value> =
        redis::cmd("XPENDING").arg(STREAM).arg(GROUP).query(conn);
    let (count, oldest_pending) = match pending {
        Ok(redis::Value::Array(summary)) => {
            let count = match summary.first() {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            let oldest = summary.get(1).and_then(text).and_then(|id| age(&id));
            (count, oldest)
        }
        Err(err) if err.code() == Some("NOGROUP") => (0, None),
        _ => return None,
    };
    Some((stream, oldest_entry, count, oldest_pending))
}

/// The broker-clock milliseconds of a stream id `<ms>-<seq>`.
fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stream ids carry their time in ms before the dash.
    #[test]
    fn ids_carry_their_time() {
        assert_eq!(id_ms("1767225600123-4"), Some(1_767_225_600_123));
        assert_eq!(id_ms("x-1"), None);
    }
}
