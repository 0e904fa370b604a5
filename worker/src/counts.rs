//! [`Counts`]: what this worker has done and met, counted where it happens
//! (the reader, the lease thread, the replier, the threads that finish
//! jobs) and read by `/metrics` and the line logged at the stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use offload::broker::wire::WireError;
use offload::broker::Every;

/// This worker's counters; one per process, shared by every thread.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Entries refused, by why.
    pub(crate) refused: Refused,
    /// Entries in a newer format, left for a worker that reads it.
    pub(crate) left: Left,
    /// Lease renewals (one per job per renewal).
    pub(crate) leases_renewed: AtomicU64,
    /// Jobs this worker took over from a worker whose lease ran out.
    pub(crate) taken_over: AtomicU64,
    /// Jobs taken over by another worker while this one still ran them
    /// (it was paused or cut off longer than the lease).
    pub(crate) lost_to_another: AtomicU64,
    /// Jobs cut short because their server withdrew them.
    pub(crate) withdrawn: AtomicU64,
    /// Jobs answered `expired`: taken after their deadline.
    pub(crate) expired: AtomicU64,
    /// Jobs answered `worker-lost`: delivered too often, finished by none.
    pub(crate) given_up: AtomicU64,
    /// Replies abandoned because the broker did not take them before their
    /// deadline.
    pub(crate) replies_abandoned: AtomicU64,
    /// Commands to the broker that failed (connection lost, refused,
    /// timed out), on any thread.
    pub(crate) broker_errors: AtomicU64,
    /// Whether the reader holds a working connection to the broker now.
    connected: AtomicBool,
}

impl Counts {
    /// Counts one failed broker command; `reader` says whether it was the
    /// reader's connection, the one readiness looks at.
    pub(crate) fn broker_failed(&self, reader: bool) {
        self.broker_errors.fetch_add(1, Ordering::Relaxed);
        if reader {
            self.connected.store(false, Ordering::Relaxed);
        }
    }

    /// The reader has a working connection again.
    pub(crate) fn reader_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    /// Whether the reader holds a working connection now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Entries refused without being run or answered, by why.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Not a job (a field missing or unreadable).
    pub(crate) malformed: AtomicU64,
    /// Signing is on, and the MAC is missing or wrong.
    pub(crate) forged: AtomicU64,
    /// The reply list named is not one of this deployment's.
    pub(crate) foreign_key: AtomicU64,
    /// At most one log line per second for refused entries, however many
    /// an attacker writes.
    logged: Every,
}

impl Default for Refused {
    fn default() -> Self {
        Refused {
            malformed: AtomicU64::new(0),
            forged: AtomicU64::new(0),
            foreign_key: AtomicU64::new(0),
            logged: Every::new(Duration::from_secs(1)),
        }
    }
}

impl Refused {
    /// Counts and logs one refused entry.
    pub(crate) fn count(&self, entry: &str, err: &WireError) {
        let counter = match err {
            WireError::Unsigned | WireError::BadMac => &self.forged,
            _ => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.logged.pass() {
            tracing::error!(entry, %err, held_back, "refused an entry: acknowledged and dropped, never run");
        }
    }

    /// Counts and logs an entry whose reply list is not one of ours.
    pub(crate) fn count_foreign(&self, entry: &str, list: &str) {
        self.foreign_key.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.logged.pass() {
            tracing::error!(
                entry,
                reply = %list.chars().take(64).collect::<String>(),
                held_back,
                "refused an entry whose reply list is not under the prefix: acknowledged and dropped, nothing written"
            );
        }
    }
}

/// Entries left for another worker because they are in a format newer
/// than this one reads (a fleet in the middle of an upgrade).
#[derive(Debug, Default)]
pub(crate) struct Left {
    /// How many times an entry was left.
    pub(crate) entries: AtomicU64,
    /// The formats already logged: each is logged once, however many
    /// entries come in it.
    logged: Mutex<Vec<u32>>,
}

impl Left {
    /// Counts one entry left, and logs the first of each format.
    pub(crate) fn count(&self, entry: &str, format: u32, newest: u32) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if !logged.contains(&format) {
            logged.push(format);
            tracing::warn!(
                entry,
                format,
                newest,
                "a job in a format newer than this worker reads: left for a worker that reads it \
                 (upgrade this worker; see docs/operations.md, \"Upgrades\"); logged once per format"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection follows the reader; errors count on any thread.
    #[test]
    fn connection_and_errors() {
        let counts = Counts::default();
        assert!(!counts.is_connected());
        counts.reader_connected();
        counts.broker_failed(false);
        assert!(counts.is_connected());
        counts.broker_failed(true);
        assert!(!counts.is_connected());
        assert_eq!(Counts::get(&counts.broker_errors), 2);
    }

    /// Each left entry counts; refusals count by why.
    #[test]
    fn left_and_refused_count() {
        let counts = Counts::default();
        for _ in 0..3 {
            counts.left.count("1-0", 3, 2);
        }
        assert_eq!(Counts::get(&counts.left.entries), 3);
        counts.refused.count("1-0", &WireError::BadMac);
        counts
            .refused
            .count("2-0", &WireError::Missing { field: "job" });
        counts.refused.count_foreign("3-0", "other:key");
        assert_eq!(Counts::get(&counts.refused.forged), 1);
        assert_eq!(Counts::get(&counts.refused.malformed), 1);
        assert_eq!(Counts::get(&counts.refused.foreign_key), 1);
    }
}
