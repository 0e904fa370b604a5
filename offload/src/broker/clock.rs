//! [`BrokerClock`]: the one clock that every server and worker reads
//! deadlines on, the broker's (`TIME`), so that a machine whose own clock
//! is off by seconds still agrees with the others on when a job expires.
//!
//! Each process measures the broker's clock against its own wall clock: it
//! notes its own time before and after a `TIME` round trip and takes the
//! broker's answer to stand for the middle of the two, so the error is at
//! most half the round trip. The difference (the offset) is kept, refreshed
//! at every measurement, and added to the local wall clock whenever the
//! broker's time is wanted, which costs no round trip.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Connection, RedisResult};

/// Past this, a process logs that its clock disagrees with the broker's:
/// everything still works, but the machine's clock wants fixing.
pub const OFFSET_WARNING_MS: i64 = 1_000;

/// The broker's clock as this process estimates it.
#[derive(Debug, Default)]
pub struct BrokerClock {
    /// The broker's time minus this machine's, in ms.
    offset_ms: AtomicI64,
    /// Whether it was measured at least once (else the offset is 0).
    measured: AtomicBool,
}

impl BrokerClock {
    /// Asks the broker for its time on `conn` and keeps the offset; returns
    /// it (ms, the broker's clock minus this machine's).
    ///
    /// # Errors
    ///
    /// The broker's or the network's error; the offset stays as it was.
    pub fn measure(&self, conn: &mut Connection) -> RedisResult<i64> {
        let before = local_us();
        let (seconds, micros): (i64, i64) = redis::cmd("TIME").query(conn)?;
        let after = local_us();
        let broker_us = seconds.saturating_mul(1_000_000).saturating_add(micros);
        let offset_ms = (broker_us - (before + (after - before) / 2)) / 1_000;
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        self.measured.store(true, Ordering::Release);
        Ok(offset_ms)
    }

    /// The broker's clock minus this machine's, in ms (0 until measured).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Whether the offset was measured at least once.
    pub fn is_measured(&self) -> bool {
        self.measured.load(Ordering::Acquire)
    }

    /// The broker's time now, in Unix ms, without asking it.
    pub fn now_ms(&self) -> u64 {
        let local_ms = local_us() / 1_000;
        u64::try_from(local_ms.saturating_add(self.offset_ms())).unwrap_or(0)
    }
}

/// This machine's wall clock, in µs since the Unix epoch.
fn local_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before any measurement the broker's clock is this machine's.
    #[test]
    fn unmeasured_is_the_local_clock() {
        let clock = BrokerClock::default();
        assert!(!clock.is_measured());
        assert_eq!(clock.offset_ms(), 0);
        let local = u64::try_from(local_us() / 1_000).unwrap();
        assert!(clock.now_ms().abs_diff(local) < 1_000);
    }

    /// A stored offset moves the estimate by that much.
    #[test]
    fn the_offset_is_added() {
        let clock = BrokerClock::default();
        clock.offset_ms.store(-20_000, Ordering::Relaxed);
        let local = u64::try_from(local_us() / 1_000).unwrap();
        let shifted = clock.now_ms();
        assert!(
            (local - shifted).abs_diff(20_000) < 1_000,
            "{local} {shifted}"
        );
    }
}
