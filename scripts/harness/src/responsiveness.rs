//! The responsiveness workload (issue 7): two clients keep the server busy
//! with heavy jobs of about 50 ms while four others send `ping` on a fixed
//! schedule; how long a ping waits shows whether the heavy work stalls the
//! I/O. Run for every `--io` × `--apply` pair.
//!
//! A reactor that runs a job itself (events with inline or exclusive) cannot
//! read a ping until the job ends; one that hands jobs away answers at once.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::Server;
use crate::sweep::Binaries;

/// Pings per second, over all four ping clients: one every 100 ms per
/// client, a schedule even a stalled reactor can roughly keep, so that the
/// figures show each ping's stall rather than a backlog growing for the
/// whole run.
const PING_RATE: u32 = 40;

/// One `--io` × `--apply` pair.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Responsiveness {
    /// threads or events.
    pub(crate) io: String,
    /// The apply strategy.
    pub(crate) strategy: String,
    /// Pings answered in the timed part.
    pub(crate) pings: u64,
    /// Ping latency from when each ping was due (corrected), µs; `None`
    /// when no ping was answered in the timed part.
    pub(crate) ping_p50_us: Option<f64>,
    /// The same, 99th percentile.
    pub(crate) ping_p99_us: Option<f64>,
    /// The same, worst.
    pub(crate) ping_max_us: Option<f64>,
    /// Heavy jobs answered meanwhile (all of the run).
    pub(crate) heavy_jobs: u64,
    /// Wrong answers and errors, pings and heavy jobs together.
    pub(crate) errors: u64,
}

/// The settings of one run of the workload.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The `n` of `sumn n` that takes about 50 ms here.
    pub(crate) heavy_n: u64,
    /// How long pings are timed.
    pub(crate) duration: Duration,
    /// Cores, for `--workers`.
    pub(crate) cores: usize,
}

/// Runs the workload against `--io io --apply strategy`.
pub(crate) fn run(
    bins: &Binaries<'_>,
    plan: &Plan,
    io: &str,
    strategy: &str,
) -> anyhow::Result<Responsiveness> {
    let cores = plan.cores.to_string();
    let server = Server::start(
        bins.server,
        strategy,
        &["--io", io, "--workers", &cores, "--queue-wait", "60s"].map(String::from),
    )?;
    let addr = server.addr.to_string();
    let warmup = Duration::from_millis(500);
    // The heavy clients start first and outlast the pings by a second.
    let heavy_for = plan.duration + warmup + Duration::from_secs(1);
    let heavy = Command::new(bins.client)
        .args(["--addr", &addr, "--json", "2", "--keep-alive", "--job"])
        .arg(format!("sumn:{}", plan.heavy_n))
        .arg("--duration")
        .arg(format!("{}ms", heavy_for.as_millis()))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the heavy sumclient")?;
    let pings = Command::new(bins.client)
        .args([
            "--addr",
            &addr,
            "--json",
            "4",
            "--keep-alive",
            "--job",
            "ping",
        ])
        .args(["--rate", &PING_RATE.to_string()])
        .arg("--warmup")
        .arg(format!("{}ms", warmup.as_millis()))
        .arg("--duration")
        .arg(format!("{}ms", plan.duration.as_millis()))
        .output()
        .context("cannot run the ping sumclient")?;
    let heavy = heavy
        .wait_with_output()
        .context("waiting for the heavy sumclient")?;
    server
        .stop()
        .with_context(|| format!("stopping the {io} × {strategy} server"))?;
    let parse = |stdout: &[u8], what: &str| -> anyhow::Result<Value> {
        serde_json::from_slice(stdout)
            .with_context(|| format!("the {what} sumclient printed no JSON"))
    };
    let (pings, heavy) = (
        parse(&pings.stdout, "ping")?,
        parse(&heavy.stdout, "heavy")?,
    );
    let latency = &pings["overall"]["latency_us"];
    let errors = |report: &Value| {
        let counts = &report["overall"]["counts"];
        counts["errors"].as_u64().unwrap_or(0) + counts["wrong"].as_u64().unwrap_or(0)
    };
    Ok(Responsiveness {
        io: io.to_owned(),
        strategy: strategy.to_owned(),
        pings: pings["total_requests"].as_u64().context("no ping count")?,
        ping_p50_us: latency["p50"].as_f64(),
        ping_p99_us: latency["p99"].as_f64(),
        ping_max_us: latency["max"].as_f64(),
        heavy_jobs: heavy["total_requests"].as_u64().context("no heavy count")?,
        errors: errors(&pings) + errors(&heavy),
    })
}
