//! The shape of `results.json`: every figure of one run, typed, so the
//! report, the charts and the targets read the same numbers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connections::Connections;
use crate::responsiveness::Responsiveness;
use crate::sweep::Point;
use crate::targets::Targets;

/// One run of `scripts/bench`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    /// The command that produced it, exactly as given.
    pub(crate) command: String,
    /// The commit it ran at (`git rev-parse`), `+dirty` when files tracked
    /// by git had changes; absent from runs made before it was recorded.
    #[serde(default)]
    pub(crate) commit: Option<String>,
    /// When it started, UTC (RFC 3339); absent from older runs.
    #[serde(default)]
    pub(crate) date: Option<String>,
    /// Whether it was the `--quick` smoke run.
    pub(crate) quick: bool,
    /// Wall time of the whole run.
    pub(crate) elapsed_s: f64,
    /// Where it ran.
    pub(crate) machine: Machine,
    /// What no strategy can beat.
    pub(crate) floors: Floors,
    /// The targets, as ratios measured in this run.
    pub(crate) targets: Targets,
    /// Tiny jobs on every server in interleaved rounds; absent from runs
    /// made before it was measured.
    #[serde(default)]
    pub(crate) side_by_side: Option<crate::side_by_side::SideBySide>,
    /// seed, heavy, tiny.
    pub(crate) workloads: Vec<WorkloadResult>,
    /// Ping latency beside heavy jobs, for every `--io` × `--apply` pair.
    pub(crate) responsiveness: Vec<Responsiveness>,
    /// Many idle connections held open, for each `--io` mode.
    pub(crate) connections: Vec<Connections>,
}

/// The machine the run measured.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// Cores this process may use.
    pub(crate) cores: usize,
    /// The CPU model, from `/proc/cpuinfo`.
    pub(crate) cpu: String,
    /// From `/proc/sys/kernel/osrelease`.
    pub(crate) kernel: String,
}

impl Machine {
    /// Reads this machine's description.
    pub(crate) fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// The commit of the working tree the bench runs in: `git rev-parse HEAD`,
/// with `+dirty` when tracked files differ from it; `None` outside git.
pub(crate) fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// The floors and the job times, measured before the workloads.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Floors {
    /// Bare TCP request/reply over loopback, µs.
    pub(crate) tcp_ping_pong_us: f64,
    /// Bare socketpair round trip between two processes, µs.
    pub(crate) socketpair_ping_pong_us: f64,
    /// Python's `multiprocessing.Pool.apply` of a tiny job, µs (if python3).
    pub(crate) python_pool_apply_us: Option<f64>,
    /// `sumn 25000` (the seed's job) through an idle inline server, µs.
    pub(crate) sumn_25000_us: f64,
    /// The `n` of the heavy workload, chosen so the job takes about 5 ms.
    pub(crate) heavy_n: u64,
    /// `sumn heavy_n` through an idle inline server at calibration, ms.
    pub(crate) heavy_job_ms_at_start: f64,
    /// The median of every heavy job timing taken around the heavy points,
    /// ms: the job time behind the charts' physical-limit line.
    pub(crate) heavy_job_ms_median: f64,
    /// cores ÷ `heavy_job_ms_median`, requests per second.
    pub(crate) heavy_physical_limit_rps: f64,
}

/// One workload against every strategy.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkloadResult {
    /// seed, heavy or tiny.
    pub(crate) workload: String,
    /// One line for the report.
    pub(crate) what: String,
    /// In the order inline, exclusive, threads, procs.
    pub(crate) strategies: Vec<StrategyResult>,
}

/// One strategy's sweep.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StrategyResult {
    /// inline, exclusive, threads or procs.
    pub(crate) strategy: String,
    /// One per client count.
    pub(crate) points: Vec<Point>,
    /// sumclient's own `--json` report of each point, unabridged.
    pub(crate) sumclient: Vec<Value>,
}

/// The points of `workload` × `strategy` among `workloads`.
pub(crate) fn workloads_points<'a>(
    workloads: &'a [WorkloadResult],
    workload: &str,
    strategy: &str,
) -> Option<&'a [Point]> {
    workloads
        .iter()
        .find(|w| w.workload == workload)?
        .strategies
        .iter()
        .find(|s| s.strategy == strategy)
        .map(|s| s.points.as_slice())
}
