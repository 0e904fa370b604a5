//! The run's one timeline and every duration the bed and the checker agree
//! on, in one place.
//!
//! Time zero is when the load starts. The nemesis and the observer read it
//! from this process's monotonic clock; the client writes its history on
//! its own monotonic clock, with the wall-clock time of its start in the
//! header, and [`Clock::place`] places it here (the wall clock moves
//! by NTP slewing at most, far below a millisecond in a run; no process of
//! the checker's side runs under libfaketime).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a job may wait for a worker (`--queue-wait` of the servers).
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// How long a job may run (`--job-timeout` of servers and workers).
pub(crate) const JOB_TIMEOUT: Duration = Duration::from_secs(5);

/// A job's deadline after its request: the longest job deadline.
pub(crate) const DEADLINE: Duration =
    Duration::from_millis(QUEUE_WAIT.as_millis() as u64 + JOB_TIMEOUT.as_millis() as u64);

/// The workers' `--lease`.
pub(crate) const LEASE: Duration = Duration::from_secs(1);

/// An entry in the jobs stream or its pending list older than this, 2 s
/// after a heal, is stale: the longest job deadline. (A lost worker's
/// entry is taken over a lease and a quarter after it last renewed it,
/// well within the deadline; the longest job of the load is a 100 ms
/// sleep.)
pub(crate) const STALE: Duration = DEADLINE;

/// After the heal of a fault that takes the broker away from a server, the
/// time within which the server may still answer `ERR unavailable`: the
/// documented "service resumes by itself within 2 s".
pub(crate) const BROKER_GRACE: Duration = Duration::from_secs(2);

/// After HAProxy is back, or a server is back behind it, the time within
/// which a request may still fail at the client: HAProxy's `rise 2` at
/// `inter 500ms` marks a server up again within 1 s.
pub(crate) const FRONT_GRACE: Duration = Duration::from_secs(1);

/// After a worker is back, the time within which its lost jobs may still
/// be counted against it: a lease and a quarter, rounded up.
pub(crate) const WORKER_GRACE: Duration = Duration::from_secs(2);

/// Throughput must be back within this long after the last heal of a step.
pub(crate) const RECOVERY: Duration = Duration::from_secs(2);

/// The window over which throughput is measured.
pub(crate) const WINDOW: Duration = Duration::from_millis(500);

/// Throughput is back when a window holds at least this share of the
/// baseline's ok answers per window.
pub(crate) const BACK_SHARE: f64 = 0.5;

/// The observer reads the broker this often.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Time zero of a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    zero: Instant,
    zero_unix_ms: f64,
}

impl Clock {
    /// Time zero is now.
    pub(crate) fn start() -> Clock {
        Clock {
            zero: Instant::now(),
            zero_unix_ms: unix_ms(),
        }
    }

    /// Time zero on the wall clock, in Unix milliseconds (to place the
    /// processes' logs, stamped in UTC, on the timeline).
    pub(crate) fn zero_unix_ms(&self) -> f64 {
        self.zero_unix_ms
    }

    /// Milliseconds since time zero.
    pub(crate) fn now_ms(&self) -> f64 {
        self.zero.elapsed().as_secs_f64() * 1000.0
    }

    /// The instant `at` after time zero.
    pub(crate) fn instant(&self, at: Duration) -> Instant {
        self.zero + at
    }

    /// A wall-clock time (Unix ms) as ms since time zero.
    pub(crate) fn place(&self, unix_ms: f64) -> f64 {
        unix_ms - self.zero_unix_ms
    }
}

/// The wall clock, in Unix milliseconds.
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// Milliseconds of a duration, as the timeline counts.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
