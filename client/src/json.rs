//! The machine-readable report (`--json`): one JSON object per run, or one
//! object holding every run of a sweep. Latencies are in microseconds.
//!
//! ```text
//! {
//!   "config": { "threads": 4, "addrs": ["127.0.0.1:10000"], "requests": 1000, … },
//!   "total_requests": 1000, "elapsed_s": 0.41, "throughput": 2425.3,
//!   "rate": null,
//!   "overall": {
//!     "counts": { "sent": 1000, "ok": 1000, "wrong": 0, "errors": 0 },
//!     "errors": { "io": {}, "server": {} },
//!     "latency_us": { "count": 1000, "min": 90, "mean": 1601.2, "stdev": 301.5,
//!                     "p50": 1589, "p75": 1790, "p90": 2011, "p99": 2531,
//!                     "p99_9": 3033, "p99_99": 3301, "max": 3301 },
//!     "uncorrected_latency_us": null
//!   },
//!   "kinds": { "sumn": { …the same fields… } },
//!   "connect_us": { … }, "warmup": { "sent": 0, … }, "first_wrong": null,
//!   "all_right": true
//! }
//! ```
//!
//! `uncorrected_latency_us` is filled in open loops (`--rate`) only; in a
//! closed loop it would equal `latency_us`. `targets` has one section per
//! `--addr`; `retries` counts the attempts beyond the first by cause;
//! `extra_replies` the replies no request asked for; `interrupted` says
//! whether Ctrl-C stopped the run (then `total_requests` is the requests
//! made).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Amount, Config, Connection};
use crate::job::{Dialect, JobKind};
use crate::report::{RateCheck, Report, Spectrum};
use crate::stats::KindStats;
use crate::tally::{Counts, ErrorCounts, Tally};

/// One run.
#[derive(Debug, Serialize)]
pub struct RunJson {
    /// The settings.
    pub config: ConfigJson,
    /// The original's first line.
    pub total_requests: u64,
    /// The original's second line: seconds from the end of the warmup to
    /// the end of the run.
    pub elapsed_s: f64,
    /// Measured requests per second.
    pub throughput: f64,
    /// The rate asked and made, for an open loop.
    pub rate: Option<RateCheck>,
    /// All job kinds together.
    pub overall: Section,
    /// Each job kind apart.
    pub kinds: BTreeMap<JobKind, Section>,
    /// Each target address apart.
    pub targets: BTreeMap<String, Section>,
    /// Requests sent again, by cause.
    pub retries: RetriesJson,
    /// Replies that came without a request.
    pub extra_replies: ExtraJson,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// Connect times.
    pub connect_us: Option<Spectrum>,
    /// The warmup's counts (not in the figures).
    pub warmup: Counts,
    /// The first wrong answer, if any.
    pub first_wrong: Option<WrongJson>,
    /// Whether every request, warmup included, was answered right.
    pub all_right: bool,
}

/// The figures of a set of requests.
#[derive(Debug, Serialize)]
pub struct Section {
    /// How they ended; `ok + wrong + errors == sent`.
    pub counts: Counts,
    /// The errors by kind.
    pub errors: ErrorCounts,
    /// From each request's due time to its reply.
    pub latency_us: Option<Spectrum>,
    /// From each request's actual start to its reply (open loop only).
    pub uncorrected_latency_us: Option<Spectrum>,
}

/// The settings of a run.
#[derive(Debug, Serialize)]
pub struct ConfigJson {
    /// Client threads.
    pub threads: usize,
    /// Target addresses.
    pub addrs: Vec<String>,
    /// Requests asked for in all, or null for a duration.
    pub requests: Option<u64>,
    /// Seconds of measured run, or null for a request count.
    pub duration_s: Option<f64>,
    /// Seconds of warmup.
    pub warmup_s: f64,
    /// The jobs and weights, as `sumn:25000=1`.
    pub mix: String,
    /// Whether connections are kept alive.
    pub keep_alive: bool,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Requests per second asked, or null for a closed loop.
    pub rate: Option<f64>,
    /// Seconds one attempt of a request may take.
    pub timeout_s: f64,
    /// Attempts allowed beyond the first.
    pub retries: u32,
}

/// A wrong answer with its request.
#[derive(Debug, Serialize)]
pub struct WrongJson {
    /// The server.
    pub addr: String,
    /// The request as sent.
    pub request: String,
    /// Its dialect.
    pub dialect: Dialect,
    /// The reply.
    pub reply: String,
    /// The right answer.
    pub expected: String,
}

/// Retries, by cause.
#[derive(Debug, Serialize)]
pub struct RetriesJson {
    /// `--retries`: the most attempts beyond the first.
    pub allowed: u32,
    /// Attempts beyond the first, in all.
    pub total: u64,
    /// By cause: `connect refused`, `reset`, `closed`, `ERR shutting-down`.
    pub causes: BTreeMap<String, u64>,
}

/// Replies nobody asked for.
#[derive(Debug, Serialize)]
pub struct ExtraJson {
    /// How many.
    pub count: u64,
    /// The server that sent the first, or null.
    pub first_addr: Option<String>,
    /// The first, as received, or null.
    pub first_reply: Option<String>,
}

/// A sweep: the thread counts and a run for each.
#[derive(Debug, Serialize)]
pub struct SweepJson {
    /// The thread counts, in order.
    pub sweep: Vec<usize>,
    /// One run per thread count.
    pub runs: Vec<RunJson>,
}

impl RunJson {
    /// The JSON form of a report.
    pub fn of(report: &Report) -> RunJson {
        let stats = &report.stats;
        let open_loop = report.config.rate.is_some();
        let section = |tally: Tally, latency, uncorrected| Section {
            counts: tally.counts,
            errors: tally.errors,
            latency_us: Spectrum::of(latency),
            uncorrected_latency_us: if open_loop {
                Spectrum::of(uncorrected)
            } else {
                None
            },
        };
        let kinds = stats
            .kinds
            .iter()
            .map(|(&kind, seen): (&JobKind, &KindStats)| {
                (
                    kind,
                    section(seen.tally.clone(), &seen.latency, &seen.uncorrected),
                )
            })
            .collect();
        RunJson {
            config: ConfigJson::of(&report.config),
            total_requests: report.total_requests(),
            elapsed_s: report.elapsed.as_secs_f64(),
            throughput: report.throughput(),
            rate: report.rate_check(),
            overall: section(report.tally(), &stats.latency(), &stats.uncorrected()),
            kinds,
            targets: stats
                .targets
                .iter()
                .map(|(addr, seen)| {
                    (
                        addr.to_string(),
                        section(seen.tally.clone(), &seen.latency, &seen.uncorrected),
                    )
                })
                .collect(),
            retries: RetriesJson {
                allowed: report.config.retries,
                total: stats.retries.total,
                causes: stats.retries.causes.clone(),
            },
            extra_replies: ExtraJson {
                count: stats.extra.count,
                first_addr: stats.extra.first.as_ref().map(|(addr, _)| addr.to_string()),
                first_reply: stats.extra.first.as_ref().map(|(_, reply)| reply.clone()),
            },
            interrupted: report.interrupted,
            connect_us: Spectrum::of(&stats.connect),
            warmup: stats.warmup.counts.clone(),
            first_wrong: stats.first_wrong.as_ref().map(|w| WrongJson {
                addr: w.addr.to_string(),
                request: w.request.clone(),
                dialect: w.dialect,
                reply: w.reply.clone(),
                expected: w.expected.clone(),
            }),
            all_right: report.all_right(),
        }
    }
}

impl ConfigJson {
    /// The JSON form of the settings.
    pub fn of(config: &Config) -> ConfigJson {
        ConfigJson {
            threads: config.threads,
            addrs: config.targets.iter().map(ToString::to_string).collect(),
            requests: match config.amount {
                Amount::Requests(total) => Some(total),
                Amount::Duration(_) => None,
            },
            duration_s: match config.amount {
                Amount::Requests(_) => None,
                Amount::Duration(length) => Some(length.as_secs_f64()),
            },
            warmup_s: config.warmup.as_secs_f64(),
            mix: config.mix.to_string(),
            keep_alive: matches!(config.connection, Connection::KeepAlive { .. }),
            pipeline: config.pipeline(),
            rate: config.rate,
            timeout_s: config.timeout.as_secs_f64(),
            retries: config.retries,
        }
    }
}

/// The report of one run as pretty-printed JSON.
pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(&RunJson::of(report)).expect("plain data serializes")
}

/// The reports of a sweep as one pretty-printed JSON object.
pub fn render_sweep(reports: &[Report]) -> String {
    let sweep = SweepJson {
        sweep: reports.iter().map(|r| r.config.threads).collect(),
        runs: reports.iter().map(RunJson::of).collect(),
    };
    serde_json::to_string_pretty(&sweep).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    /// An empty run serializes with nulls for empty histograms and the
    /// config spelled out.
    #[test]
    fn empty_run() {
        let report = Report {
            config: Config::seed(4),
            stats: Stats::default(),
            elapsed: Duration::from_millis(1500),
            send_span: Duration::ZERO,
            interrupted: false,
        };
        let value: serde_json::Value = serde_json::from_str(&render(&report)).expect("valid");
        assert_eq!(value["total_requests"], 1000);
        assert_eq!(value["elapsed_s"], 1.5);
        assert_eq!(value["config"]["mix"], "sumn:25000=1");
        assert_eq!(value["config"]["addrs"][0], "127.0.0.1:10000");
        assert_eq!(value["config"]["duration_s"], serde_json::Value::Null);
        assert_eq!(value["overall"]["counts"]["sent"], 0);
        assert_eq!(value["overall"]["latency_us"], serde_json::Value::Null);
        let sweep: serde_json::Value =
            serde_json::from_str(&render_sweep(&[report.clone(), report])).expect("valid");
        assert_eq!(sweep["sweep"], serde_json::json!([4, 4]));
        assert_eq!(sweep["runs"].as_array().map(Vec::len), Some(2));
    }
}
