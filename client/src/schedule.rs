//! When each request of one thread should start.
//!
//! In a closed loop a request starts when the thread is ready for it. In an
//! open loop (`--rate`) request k of a thread is due at `first + k ·
//! interval`, whatever happened to the ones before; a request sent late is
//! measured from the time it was due, so that a server stall shows in the
//! percentiles instead of being hidden (what Gil Tene named "coordinated
//! omission", and wrk2 corrects the same way).

use std::time::{Duration, Instant};

/// One thread's request schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Closed or open loop.
    pacing: Pacing,
    /// Requests due before this are warmup.
    measure_from: Instant,
    /// When to stop.
    limit: Limit,
    /// Requests handed out so far.
    taken: u64,
    /// Of those, the measured ones.
    taken_measured: u64,
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// The next request starts when asked for.
    Closed,
    /// Request k is due at `first + k · interval`.
    Open {
        /// When the first request is due.
        first: Instant,
        /// The time between two requests.
        interval: Duration,
    },
}

/// When a thread stops starting requests.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this many measured requests.
    Requests(u64),
    /// At this instant: requests due after it are not sent, and neither
    /// are those due before it but still unsent when it comes (an open loop
    /// that fell behind; its achieved rate shows the shortfall).
    Until(Instant),
}

/// A request handed out by the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When it is (or was) due: the start latency is measured from.
    pub due: Instant,
    /// Whether it counts in the figures (false during the warmup).
    pub measured: bool,
}

impl Schedule {
    /// A schedule whose measured part begins at `measure_from`.
    pub fn new(pacing: Pacing, measure_from: Instant, limit: Limit) -> Schedule {
        Schedule {
            pacing,
            measure_from,
            limit,
            taken: 0,
            taken_measured: 0,
        }
    }

    /// Whether this is an open loop.
    pub fn is_open(&self) -> bool {
        matches!(self.pacing, Pacing::Open { .. })
    }

    /// When the next request is due (`now` for a closed loop), or `None`
    /// when the schedule is done.
    pub fn peek(&self, now: Instant) -> Option<Instant> {
        let due = match self.pacing {
            Pacing::Closed => now,
            Pacing::Open { first, interval } => first + interval.mul_f64(self.taken as f64),
        };
        let done = match self.limit {
            Limit::Requests(n) => due >= self.measure_from && self.taken_measured >= n,
            Limit::Until(end) => due >= end || now >= end,
        };
        (!done).then_some(due)
    }

    /// The measured requests not yet handed out, for a request count;
    /// `None` for a duration, which plans no number.
    pub fn remaining_measured(&self) -> Option<u64> {
        match self.limit {
            Limit::Requests(n) => Some(n.saturating_sub(self.taken_measured)),
            Limit::Until(_) => None,
        }
    }

    /// Hands out the next request, due or not, or `None` when the schedule
    /// is done.
    pub fn take(&mut self, now: Instant) -> Option<Slot> {
        let due = self.peek(now)?;
        let measured = due >= self.measure_from;
        self.taken += 1;
        if measured {
            self.taken_measured += 1;
        }
        Some(Slot { due, measured })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open loop hands out requests at fixed times, warmup first, and
    /// stops at the end of the duration, even for requests still due.
    #[test]
    fn open_loop_times() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let pacing = Pacing::Open {
            first: t0,
            interval: ms(10),
        };
        let end = t0 + ms(50);
        let mut schedule = Schedule::new(pacing, t0 + ms(20), Limit::Until(end));
        let late = t0 + ms(45);
        let slots: Vec<Slot> = std::iter::from_fn(|| schedule.take(late)).collect();
        let dues: Vec<Duration> = slots.iter().map(|s| s.due - t0).collect();
        assert_eq!(dues, [ms(0), ms(10), ms(20), ms(30), ms(40)]);
        let measured: Vec<bool> = slots.iter().map(|s| s.measured).collect();
        assert_eq!(measured, [false, false, true, true, true]);
        assert!(schedule.is_open());
        let mut behind = Schedule::new(pacing, t0, Limit::Until(end));
        assert!(behind.take(t0 + ms(10)).is_some());
        assert_eq!(behind.take(end), None, "due, but the time is up");
    }

    /// A request count limits the measured requests only; the warmup comes
    /// on top.
    #[test]
    fn request_limit_after_warmup() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let pacing = Pacing::Open {
            first: t0,
            interval: ms(10),
        };
        let mut schedule = Schedule::new(pacing, t0 + ms(15), Limit::Requests(3));
        let count = std::iter::from_fn(|| schedule.take(t0)).count();
        assert_eq!(count, 2 + 3);
    }

    /// A closed loop is due at once, and counts its measured requests.
    #[test]
    fn closed_loop() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(Pacing::Closed, t0, Limit::Requests(2));
        assert!(!schedule.is_open());
        let now = Instant::now();
        assert_eq!(
            schedule.take(now),
            Some(Slot {
                due: now,
                measured: true
            })
        );
        assert_eq!(schedule.remaining_measured(), Some(1));
        assert!(schedule.take(now).is_some());
        assert_eq!(schedule.take(now), None);
        assert_eq!(schedule.remaining_measured(), Some(0));
    }
}
