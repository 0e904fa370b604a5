//! What `/metrics` says: a prometheus-client [`Collector`] that reads, at
//! each scrape, the very counters the `stats` reply reads (the strategy's
//! [`StatsReader`], the server's [`ConnectionCounts`], the log's dropped
//! lines), so that the two are two views of one set of counters.

use std::sync::Arc;

use offload::stats::RemoteSnapshot;
use offload::StatsReader;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use service::metrics::encode::{self, counter, gauge, to_usize};

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

        encode::strategy(&mut encoder, &stats)?;
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
        info.encode_info(&[("address", primary.as_str())])?;
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
        // An info family: each sample is `…_info{labels} 1`.
        info.encode_info(&labels)?;
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
