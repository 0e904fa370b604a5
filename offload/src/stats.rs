//! Counters and latency histograms that every strategy keeps.
//!
//! Each job ends in one outcome (ok, busy, timeout…); the strategy records it with the time the
//! job waited for a worker and the time it ran. Histograms (hdrhistogram, in
//! microseconds) keep memory fixed however long the server runs.
//! A [`StatsSnapshot`] copies it all into a serde value that the server prints
//! as its `stats` reply.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::buckets::LatencyBuckets;
use crate::error::ApplyError;
use crate::job::JobKind;

pub use crate::apply::RemoteSnapshot;

/// How one job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It answered.
    Ok,
    /// It was refused: no free worker in time.
    Busy,
    /// It ran out of time.
    Timeout,
    /// Its worker process died.
    WorkerLost,
    /// It panicked.
    Panicked,
    /// The strategy was shutting down.
    ShuttingDown,
    /// The process pool could not run it.
    PoolDown,
    /// The broker could not be reached (`remote`).
    Unavailable,
    /// Its client went away first: withdrawn or stopped.
    Cancelled,
}

impl Outcome {
    const COUNT: usize = 9;

    /// The outcome that an `apply` result stands for.
    pub(crate) fn of<T>(result: &Result<T, ApplyError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(ApplyError::Busy { .. }) => Outcome::Busy,
            Err(ApplyError::Timeout { .. } | ApplyError::Expired { .. }) => Outcome::Timeout,
            Err(ApplyError::WorkerLost { .. } | ApplyError::RemoteWorkerLost { .. }) => {
                Outcome::WorkerLost
            }
            Err(ApplyError::JobPanicked { .. }) => Outcome::Panicked,
            Err(ApplyError::ShuttingDown { .. }) => Outcome::ShuttingDown,
            Err(ApplyError::PoolDown { .. }) => Outcome::PoolDown,
            Err(ApplyError::Unavailable { .. }) => Outcome::Unavailable,
            Err(ApplyError::Cancelled { .. }) => Outcome::Cancelled,
        }
    }
}

/// Highest latency a histogram records: one hour, in microseconds. Longer
/// values are clamped to it.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Counts and histograms for one kind of job.
#[derive(Debug)]
struct KindStats {
    outcomes: [u64; Outcome::COUNT],
    queue_wait: Histogram<u64>,
    run: Histogram<u64>,
}

impl KindStats {
    fn new() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("bounds are valid constants")
        };
        KindStats {
            outcomes: [0; Outcome::COUNT],
            queue_wait: histogram(),
            run: histogram(),
        }
    }
}

/// Slots for the kinds: the three real ones and the fault-injection job.
const KIND_SLOTS: usize = 4;

fn slot(kind: JobKind) -> usize {
    match kind {
        JobKind::Sumn => 0,
        JobKind::Prime => 1,
        JobKind::Sleep => 2,
        #[cfg(feature = "fault-injection")]
        JobKind::Panic => 3,
    }
}

/// The live statistics of one strategy, shared by every thread that applies
/// jobs through it.
#[derive(Debug)]
pub(crate) struct Stats {
    kinds: [Mutex<KindStats>; KIND_SLOTS],
    /// Jobs waiting for a worker right now.
    pub(crate) queued: AtomicUsize,
    /// Jobs running right now.
    pub(crate) running: AtomicUsize,
    /// Worker processes started to replace one that ended.
    pub(crate) respawned: AtomicU64,
    /// Fork servers started to replace one that died (`procs`).
    pub(crate) fork_server_restarts: AtomicU64,
    /// Worker processes retired after `--recycle-after` jobs (`procs`).
    pub(crate) recycled: AtomicU64,
    /// Worker processes killed because a job ran past the job timeout.
    pub(crate) killed_timeout: AtomicU64,
    /// Workers alive right now (threads, or processes reported by the fork
    /// server).
    pub(crate) alive: AtomicUsize,
    /// When the strategy started.
    started: Instant,
}

/// The median, 99th percentile and maximum of a latency, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest value recorded.
    pub max: u64,
}

/// Counts by outcome and latencies of one kind of job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindSnapshot {
    /// Jobs that answered.
    pub ok: u64,
    /// Jobs refused as busy.
    pub busy: u64,
    /// Jobs that timed out.
    pub timeout: u64,
    /// Jobs whose worker died.
    pub worker_lost: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs refused during shutdown.
    pub shutting_down: u64,
    /// Jobs that found the process pool broken.
    pub pool_down: u64,
    /// Jobs that could not reach the broker (`remote`).
    pub unavailable: u64,
    /// Jobs whose client went away before they were answered: withdrawn
    /// before they ran, or stopped, their answers never written.
    pub cancelled: u64,
    /// Time from `apply` until a worker took the job, in µs.
    pub queue_wait_us: Percentiles,
    /// Time the job ran, in µs.
    pub run_us: Percentiles,
    /// The queue wait per bucket, for `/metrics` (not in `stats`).
    #[serde(skip)]
    pub queue_wait_buckets: LatencyBuckets,
    /// The run time per bucket, for `/metrics` (not in `stats`).
    #[serde(skip)]
    pub run_buckets: LatencyBuckets,
}

/// Worker gauges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerSnapshot {
    /// How many workers the strategy was configured with (0 for `inline`,
    /// whose work runs on each caller's thread; 1 for `exclusive`).
    pub configured: usize,
    /// Workers alive now.
    pub alive: usize,
    /// Jobs running now.
    pub busy: usize,
    /// Worker processes started to replace one that ended.
    pub respawned: u64,
    /// Fork servers started to replace one that died (`procs` only).
    pub fork_server_restarts: u64,
    /// Worker processes retired after `--recycle-after` jobs (`procs` only).
    pub recycled: u64,
    /// Worker processes killed because their job ran past the job timeout
    /// (`procs` only; a thread cannot be killed).
    pub killed_timeout: u64,
}

/// A copy of a strategy's statistics at one moment, ready to serialize.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// The strategy's name.
    pub strategy: &'static str,
    /// Seconds since the strategy started.
    pub uptime_s: f64,
    /// Worker gauges.
    pub workers: WorkerSnapshot,
    /// Jobs waiting for a worker now.
    pub queued: usize,
    /// Per job kind, by name.
    pub jobs: std::collections::BTreeMap<JobKind, KindSnapshot>,
    /// The `--inline-below` rule and the jobs it ran on the calling thread;
    /// `None` when it is off.
    pub inline_below: Option<crate::apply::InlineBelowSnapshot>,
    /// `remote` only: the broker's side (stream, pending jobs, workers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSnapshot>,
}

impl Stats {
    /// Empty statistics, started now.
    pub(crate) fn new() -> Self {
        Stats {
            kinds: std::array::from_fn(|_| Mutex::new(KindStats::new())),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            respawned: AtomicU64::new(0),
            fork_server_restarts: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            killed_timeout: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    /// Records how one job ended, with the time it waited for a worker and
    /// the time it ran when it got that far.
    pub(crate) fn record(
        &self,
        kind: JobKind,
        outcome: Outcome,
        queue_wait: Option<Duration>,
        run: Option<Duration>,
    ) {
        let micros = |d: Duration| {
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, HIGHEST_MICROS)
        };
        // A panic while holding this lock cannot leave the counters torn, so a
        // poisoned lock is still good to use.
        let mut stats = self.kinds[slot(kind)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        stats.outcomes[outcome as usize] += 1;
        if let Some(wait) = queue_wait {
            stats.queue_wait.saturating_record(micros(wait));
        }
        if let Some(run) = run {
            stats.run.saturating_record(micros(run));
        }
    }

    /// A consistent-enough copy of every counter (each kind is copied under
    /// its own lock).
    pub(crate) fn snapshot(&self, strategy: &'static str, configured: usize) -> StatsSnapshot {
        let percentiles = |h: &Histogram<u64>| Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        };
        let mut jobs = std::collections::BTreeMap::new();
        #[cfg(feature = "fault-injection")]
        let kinds = JobKind::ALL.into_iter().chain([JobKind::Panic]);
        #[cfg(not(feature = "fault-injection"))]
        let kinds = JobKind::ALL.into_iter();
        for kind in kinds {
            let stats = self.kinds[slot(kind)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let [ok, busy, timeout, worker_lost, panicked, shutting_down, pool_down, unavailable, cancelled] =
                stats.outcomes;
            jobs.insert(
                kind,
                KindSnapshot {
                    ok,
                    busy,
                    timeout,
                    worker_lost,
                    panicked,
                    shutting_down,
                    pool_down,
                    unavailable,
                    cancelled,
                    queue_wait_us: percentiles(&stats.queue_wait),
                    run_us: percentiles(&stats.run),
                    queue_wait_buckets: LatencyBuckets::of(&stats.queue_wait),
                    run_buckets: LatencyBuckets::of(&stats.run),
                },
            );
        }
        StatsSnapshot {
            strategy,
            uptime_s: self.started.elapsed().as_secs_f64(),
            workers: WorkerSnapshot {
                configured,
                alive: self.alive.load(Ordering::Relaxed),
                busy: self.running.load(Ordering::Relaxed),
                respawned: self.respawned.load(Ordering::Relaxed),
                fork_server_restarts: self.fork_server_restarts.load(Ordering::Relaxed),
                recycled: self.recycled.load(Ordering::Relaxed),
                killed_timeout: self.killed_timeout.load(Ordering::Relaxed),
            },
            queued: self.queued.load(Ordering::Relaxed),
            jobs,
            inline_below: None,
            remote: None,
        }
    }
}

/// A handle that reads a strategy's statistics from any thread, for as
/// long as it is kept, even after the strategy is gone (the counters then
/// stay as they ended): what a metrics endpoint on a thread of its own
/// holds. [`crate::Strategy::stats`] reads through the same counters.
#[derive(Debug, Clone)]
pub struct StatsReader {
    stats: Arc<Stats>,
    strategy: &'static str,
    configured: usize,
    /// `remote` only: the broker's side.
    remote: Option<crate::apply::RemoteView>,
    /// With `--inline-below`: the rule and what it ran.
    inline_below: Option<View<crate::apply::InlineBelowSnapshot>>,
}

/// Reads some part of a strategy's statistics from any thread.
#[derive(Clone)]
pub(crate) struct View<T>(Arc<dyn Fn() -> T + Send + Sync>);

impl<T> View<T> {
    /// A view that `read` computes.
    pub(crate) fn new(read: impl Fn() -> T + Send + Sync + 'static) -> Self {
        View(Arc::new(read))
    }
}

impl<T> std::fmt::Debug for View<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("View")
    }
}

impl StatsReader {
    pub(crate) fn new(
        stats: Arc<Stats>,
        strategy: &'static str,
        configured: usize,
        remote: Option<crate::apply::RemoteView>,
        inline_below: Option<View<crate::apply::InlineBelowSnapshot>>,
    ) -> Self {
        StatsReader {
            stats,
            strategy,
            configured,
            remote,
            inline_below,
        }
    }

    /// A copy of the statistics now; for `remote`, with the broker's side,
    /// and the jobs in flight as the ones queued.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut snapshot = self.stats.snapshot(self.strategy, self.configured);
        snapshot.inline_below = self.inline_below.as_ref().map(|view| (view.0)());
        if let Some(remote) = &self.remote {
            let view = remote.snapshot();
            snapshot.queued = view.in_flight;
            snapshot.remote = Some(view);
        }
        snapshot
    }
}

/// Counts one job as waiting for a worker while it is alive.
#[derive(Debug)]
pub(crate) struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    /// Adds one to `counter` until the guard is dropped.
    pub(crate) fn raise(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;

    /// Outcomes are counted per kind, and latencies land in the histograms.
    #[test]
    fn records_and_snapshots() {
        let stats = Stats::new();
        stats.record(
            JobKind::Sumn,
            Outcome::Ok,
            Some(Duration::from_micros(10)),
            Some(Duration::from_millis(5)),
        );
        stats.record(
            JobKind::Sumn,
            Outcome::Ok,
            Some(Duration::from_micros(30)),
            Some(Duration::from_millis(5)),
        );
        let busy: Result<(), _> = Err(ApplyError::Busy {
            job: Job::Prime(3),
            reason: crate::BusyReason::NoneFree,
        });
        stats.record(
            JobKind::Prime,
            Outcome::of(&busy),
            Some(Duration::from_millis(200)),
            None,
        );
        let snap = stats.snapshot("threads", 2);
        let sumn = &snap.jobs[&JobKind::Sumn];
        assert_eq!(sumn.ok, 2);
        // 5000 µs, within hdrhistogram's 3 significant digits.
        assert!(
            (5000..=5005).contains(&sumn.run_us.p50),
            "{:?}",
            sumn.run_us
        );
        assert!(sumn.queue_wait_us.max >= 30);
        assert_eq!(snap.jobs[&JobKind::Prime].busy, 1);
        assert_eq!(snap.jobs[&JobKind::Sleep].ok, 0);
        assert_eq!(snap.workers.configured, 2);
    }

    /// The gauge goes up for the guard's lifetime only.
    #[test]
    fn gauge_follows_guard() {
        let counter = AtomicUsize::new(0);
        {
            let _a = Gauge::raise(&counter);
            let _b = Gauge::raise(&counter);
            assert_eq!(counter.load(Ordering::Relaxed), 2);
        }
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }
}
