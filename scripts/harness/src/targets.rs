//! The targets, computed as ratios from the points of this run.
//!
//! Heavy points are each held to the limit measured around them (the job
//! timed through the same server just before and just after the point), not
//! to one figure for the whole run: this machine's speed drifts.

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
    /// Throughput ÷ limit.
    pub(crate) ratio: f64,
    /// The job time the limit comes from, ms.
    pub(crate) job_ms: f64,
    /// Cores the server kept busy.
    pub(crate) cores_busy: f64,
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
        heavy.push(heavy_target(strategy, points, cores)?);
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

fn heavy_target(strategy: &str, points: &[Point], cores: usize) -> anyhow::Result<HeavyTarget> {
    let exclusive = strategy == "exclusive";
    let lanes = if exclusive { 1.0 } else { cores as f64 };
    let ratios: Vec<HeavyRatio> = points
        .iter()
        .filter(|p| p.clients >= cores as u64)
        .map(|p| {
            let job_ms = p.job_ms().with_context(|| {
                format!("heavy point {} of {strategy} was not timed", p.clients)
            })?;
            Ok(HeavyRatio {
                clients: p.clients,
                ratio: p.throughput * job_ms / 1000.0 / lanes,
                job_ms,
                cores_busy: p.cores_busy,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let worst = ratios.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
    let best = ratios.iter().map(|r| r.ratio).fold(0.0, f64::max);
    let (limit, target, met) = if exclusive {
        (
            "1 core ÷ job time".to_owned(),
            format!("near one core: {}–{}", ONE_CORE_BAND.0, ONE_CORE_BAND.1),
            worst >= ONE_CORE_BAND.0 && best <= ONE_CORE_BAND.1,
        )
    } else {
        (
            format!("{cores} cores ÷ job time"),
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

    fn point(clients: u64, throughput: f64, job_ms: f64) -> Point {
        Point {
            clients,
            requests: 0,
            seconds: 1.0,
            throughput,
            p50_us: 0.0,
            p99_us: 0.0,
            errors: 0,
            cores_busy: 2.0,
            steal_share: 0.0,
            job_ms_before: Some(job_ms * 0.95),
            job_ms_after: Some(job_ms * 1.05),
            attempts: 1,
        }
    }

    #[test]
    fn each_point_is_held_to_its_own_limit() {
        // 2 cores, 5 ms then 4 ms jobs: limits of 400 and 500 req/s.
        let points = [
            point(1, 200.0, 5.0),
            point(2, 380.0, 5.0),
            point(4, 450.0, 4.0),
        ];
        let target = heavy_target("threads", &points, 2).unwrap();
        assert_eq!(target.points.len(), 2, "1 client is below the core count");
        assert!((target.points[0].ratio - 0.95).abs() < 1e-9);
        assert!((target.points[1].ratio - 0.90).abs() < 1e-9);
        assert!(target.met);
        let slow = [point(2, 300.0, 5.0)];
        assert!(!heavy_target("inline", &slow, 2).unwrap().met);
    }

    #[test]
    fn exclusive_is_held_to_one_core_both_ways() {
        assert!(
            heavy_target("exclusive", &[point(2, 195.0, 5.0)], 2)
                .unwrap()
                .met
        );
        assert!(
            !heavy_target("exclusive", &[point(2, 390.0, 5.0)], 2)
                .unwrap()
                .met
        );
        assert!(
            !heavy_target("exclusive", &[point(2, 100.0, 5.0)], 2)
                .unwrap()
                .met
        );
    }
}
