//! The issue's targets, computed as ratios from the points of this run.
//!
//! This machine's speed drifts, by a factor of two within seconds at worst,
//! so a heavy point is held to a limit measured *during* it: the job's CPU
//! time, from the CPU the server's process tree used over the point less
//! the strategy's own cost per request (measured under the tiny workload
//! with the same clients), per request answered. Then
//!
//! ```text
//! throughput ÷ (lanes ÷ job CPU time) = (cores busy − overhead cores) ÷ lanes
//! ```
//!
//! where lanes is the core count (one for exclusive): the share of the
//! machine that did the job itself. A strategy that leaves cores idle, or
//! burns them on hand-offs, scores less. The job timed through the server
//! just before and after the point (the probes) gives the same ratio from
//! wall time, shown beside it as a cross-check, noisy as the machine.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::results::{workloads_points, WorkloadResult};
use crate::sweep::Point;

/// Every target of the run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Targets {
    /// Heavy workload, clients ≥ cores, per strategy.
    pub(crate) heavy: Vec<HeavyTarget>,
    /// Tiny workload, 1 client: inline p50 ÷ the bare TCP ping-pong.
    pub(crate) tiny_inline_over_tcp_floor: RatioTarget,
    /// Tiny workload, 1 client: (procs p50 − inline p50) ÷ the socketpair
    /// round trip.
    pub(crate) tiny_procs_extra_over_socketpair_floor: RatioTarget,
}

/// A ratio and whether it met its target.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RatioTarget {
    /// As measured.
    pub(crate) ratio: f64,
    /// The target, in words.
    pub(crate) target: String,
    /// Whether `ratio` meets it.
    pub(crate) met: bool,
}

/// One strategy's heavy points against their limits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeavyTarget {
    /// inline, exclusive, threads or procs.
    pub(crate) strategy: String,
    /// What the throughput is divided by.
    pub(crate) limit: String,
    /// Each point with clients ≥ cores.
    pub(crate) points: Vec<HeavyRatio>,
    /// The lowest ratio of `points`.
    pub(crate) worst: f64,
    /// The target, in words.
    pub(crate) target: String,
    /// Whether every point meets it.
    pub(crate) met: bool,
}

/// One heavy point against its own limit.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeavyRatio {
    /// Client threads.
    pub(crate) clients: u64,
    /// Throughput ÷ the limit from the job's CPU time during the point.
    pub(crate) ratio: f64,
    /// The job's CPU time during the point, ms.
    pub(crate) job_cpu_ms: f64,
    /// Cores the server kept busy.
    pub(crate) cores_busy: f64,
    /// Of those, cores spent on the strategy's own cost per request.
    pub(crate) overhead_cores: f64,
    /// Throughput ÷ the limit from the probes' wall time (the cross-check).
    pub(crate) probe_ratio: f64,
    /// The probes' job time, ms (mean of before and after).
    pub(crate) probe_job_ms: f64,
}

/// Computes every target from `workloads`.
pub(crate) fn compute(
    workloads: &[WorkloadResult],
    cores: usize,
    tcp_us: f64,
    socketpair_us: f64,
) -> anyhow::Result<Targets> {
    let mut heavy = Vec::new();
    for strategy in crate::STRATEGIES {
        let points = workloads_points(workloads, "heavy", strategy)
            .with_context(|| format!("no heavy results for {strategy}"))?;
        let tiny = workloads_points(workloads, "tiny", strategy)
            .with_context(|| format!("no tiny results for {strategy}"))?;
        heavy.push(heavy_target(strategy, points, tiny, cores)?);
    }
    let tiny_p50 = |strategy| -> anyhow::Result<f64> {
        workloads_points(workloads, "tiny", strategy)
            .and_then(|points| points.iter().find(|p| p.clients == 1))
            .map(|p| p.p50_us)
            .with_context(|| format!("no 1-client tiny run for {strategy}"))
    };
    let (inline, procs) = (tiny_p50("inline")?, tiny_p50("procs")?);
    let inline_ratio = inline / tcp_us;
    let procs_ratio = (procs - inline) / socketpair_us;
    Ok(Targets {
        heavy,
        tiny_inline_over_tcp_floor: RatioTarget {
            ratio: inline_ratio,
            target: "≤ 1.15".into(),
            met: inline_ratio <= 1.15,
        },
        tiny_procs_extra_over_socketpair_floor: RatioTarget {
            ratio: procs_ratio,
            target: "≤ 1.3".into(),
            met: procs_ratio <= 1.3,
        },
    })
}

/// Exclusive runs one job at a time whatever the cores: it is held to one
/// core's worth, and "near" is within this band.
const ONE_CORE_BAND: (f64, f64) = (0.85, 1.10);

/// The server's CPU seconds per request at `point`: its cost per request
/// when the job is `sumn 1`.
fn cpu_per_request(point: &Point) -> f64 {
    if point.throughput > 0.0 {
        point.cores_busy / point.throughput
    } else {
        0.0
    }
}

fn heavy_target(
    strategy: &str,
    points: &[Point],
    tiny: &[Point],
    cores: usize,
) -> anyhow::Result<HeavyTarget> {
    let exclusive = strategy == "exclusive";
    let lanes = if exclusive { 1.0 } else { cores as f64 };
    let ratios: Vec<HeavyRatio> = points
        .iter()
        .filter(|p| p.clients >= cores as u64)
        .map(|p| {
            let probe_job_ms = p.job_ms().with_context(|| {
                format!("heavy point {} of {strategy} was not timed", p.clients)
            })?;
            let overhead = tiny
                .iter()
                .find(|t| t.clients == p.clients)
                .map(cpu_per_request)
                .with_context(|| {
                    format!("no tiny point with {} clients for {strategy}", p.clients)
                })?;
            let overhead_cores = overhead * p.throughput;
            let job_cores = (p.cores_busy - overhead_cores).max(0.0);
            Ok(HeavyRatio {
                clients: p.clients,
                ratio: job_cores / lanes,
                job_cpu_ms: job_cores / p.throughput * 1000.0,
                cores_busy: p.cores_busy,
                overhead_cores,
                probe_ratio: p.throughput * probe_job_ms / 1000.0 / lanes,
                probe_job_ms,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let worst = ratios.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
    let best = ratios.iter().map(|r| r.ratio).fold(0.0, f64::max);
    let (limit, target, met) = if exclusive {
        (
            "1 core ÷ job CPU time".to_owned(),
            format!("near one core: {}–{}", ONE_CORE_BAND.0, ONE_CORE_BAND.1),
            worst >= ONE_CORE_BAND.0 && best <= ONE_CORE_BAND.1,
        )
    } else {
        (
            format!("{cores} cores ÷ job CPU time"),
            "≥ 0.90".to_owned(),
            worst >= 0.90,
        )
    };
    Ok(HeavyTarget {
        strategy: strategy.to_owned(),
        limit,
        points: ratios,
        worst,
        target,
        met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(clients: u64, throughput: f64, cores_busy: f64) -> Point {
        Point {
            clients,
            requests: 0,
            seconds: 1.0,
            throughput,
            p50_us: 0.0,
            p99_us: 0.0,
            errors: 0,
            cores_busy,
            steal_share: 0.0,
            job_ms_before: Some(4.75),
            job_ms_after: Some(5.25),
            attempts: 1,
        }
    }

    /// The tiny workload: 20 000 req/s keeping 0.4 cores busy is 20 µs of
    /// the server's CPU per request.
    fn tiny() -> Vec<Point> {
        [1, 2, 4, 8].map(|c| point(c, 20_000.0, 0.4)).to_vec()
    }

    #[test]
    fn the_job_share_of_the_busy_cores_is_the_ratio() {
        // 400 req/s with 1.96 cores busy, 400 × 20 µs = 0.008 cores of
        // overhead: the job had 1.952 cores, 0.976 of two.
        let points = [
            point(1, 200.0, 0.98),
            point(2, 400.0, 1.96),
            point(4, 380.0, 1.84),
        ];
        let target = heavy_target("threads", &points, &tiny(), 2).unwrap();
        assert_eq!(target.points.len(), 2, "1 client is below the core count");
        let two = &target.points[0];
        assert!((two.overhead_cores - 0.008).abs() < 1e-9);
        assert!((two.ratio - 0.976).abs() < 1e-9);
        assert!((two.job_cpu_ms - 4.88).abs() < 1e-9);
        // The probes said 5 ms: 400 req/s is exactly the limit by them.
        assert!((two.probe_ratio - 1.0).abs() < 1e-9);
        assert!((target.points[1].ratio - (1.84 - 0.0076) / 2.0).abs() < 1e-9);
        assert!(target.met);
        let idle = [point(2, 300.0, 1.5)];
        assert!(!heavy_target("inline", &idle, &tiny(), 2).unwrap().met);
    }

    #[test]
    fn exclusive_is_held_to_one_core_both_ways() {
        let held = |busy| heavy_target("exclusive", &[point(2, 200.0, busy)], &tiny(), 2);
        assert!(held(1.0).unwrap().met);
        assert!(!held(1.9).unwrap().met, "two cores is not one");
        assert!(!held(0.6).unwrap().met, "most of one core idle");
    }

    #[test]
    fn a_heavy_point_needs_its_tiny_twin() {
        let only_one = [point(1, 20_000.0, 0.4)];
        assert!(heavy_target("procs", &[point(8, 400.0, 1.9)], &only_one, 2).is_err());
    }
}
