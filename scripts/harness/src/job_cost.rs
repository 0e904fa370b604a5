//! The heavy job's time in each strategy's context, measured side by side:
//! rounds that each start every strategy's server once and time the job
//! through it (one client, one job at a time, the median of a few), so that
//! the machine's drift lands on every context alike. The medians over the
//! rounds say how much slower the job runs in each context than in the
//! fastest one (issue 15: it must cost the same everywhere); `targets.rs`
//! holds every heavy point to the fastest context with them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::server::Server;

/// Jobs timed through each server per round (their median is the round's).
const JOBS_PER_ROUND: usize = 15;

/// One context's median job time, and how it compares with the fastest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContextCost {
    /// The strategy, as `--apply` names it.
    pub(crate) strategy: String,
    /// Median over the rounds of the job's time through that server, ms
    /// (a round trip included: some 30 µs).
    pub(crate) job_ms: f64,
    /// `job_ms` ÷ the fastest context's: 1 for the fastest.
    pub(crate) slowdown: f64,
}

/// Times `sumn n` under every strategy of `strategies`, `rounds` times,
/// each server with a worker per core.
pub(crate) fn measure(
    server_bin: &Path,
    strategies: &[&str],
    n: u64,
    cores: usize,
    rounds: usize,
) -> anyhow::Result<Vec<ContextCost>> {
    let mut times: Vec<Vec<f64>> = strategies.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (strategy, times) in strategies.iter().zip(&mut times) {
            let extra = ["--workers".to_owned(), cores.to_string()];
            let server = Server::start(server_bin, strategy, &extra)?;
            times.push(crate::sweep::median_job_ms(server.addr, n, JOBS_PER_ROUND)?);
            server.stop()?;
        }
    }
    let medians: Vec<f64> = times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let fastest = medians.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(strategies
        .iter()
        .zip(medians)
        .map(|(strategy, job_ms)| ContextCost {
            strategy: (*strategy).to_owned(),
            job_ms,
            slowdown: job_ms / fastest,
        })
        .collect())
}
