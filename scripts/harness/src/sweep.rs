//! One workload against one strategy: a fresh server, then one `sumclient`
//! run per client count, each watched through `/proc` and, for the heavy
//! workload, bracketed by timings of the job itself.
//!
//! Point by point rather than one `sumclient --sweep`: this machine's speed
//! drifts by tens of percent over minutes, so the physical limit a point is
//! held to must be measured seconds from it, not once per run.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::procfs;
use crate::server::Server;

/// A point whose job timings before and after differ by more than this is
/// run once more (the steadier attempt is kept).
const MAX_DRIFT: f64 = 0.10;

/// What `sumclient` is told to send, and whether to time the job around
/// each point.
#[derive(Debug)]
pub(crate) struct Workload {
    /// Short name: seed, heavy, tiny.
    pub(crate) name: &'static str,
    /// One line for the report.
    pub(crate) what: String,
    /// Everything `sumclient` gets but the address and the client count.
    pub(crate) client_args: Vec<String>,
    /// `Some(n)`: time `sumn n` through the server before and after each
    /// point.
    pub(crate) probe_n: Option<u64>,
}

/// One client count of one strategy under one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Point {
    /// Client threads.
    pub(crate) clients: u64,
    /// Requests answered in the timed part.
    pub(crate) requests: u64,
    /// Length of the timed part.
    pub(crate) seconds: f64,
    /// Requests per second.
    pub(crate) throughput: f64,
    /// Median latency (corrected for coordinated omission by sumclient).
    pub(crate) p50_us: f64,
    /// 99th percentile latency.
    pub(crate) p99_us: f64,
    /// Wrong answers and error replies.
    pub(crate) errors: u64,
    /// CPU seconds of the server's process tree per wall second of the run
    /// (warmup included): how many cores the server kept busy.
    pub(crate) cores_busy: f64,
    /// Share of the machine's CPU time the hypervisor took meanwhile.
    pub(crate) steal_share: f64,
    /// The job, timed through this server just before the point (median).
    pub(crate) job_ms_before: Option<f64>,
    /// The same, just after.
    pub(crate) job_ms_after: Option<f64>,
    /// 1, or 2 when the first attempt drifted by more than [`MAX_DRIFT`].
    pub(crate) attempts: u32,
}

impl Point {
    /// The job's time around this point: the mean of before and after.
    pub(crate) fn job_ms(&self) -> Option<f64> {
        Some((self.job_ms_before? + self.job_ms_after?) / 2.0)
    }

    /// How far apart the two timings are, relative to their mean.
    pub(crate) fn drift(&self) -> Option<f64> {
        Some((self.job_ms_before? - self.job_ms_after?).abs() / self.job_ms()?)
    }
}

/// The binaries under test.
#[derive(Debug)]
pub(crate) struct Binaries<'a> {
    /// `sumserver`.
    pub(crate) server: &'a Path,
    /// `sumclient`.
    pub(crate) client: &'a Path,
}

/// Starts a server with `--apply strategy server_args`, runs every client
/// count of `sweep` against it, stops it with SIGTERM (a clean exit is
/// required) and returns the points and sumclient's JSON for each.
pub(crate) fn run(
    bins: &Binaries<'_>,
    workload: &Workload,
    strategy: &str,
    server_args: &[String],
    sweep: &[u64],
) -> anyhow::Result<(Vec<Point>, Vec<Value>)> {
    let server = Server::start(bins.server, strategy, server_args)?;
    let mut points = Vec::new();
    let mut reports = Vec::new();
    for &clients in sweep {
        let (mut point, mut report) = run_point(bins.client, &server, workload, clients)?;
        if point.drift().is_some_and(|d| d > MAX_DRIFT) {
            let (again, again_report) = run_point(bins.client, &server, workload, clients)?;
            if again.drift() < point.drift() {
                (point, report) = (again, again_report);
            }
            point.attempts = 2;
        }
        points.push(point);
        reports.push(report);
    }
    server
        .stop()
        .with_context(|| format!("stopping the {strategy} server"))?;
    Ok((points, reports))
}

fn run_point(
    client_bin: &Path,
    server: &Server,
    workload: &Workload,
    clients: u64,
) -> anyhow::Result<(Point, Value)> {
    let probe = |n| probe_ms(server.addr, n);
    let job_ms_before = workload.probe_n.map(probe).transpose()?;
    let cpu_before = procfs::tree_cpu_seconds(server.pid())?;
    let steal_before = procfs::steal_seconds();
    let started = Instant::now();
    let output = Command::new(client_bin)
        .args(["--addr", &server.addr.to_string(), "--json"])
        .arg(clients.to_string())
        .args(&workload.client_args)
        .output()
        .context("cannot run sumclient")?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = procfs::tree_cpu_seconds(server.pid())? - cpu_before;
    let steal = procfs::steal_seconds() - steal_before;
    let job_ms_after = workload.probe_n.map(probe).transpose()?;
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "sumclient printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let number = |v: &Value, what: &str| {
        v.as_f64()
            .with_context(|| format!("sumclient's report has no {what}"))
    };
    let overall = &report["overall"];
    let counts = &overall["counts"];
    let point = Point {
        clients,
        requests: report["total_requests"]
            .as_u64()
            .context("no request count")?,
        seconds: number(&report["elapsed_s"], "elapsed_s")?,
        throughput: number(&report["throughput"], "throughput")?,
        p50_us: number(&overall["latency_us"]["p50"], "p50")?,
        p99_us: number(&overall["latency_us"]["p99"], "p99")?,
        errors: counts["errors"].as_u64().unwrap_or(0) + counts["wrong"].as_u64().unwrap_or(0),
        cores_busy: cpu / wall,
        steal_share: steal / (wall * cores),
        job_ms_before,
        job_ms_after,
        attempts: 1,
    };
    Ok((point, report))
}

/// Requests in one timing of the job.
const PROBES: usize = 7;

/// The median time of `sumn n` through the server at `addr`, in ms, sent one
/// after another over one connection: the job's own time (plus a round trip
/// of some 30 µs) at this moment's machine speed.
pub(crate) fn probe_ms(addr: SocketAddr, n: u64) -> anyhow::Result<f64> {
    median_job_ms(addr, n, PROBES)
}

/// The median time of `count` `sumn n` sent one after another over one
/// connection to `addr`, in ms.
pub(crate) fn median_job_ms(addr: SocketAddr, n: u64, count: usize) -> anyhow::Result<f64> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        writeln!(conn, "sumn {n}")?;
        line.clear();
        reader.read_line(&mut line)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if line.starts_with("ERR") || line.is_empty() {
            bail!("the server did not answer sumn {n}: {line:?}");
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[count / 2])
}
