//! What `/metrics` says: a prometheus-client [`Collector`] that reads, at
//! each scrape, the very counters the `stats` reply reads (the strategy's
//! [`StatsReader`], the server's [`ConnectionCounts`], the log's dropped
//! lines), so that the two are two views of one set of counters.

use std::sync::Arc;

use offload::buckets::{LatencyBuckets, BUCKET_BOUNDS_US};
use offload::stats::KindSnapshot;
use offload::stats::RemoteSnapshot;
use offload::StatsReader;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::counts::ConnectionCounts;

/// The sources `/metrics` reads at each scrape.
#[derive(Debug)]
pub struct ServerCollector {
    /// The strategy's job counters, latencies and worker gauges.
    pub stats: StatsReader,
    /// The connection counters both I/O models update.
    pub connections: Arc<ConnectionCounts>,
    /// `--io`, for the info metric.
    pub io: &'static str,
}

/// Reads one counter of a kind's snapshot.
type CountOf = fn(&KindSnapshot) -> u64;

/// Reads one latency of a kind's snapshot.
type LatencyOf = fn(&KindSnapshot) -> &LatencyBuckets;

/// Every job outcome, as `stats` names it, with its counter in a
/// [`KindSnapshot`].
const OUTCOMES: [(&str, CountOf); 9] = [
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

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.stats.snapshot();
        let connections = self.connections.snapshot();

        let mut info = encoder.encode_descriptor(
            "server",
            "The server's I/O model and strategy, as a label set with value 1.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[("io", self.io), ("strategy", stats.strategy)])?;

        let mut jobs = encoder.encode_descriptor(
            "jobs",
            "Jobs that ended, by kind and outcome (ok, busy, timeout, worker_lost, \
             panicked, shutting_down, pool_down, unavailable).",
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
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (kind, counts) in &stats.jobs {
                let labels = [("kind", kind.name())];
                encode_latency(buckets_of(counts), &mut family.encode_family(&labels)?)?;
            }
        }

        let workers = &stats.workers;
        gauge(
            &mut encoder,
            "jobs_queued",
            "Jobs waiting for a worker now.",
            stats.queued,
        )?;
        gauge(
            &mut encoder,
            "jobs_running",
            "Jobs running now.",
            workers.busy,
        )?;
        gauge(
            &mut encoder,
            "workers_configured",
            "Workers the strategy was started with (0 for inline, 1 for exclusive).",
            workers.configured,
        )?;
        gauge(
            &mut encoder,
            "workers_alive",
            "Workers alive now.",
            workers.alive,
        )?;
        counter(
            &mut encoder,
            "workers_respawned",
            "Worker processes started to replace one that ended.",
            workers.respawned,
        )?;
        counter(
            &mut encoder,
            "workers_recycled",
            "Worker processes retired after --recycle-after jobs.",
            workers.recycled,
        )?;
        counter(
            &mut encoder,
            "workers_killed_timeout",
            "Worker processes killed because their job ran past --job-timeout.",
            workers.killed_timeout,
        )?;
        counter(
            &mut encoder,
            "fork_server_restarts",
            "Fork servers started to replace one that died (procs).",
            workers.fork_server_restarts,
        )?;
        gauge(
            &mut encoder,
            "connections_open",
            "Connections open now.",
            connections.open,
        )?;
        counter(
            &mut encoder,
            "connections",
            "Connections accepted since start.",
            connections.total,
        )?;
        counter(
            &mut encoder,
            "connections_refused",
            "Connections refused with ERR busy (over --max-connections, or no thread).",
            connections.refused,
        )?;
        counter(
            &mut encoder,
            "log_lines_dropped",
            "Log lines dropped because stderr could not keep up.",
            crate::logging::dropped_lines(),
        )?;
        if let Some(remote) = &stats.remote {
            encode_remote(&mut encoder, remote)?;
        }
        if let Some(rule) = &stats.inline_below {
            counter(
                &mut encoder,
                "inline_below_jobs",
                "Jobs run on the calling thread by --inline-below (each also in ysum_jobs_total).",
                rule.ran_inline,
            )?;
            let threshold = encoder.encode_descriptor(
                "inline_below_threshold",
                "--inline-below: jobs predicted to run less than this run on the calling thread.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(rule.threshold_us / 1e6).encode(threshold)?;
        }
        let uptime = encoder.encode_descriptor(
            "uptime",
            "Time since the server started.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.connections.uptime().as_secs_f64()).encode(uptime)?;
        Ok(())
    }
}

/// `--apply remote`: the broker's view, as the strategy's monitor last
/// read it (every second or so), with this server's own counts.
fn encode_remote(
    encoder: &mut DescriptorEncoder,
    remote: &RemoteSnapshot,
) -> Result<(), std::fmt::Error> {
    gauge(
        encoder,
        "remote_broker_up",
        "1 when the broker answered the server's last look, else 0.",
        usize::from(remote.connected),
    )?;
    gauge(
        encoder,
        "remote_jobs_in_flight",
        "This server's jobs handed to the broker and not yet answered.",
        remote.in_flight,
    )?;
    gauge(
        encoder,
        "remote_stream_length",
        "Entries in the jobs stream, waiting or running, from every server.",
        to_usize(remote.stream_length),
    )?;
    gauge(
        encoder,
        "remote_pending",
        "Jobs delivered to a worker and not yet acknowledged.",
        to_usize(remote.pending),
    )?;
    counter(
        encoder,
        "remote_redeliveries",
        "Jobs taken over from a worker that stopped renewing its lease (since the broker started).",
        remote.redeliveries,
    )?;
    counter(
        encoder,
        "remote_late_replies",
        "Replies dropped because their job was already answered.",
        remote.late_replies,
    )?;
    counter(
        encoder,
        "remote_forged_replies",
        "Replies dropped because their signature was missing or wrong (--broker-secret-file).",
        remote.forged_replies,
    )?;
    counter(
        encoder,
        "remote_resubmitted",
        "Jobs handed out again after the broker restarted.",
        remote.resubmitted,
    )?;
    counter(
        encoder,
        "remote_withdrawn",
        "Jobs withdrawn from the stream (their client went away) before any worker took them.",
        remote.withdrawn,
    )?;
    counter(
        encoder,
        "remote_abandoned",
        "Jobs withdrawn (their client went away) after a worker took them; it stops them.",
        remote.abandoned,
    )?;
    counter(
        encoder,
        "remote_failovers",
        "Times this server saw the broker's primary change (redis+sentinel://).",
        remote.failovers,
    )?;
    if let Some(primary) = &remote.primary {
        let mut info = encoder.encode_descriptor(
            "remote_primary",
            "The broker's primary as last found through the sentinels (always 1).",
            None,
            MetricType::Info,
        )?;
        let labels = [("address", primary.as_str())];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;
    }
    gauge(
        encoder,
        "remote_held",
        "Long jobs waiting at this server for their turn (fair share).",
        remote.held,
    )?;
    gauge(
        encoder,
        "remote_live_slots",
        "Slots of the workers alive now: the long jobs this server lets into the stream at once.",
        to_usize(remote.live_slots),
    )?;
    gauge(
        encoder,
        "remote_workers",
        "Workers (consumers) the group has seen.",
        remote.workers.len(),
    )?;
    let mut pending = encoder.encode_descriptor(
        "remote_worker_pending",
        "Jobs delivered to this worker and not acknowledged.",
        None,
        MetricType::Gauge,
    )?;
    for worker in &remote.workers {
        let labels = [("worker", worker.name.as_str())];
        ConstGauge::new(to_usize(worker.pending)).encode(pending.encode_family(&labels)?)?;
    }
    let mut idle = encoder.encode_descriptor(
        "remote_worker_idle",
        "Time since this worker last took a job or renewed a lease.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for worker in &remote.workers {
        let labels = [("worker", worker.name.as_str())];
        let seconds = worker.idle_ms as f64 / 1e3;
        ConstGauge::new(seconds).encode(idle.encode_family(&labels)?)?;
    }
    let mut offset = encoder.encode_descriptor(
        "remote_worker_clock_offset",
        "The broker's clock minus this worker's, as the worker last measured it.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for worker in &remote.workers {
        if let Some(ms) = worker.clock_offset_ms {
            let labels = [("worker", worker.name.as_str())];
            ConstGauge::new(ms as f64 / 1e3).encode(offset.encode_family(&labels)?)?;
        }
    }
    let mut info = encoder.encode_descriptor(
        "remote_worker",
        "Each live worker, with its version and the newest job format it speaks (always 1).",
        None,
        MetricType::Info,
    )?;
    for worker in &remote.workers {
        let format = worker.format.map(|f| f.to_string()).unwrap_or_default();
        let labels = [
            ("worker", worker.name.as_str()),
            ("version", worker.version.as_deref().unwrap_or("")),
            ("format", format.as_str()),
        ];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;
    }
    let server_offset = encoder.encode_descriptor(
        "remote_clock_offset",
        "The broker's clock minus this server's, as last measured.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    ConstGauge::new(remote.clock_offset_ms as f64 / 1e3).encode(server_offset)?;
    Ok(())
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// One latency histogram, in seconds, its buckets cumulative up to `+Inf`.
fn encode_latency(
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

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: usize,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}
