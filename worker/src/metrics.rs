//! `--metrics ADDR`: what sumworker exposes on the shared endpoint
//! ([`service::MetricsEndpoint`]), every name after `ysum_worker_`: its
//! local strategy's jobs, latencies and pool (the same families as
//! sumserver's), its slots, what it did with the broker's entries, the
//! broker's health and clock as it sees them. docs/operations.md lists
//! them; `/readyz` says whether it can take jobs now.

use std::sync::Arc;

use offload::broker::wire::FORMAT;
use offload::broker::Broker;
use offload::StatsReader;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use service::metrics::encode::{self, counter, gauge, seconds};
use service::metrics::Readiness;

use crate::counts::Counts;
use crate::running::Running;
use crate::stop::Stop;

/// The sources `/metrics` reads at each scrape.
#[derive(Debug)]
pub(crate) struct WorkerCollector {
    /// The local strategy's counters.
    pub(crate) stats: StatsReader,
    /// What this worker counted.
    pub(crate) counts: Arc<Counts>,
    /// The jobs held and the slots.
    pub(crate) running: Arc<Running>,
    /// The broker, for its clock and primary.
    pub(crate) broker: Broker,
    /// This worker's consumer name.
    pub(crate) name: String,
    /// When it started.
    pub(crate) started: std::time::Instant,
}

impl Collector for WorkerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.stats.snapshot();
        let counts = &self.counts;
        let mut info = encoder.encode_descriptor(
            "build",
            "This worker: its name, version, local strategy and the job formats it reads (always 1).",
            None,
            MetricType::Info,
        )?;
        let newest = self.broker.format().min(FORMAT).to_string();
        info.encode_info(&[
            ("name", self.name.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
            ("strategy", stats.strategy),
            ("format", newest.as_str()),
        ])?;

        encode::strategy(&mut encoder, &stats)?;
        gauge(
            &mut encoder,
            "slots",
            "Jobs this worker runs at once (--workers): it takes no more from the stream.",
            self.running.slots(),
        )?;
        gauge(
            &mut encoder,
            "slots_busy",
            "Slots running a job now.",
            self.running.busy(),
        )?;
        gauge(
            &mut encoder,
            "broker_up",
            "1 while this worker's reading connection to the broker works, else 0.",
            usize::from(counts.is_connected()),
        )?;
        counter(
            &mut encoder,
            "broker_errors",
            "Commands to the broker that failed (lost, refused or timed out), on any thread.",
            Counts::get(&counts.broker_errors),
        )?;
        if self.broker.clock().is_measured() {
            seconds(
                &mut encoder,
                "clock_offset",
                "The broker's clock minus this machine's, as last measured (deadlines are judged on the broker's).",
                self.broker.clock().offset_ms() as f64 / 1e3,
            )?;
        }
        counter(
            &mut encoder,
            "failovers",
            "Times this worker saw the broker's primary change (redis+sentinel://).",
            self.broker.failovers(),
        )?;
        counter(
            &mut encoder,
            "leases_renewed",
            "Lease renewals, one per job held per renewal.",
            Counts::get(&counts.leases_renewed),
        )?;
        counter(
            &mut encoder,
            "redeliveries",
            "Jobs this worker took over from a worker whose lease ran out.",
            Counts::get(&counts.taken_over),
        )?;
        counter(
            &mut encoder,
            "lost_to_another",
            "Jobs another worker took over while this one still ran them (it was paused or cut off past the lease).",
            Counts::get(&counts.lost_to_another),
        )?;
        counter(
            &mut encoder,
            "withdrawn",
            "Jobs cut short because their server withdrew them (the client went away).",
            Counts::get(&counts.withdrawn),
        )?;
        counter(
            &mut encoder,
            "expired",
            "Jobs answered expired: taken after their deadline, on the broker's clock.",
            Counts::get(&counts.expired),
        )?;
        counter(
            &mut encoder,
            "given_up",
            "Jobs answered worker-lost: delivered too many times and finished by no worker.",
            Counts::get(&counts.given_up),
        )?;
        counter(
            &mut encoder,
            "replies_abandoned",
            "Replies dropped because the broker did not take them before their deadline.",
            Counts::get(&counts.replies_abandoned),
        )?;
        counter(
            &mut encoder,
            "entries_left",
            "Entries in a job format newer than this worker reads, left for a worker that reads it.",
            Counts::get(&counts.left.entries),
        )?;
        let mut refused = encoder.encode_descriptor(
            "entries_refused",
            "Entries acknowledged and dropped unrun, by why (malformed, forged, foreign_key).",
            None,
            MetricType::Counter,
        )?;
        for (why, count) in [
            ("malformed", &counts.refused.malformed),
            ("forged", &counts.refused.forged),
            ("foreign_key", &counts.refused.foreign_key),
        ] {
            let labels = [("why", why)];
            prometheus_client::metrics::counter::ConstCounter::new(Counts::get(count))
                .encode(refused.encode_family(&labels)?)?;
        }
        let uptime = encoder.encode_descriptor(
            "uptime",
            "Time since this worker started.",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.started.elapsed().as_secs_f64()).encode(uptime)?;
        Ok(())
    }
}

/// `GET /readyz`: the worker can take jobs now. Not while it stops, nor
/// while its reading connection to the broker is down, nor while its local
/// pool has no worker alive (`procs`: the fork server is being replaced).
pub(crate) fn readiness(stats: StatsReader, counts: Arc<Counts>, stop: Arc<Stop>) -> Readiness {
    Box::new(move || {
        if stop.is_requested() {
            return Err("stopping".into());
        }
        if !counts.is_connected() {
            return Err("not connected to the broker".into());
        }
        let now = stats.snapshot();
        if now.workers.configured > 0 && now.workers.alive == 0 {
            return Err("no worker of the local pool is alive".into());
        }
        Ok(())
    })
}
