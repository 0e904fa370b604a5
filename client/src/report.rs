//! The result of a run, and the figures derived from it: throughput, the
//! achieved rate, latency percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Amount, Config};
use crate::stats::Stats;
use crate::tally::Tally;

/// An open loop is reported short when it achieves less than this share of
/// the asked rate.
pub const RATE_SHORTFALL: f64 = 0.95;

/// What one run saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// The settings it ran with.
    pub config: Config,
    /// What the threads saw, merged.
    pub stats: Stats,
    /// From the end of the warmup to the last thread's end: the original's
    /// second line.
    pub elapsed: Duration,
    /// From the end of the warmup to the actual start of the last measured
    /// request: longer than the schedule when requests went out late.
    pub send_span: Duration,
    /// Whether Ctrl-C stopped the run early: the figures cover the requests
    /// made until then.
    pub interrupted: bool,
}

/// A histogram summed up, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spectrum {
    /// Values recorded.
    pub count: u64,
    /// The smallest.
    pub min: u64,
    /// The mean.
    pub mean: f64,
    /// The standard deviation.
    pub stdev: f64,
    /// The median.
    pub p50: u64,
    /// The 75th percentile.
    pub p75: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p99_9: u64,
    /// The 99.99th percentile.
    pub p99_99: u64,
    /// The largest.
    pub max: u64,
}

/// How an open loop kept to its rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateCheck {
    /// Requests per second asked for.
    pub target: f64,
    /// Requests per second made.
    pub achieved: f64,
    /// Whether `achieved` fell below [`RATE_SHORTFALL`] of `target`.
    pub short: bool,
}

impl Spectrum {
    /// Sums up a histogram; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Spectrum> {
        if h.is_empty() {
            return None;
        }
        Some(Spectrum {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            stdev: h.stdev(),
            p50: h.value_at_quantile(0.50),
            p75: h.value_at_quantile(0.75),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        })
    }
}

impl Report {
    /// The original's first line: the requests planned (`threads ×
    /// (total / threads)`) for a request count, the requests measured for a
    /// duration or an interrupted run. Each of them is counted as ok, wrong
    /// or an error: they add up to this.
    pub fn total_requests(&self) -> u64 {
        match self.config.planned_requests() {
            Some(planned) if !self.interrupted => planned,
            _ => self.tally().counts.sent,
        }
    }

    /// The counts of the measured requests.
    pub fn tally(&self) -> Tally {
        self.stats.tally()
    }

    /// Measured requests per second (requests actually sent).
    pub fn throughput(&self) -> f64 {
        let counts = self.tally().counts;
        per_second(counts.sent - counts.unsent, self.elapsed)
    }

    /// For an open loop, the rate asked and the rate made: the measured
    /// requests over the time their sending took, or over the time the
    /// schedule spans if that is longer (requests sent on time).
    pub fn rate_check(&self) -> Option<RateCheck> {
        let target = self.config.rate?;
        let counts = self.tally().counts;
        let sent = counts.sent - counts.unsent;
        let scheduled = match self.config.amount {
            Amount::Duration(length) => length,
            Amount::Requests(_) => Duration::from_secs_f64(sent as f64 / target),
        };
        let achieved = per_second(sent, scheduled.max(self.send_span));
        Some(RateCheck {
            target,
            achieved,
            short: achieved < target * RATE_SHORTFALL,
        })
    }

    /// Whether every request, warmup included, was answered right, and no
    /// reply came that was not asked for.
    pub fn all_right(&self) -> bool {
        self.tally().all_right() && self.stats.warmup.all_right() && self.stats.extra.count == 0
    }
}

/// `count / elapsed`, 0 for no time.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    /// The spectrum reads the histogram's percentiles; an empty one has
    /// none.
    #[test]
    fn spectrum_of_histogram() {
        assert_eq!(Spectrum::of(&histogram()), None);
        let mut h = histogram();
        for v in 1..=1000 {
            h.record(v).expect("in range");
        }
        let s = Spectrum::of(&h).expect("not empty");
        assert_eq!((s.count, s.min, s.max), (1000, 1, 1000));
        assert_eq!((s.p50, s.p90, s.p99), (500, 900, 990));
        assert!((s.mean - 500.5).abs() < 0.01);
    }

    /// An interrupted run's total is the requests made; an extra reply or a
    /// request never sent fails the run, and never-sent requests are not
    /// throughput.
    #[test]
    fn totals_and_verdict() {
        let mut stats = Stats::default();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let kind = stats.kinds.entry(crate::job::JobKind::Sumn).or_default();
        for _ in 0..30 {
            kind.tally.add(&crate::outcome::Outcome::Right);
        }
        let mut report = Report {
            config: Config::seed(2),
            stats,
            elapsed: Duration::from_secs(1),
            send_span: Duration::ZERO,
            interrupted: false,
        };
        assert_eq!(report.total_requests(), 1000);
        assert!(report.all_right());
        report.interrupted = true;
        assert_eq!(report.total_requests(), 30);
        report.stats.extra.count = 1;
        assert!(!report.all_right());
        report.stats.extra.count = 0;
        let refused = crate::outcome::Failure::new(crate::outcome::IoKind::ConnectRefused, "no");
        report
            .stats
            .record_unsent(crate::job::Job::Sumn(1), addr, &refused);
        assert!(!report.all_right());
        assert_eq!(report.tally().counts.sent, 31);
        assert_eq!(report.throughput(), 30.0);
    }

    /// The achieved rate of a duration run is counted over the duration.
    #[test]
    fn rate_checked() {
        let mut config = Config::seed(1);
        config.amount = Amount::Duration(Duration::from_secs(2));
        config.rate = Some(100.0);
        let report = Report {
            config,
            stats: Stats::default(),
            elapsed: Duration::from_millis(2100),
            send_span: Duration::ZERO,
            interrupted: false,
        };
        let check = report.rate_check().expect("open loop");
        assert_eq!(check.achieved, 0.0);
        assert!(check.short);
        assert_eq!(report.total_requests(), 0);
        // 200 requests sent on time over 2 s make the rate; sent over 4 s
        // they fall short.
        let mut stats = Stats::default();
        let mut tally = crate::tally::Tally::default();
        for _ in 0..200 {
            tally.add(&crate::outcome::Outcome::Right);
        }
        let kind = stats.kinds.entry(crate::job::JobKind::Sumn).or_default();
        kind.tally = tally;
        let on_time = Report {
            stats,
            send_span: Duration::from_millis(1990),
            ..report
        };
        assert!(!on_time.rate_check().expect("open loop").short);
        let late = Report {
            send_span: Duration::from_secs(4),
            ..on_time
        };
        let check = late.rate_check().expect("open loop");
        assert_eq!(check.achieved, 50.0);
        assert!(check.short);
    }
}
