//! What both binaries' `/metrics` say of their strategy, and the small
//! helpers every collector uses: jobs by kind and outcome, their latency
//! histograms, the pool's gauges and counters, the log lines dropped. The
//! server's collector adds its connections and the broker's view; the
//! worker's its slots, leases and broker.

use offload::buckets::{LatencyBuckets, BUCKET_BOUNDS_US};
use offload::stats::KindSnapshot;
use offload::StatsSnapshot;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// Reads one counter of a kind's snapshot.
type CountOf = fn(&KindSnapshot) -> u64;

/// Reads one latency of a kind's snapshot.
type LatencyOf = fn(&KindSnapshot) -> &LatencyBuckets;

/// Every job outcome, as `stats` names it, with its counter in a
/// [`KindSnapshot`].
pub const OUTCOMES: [(&str, CountOf); 9] = [
    ("ok", |k| k.ok),
    ("busy", |k| k.busy),
    ("timeout", |k| k.timeout),
    ("worker_lost", |k| k.worker_lost),
    ("panicked", |k| k.panicked),
    ("shutting_down", |k| k.shutting_down),
    ("pool_down", |k| k.pool_down),
    ("unavailable", |k| k.unavailable),
    ("cancelled", |k| k.cancelled),
];

/// The strategy's jobs (by kind and outcome), their latencies, its pool
/// and the log lines dropped.
///
/// # Errors
///
/// The encoder's.
pub fn strategy(
    encoder: &mut DescriptorEncoder,
    stats: &StatsSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut jobs = encoder.encode_descriptor(
        "jobs",
        "Jobs that ended, by kind and outcome (ok, busy, timeout, worker_lost, \
         panicked, shutting_down, pool_down, unavailable, cancelled).",
        None,
        MetricType::Counter,
    )?;
    for (kind, counts) in &stats.jobs {
        for (outcome, count) in OUTCOMES {
            let labels = [("kind", kind.name()), ("outcome", outcome)];
            ConstCounter::new(count(counts)).encode(jobs.encode_family(&labels)?)?;
        }
    }

    let latencies: [(&str, &str, LatencyOf); 2] = [
        (
            "job_queue_wait",
            "Time from a job's arrival until a worker took it.",
            |k| &k.queue_wait_buckets,
        ),
        (
            "job_run",
            "Time a job ran, from a worker taking it to its answer.",
            |k| &k.run_buckets,
        ),
    ];
    for (name, help, buckets_of) in latencies {
        let mut family =
            encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for (kind, counts) in &stats.jobs {
            let labels = [("kind", kind.name())];
            latency(buckets_of(counts), &mut family.encode_family(&labels)?)?;
        }
    }

    let workers = &stats.workers;
    gauge(
        encoder,
        "jobs_queued",
        "Jobs waiting for a worker now.",
        stats.queued,
    )?;
    gauge(encoder, "jobs_running", "Jobs running now.", workers.busy)?;
    gauge(
        encoder,
        "workers_configured",
        "Workers the strategy was started with (0 for inline, 1 for exclusive).",
        workers.configured,
    )?;
    gauge(
        encoder,
        "workers_alive",
        "Workers alive now.",
        workers.alive,
    )?;
    counter(
        encoder,
        "workers_respawned",
        "Worker processes started to replace one that ended.",
        workers.respawned,
    )?;
    counter(
        encoder,
        "workers_recycled",
        "Worker processes retired after --recycle-after jobs.",
        workers.recycled,
    )?;
    counter(
        encoder,
        "workers_killed_timeout",
        "Worker processes killed because their job ran past --job-timeout.",
        workers.killed_timeout,
    )?;
    counter(
        encoder,
        "fork_server_restarts",
        "Fork servers started to replace one that died (procs).",
        workers.fork_server_restarts,
    )?;
    counter(
        encoder,
        "log_lines_dropped",
        "Log lines dropped because stderr could not keep up.",
        crate::logging::dropped_lines(),
    )
}

/// One latency histogram, in seconds, its buckets cumulative up to `+Inf`.
fn latency(
    buckets: &LatencyBuckets,
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    const MICROS: f64 = 1e6;
    // The encoder adds the counts up itself: it wants each bucket's own.
    let mut per_bucket: Vec<(f64, u64)> = BUCKET_BOUNDS_US
        .iter()
        .zip(buckets.per_bucket)
        .map(|(&bound, count)| (bound as f64 / MICROS, count))
        .collect();
    let counted: u64 = buckets.per_bucket.iter().sum();
    per_bucket.push((f64::INFINITY, buckets.count - counted));
    family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        buckets.sum_us as f64 / MICROS,
        buckets.count,
        &per_bucket,
        None,
    )
}

/// A gauge without labels.
///
/// # Errors
///
/// The encoder's.
pub fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// A counter without labels.
///
/// # Errors
///
/// The encoder's.
pub fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// A gauge in seconds without labels.
///
/// # Errors
///
/// The encoder's.
pub fn seconds(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// `value` as a `usize`, saturating.
pub fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
