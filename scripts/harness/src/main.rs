//! `ysum-bench`, the engine of `scripts/bench`: the 2009 experiment and two
//! more workloads, against every strategy, beside the floors of this machine.
//!
//! Run: `scripts/bench` (or `scripts/bench --quick`).
//!
//! - `floors`: bare TCP and socketpair round trips, Python's `Pool.apply`,
//!   the job's own time.
//! - `sweep`: one workload × one strategy, point by point, watched through
//!   `procfs`.
//! - `responsiveness` and `connections`: the two `--io` workloads.
//! - `side_by_side`: tiny jobs on every server, in interleaved rounds,
//!   beside two floor servers (`floor_server`).
//! - `job_cost`: the heavy job's time in every strategy's context.
//! - `targets`: the ratios; `results`: the typed `results.json`;
//!   `report`: `results.md`; `charts`: the SVGs.

mod charts;
mod cli;
mod connections;
mod floor_server;
mod floors;
mod job_cost;
mod procfs;
mod report;
mod responsiveness;
mod results;
mod server;
mod side_by_side;
mod sweep;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser as _;

use crate::results::{Floors, Machine, Results, StrategyResult, WorkloadResult};
use crate::sweep::{Binaries, Workload};

/// Every strategy, in the order of the tables: the four of the 2009
/// experiment, then the hybrid, `procs` with tiny jobs run on the calling
/// thread (`--inline-below`, off by default so that the four stay pure).
pub(crate) const STRATEGIES: [&str; 5] = ["inline", "exclusive", "threads", "procs", HYBRID];

/// The hybrid's `--apply` value, as the tables name it.
pub(crate) const HYBRID: &str = "procs --inline-below 100us";

/// The I/O models of `sumserver --io`.
const IO_MODES: [&str; 2] = ["threads", "events"];

/// Client counts of every sweep.
const SWEEP: [u64; 4] = [1, 2, 4, 8];

fn main() {
    if let Err(err) = run() {
        eprintln!("bench: {err:#}");
        std::process::exit(1);
    }
}

/// Writes results.md and the charts of `results` into `out`; returns the
/// Markdown.
fn write_report(out: &std::path::Path, results: &Results) -> anyhow::Result<String> {
    charts::draw_workloads(out, results)?;
    let markdown = report::markdown(results)?;
    std::fs::write(out.join("results.md"), &markdown)?;
    Ok(markdown)
}

/// `--from`: the report of an earlier run, drawn again.
fn rerender(from: &std::path::Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(from).with_context(|| format!("cannot read {}", from.display()))?;
    let results: Results = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results.json of scripts/bench", from.display()))?;
    let out = out.unwrap_or_else(|| from.parent().map_or_else(PathBuf::new, ToOwned::to_owned));
    write_report(&out, &results)?;
    eprintln!("wrote {}/results.md and the charts again", out.display());
    Ok(())
}

fn run() -> anyhow::Result<()> {
    // This binary is also the floor servers of the side-by-side table.
    floor_server::run_if_requested();
    // Forked before any thread exists.
    let echo = floors::Echo::start()?;
    let command = std::iter::once("scripts/bench".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let args = cli::Args::parse();
    if let Some(from) = &args.from {
        return rerender(from, args.out);
    }
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let date = humantime::format_rfc3339_seconds(started_at).to_string();
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("binary has no folder")?
            .to_owned(),
    };
    let (server_bin, client_bin) = (bin_dir.join("sumserver"), bin_dir.join("sumclient"));
    for bin in [&server_bin, &client_bin] {
        if !bin.exists() {
            bail!(
                "{} is missing: build it with cargo build --release -p ysum-server -p ysum-client",
                bin.display()
            );
        }
    }
    let bins = Binaries {
        server: &server_bin,
        client: &client_bin,
    };
    let out = match args.out {
        Some(out) => out,
        None => PathBuf::from(format!("results/run-{}", date.replace(':', ""))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let machine = Machine::here();

    eprintln!("measuring the floors…");
    let socketpair_us = echo.measure()?;
    let tcp_us = floors::tcp_ping_pong_us()?;
    let python_us = floors::python_pool_apply_us();
    let heavy_n = floors::calibrate_sumn(&server_bin, Duration::from_millis(5))?;
    let heavy_job_ms_at_start = floors::server_sumn_ms(&server_bin, heavy_n)?;
    let seed_job_us = floors::server_sumn_ms(&server_bin, 25_000)? * 1000.0;

    let mut workloads = Vec::new();
    for workload in workloads_of(args.quick, heavy_n) {
        let mut strategies = Vec::new();
        for strategy in STRATEGIES {
            eprintln!("{} × {strategy}…", workload.name);
            let server_args = [
                "--workers",
                &machine.cores.to_string(),
                "--queue-wait",
                "60s",
                "--queue",
                "1024",
            ]
            .map(String::from);
            let (points, sumclient) = sweep::run(&bins, &workload, strategy, &server_args, &SWEEP)?;
            strategies.push(StrategyResult {
                strategy: strategy.to_owned(),
                points,
                sumclient,
            });
        }
        workloads.push(WorkloadResult {
            workload: workload.name.to_owned(),
            what: workload.what,
            strategies,
        });
    }

    let side_by_side = side_by_side::run(&server_bin, &client_bin, machine.cores, args.quick)?;

    let mut responsiveness = Vec::new();
    let plan = responsiveness::Plan {
        heavy_n: heavy_n * 10,
        duration: Duration::from_millis(if args.quick { 1000 } else { 3000 }),
        cores: machine.cores,
    };
    for io in IO_MODES {
        for strategy in STRATEGIES {
            eprintln!("responsiveness: --io {io} × {strategy}…");
            responsiveness.push(responsiveness::run(&bins, &plan, io, strategy)?);
        }
    }
    let idle = if args.quick { 500 } else { 10_000 };
    connections::raise_descriptor_limit(idle as u64 + 1024)?;
    let mut many = Vec::new();
    for io in IO_MODES {
        eprintln!("{idle} idle connections: --io {io}…");
        let active_for = Duration::from_millis(if args.quick { 500 } else { 2500 });
        many.push(connections::run(
            &bins,
            io,
            idle,
            active_for,
            machine.cores,
        )?);
    }

    let mut heavy_job_ms: Vec<f64> = workloads
        .iter()
        .flat_map(|w| &w.strategies)
        .flat_map(|s| &s.points)
        .flat_map(|p| [p.job_ms_before, p.job_ms_after])
        .flatten()
        .collect();
    heavy_job_ms.sort_by(f64::total_cmp);
    let heavy_job_ms_median = heavy_job_ms
        .get(heavy_job_ms.len() / 2)
        .copied()
        .unwrap_or(heavy_job_ms_at_start);
    eprintln!("the heavy job in every context, side by side…");
    let rounds = if args.quick { 1 } else { 5 };
    let contexts = job_cost::measure(&server_bin, &STRATEGIES, heavy_n, machine.cores, rounds)?;
    let targets = targets::compute(&workloads, contexts, machine.cores, tcp_us, socketpair_us)?;
    let results = Results {
        command,
        commit: results::commit(),
        date: Some(date),
        quick: args.quick,
        elapsed_s: started.elapsed().as_secs_f64(),
        floors: Floors {
            tcp_ping_pong_us: tcp_us,
            socketpair_ping_pong_us: socketpair_us,
            python_pool_apply_us: python_us,
            sumn_25000_us: seed_job_us,
            heavy_n,
            heavy_job_ms_at_start,
            heavy_job_ms_median,
            heavy_physical_limit_rps: machine.cores as f64 * 1000.0 / heavy_job_ms_median,
        },
        machine,
        targets,
        side_by_side: Some(side_by_side),
        workloads,
        responsiveness,
        connections: many,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let markdown = write_report(&out, &results)?;
    println!("{markdown}");
    eprintln!("wrote {} in {:.0} s", out.display(), results.elapsed_s);
    Ok(())
}

/// seed, heavy and tiny, shortened for `--quick`.
fn workloads_of(quick: bool, heavy_n: u64) -> Vec<Workload> {
    let run_for = if quick { "500ms" } else { "2000ms" };
    let warmup = if quick { "200ms" } else { "500ms" };
    let timed = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--duration", run_for, "--warmup", warmup].map(String::from));
        v
    };
    let seed_requests = if quick { "200" } else { "1000" };
    vec![
        Workload {
            name: "seed",
            what: format!(
                "the 2009 experiment: {seed_requests} requests of sumn 25000, a new connection each (seed dialect)"
            ),
            client_args: ["--requests", seed_requests, "--job", "sumn:25000"]
                .map(String::from)
                .to_vec(),
            probe_n: None,
        },
        Workload {
            name: "heavy",
            what: format!("keep-alive, sumn {heavy_n} (about 5 ms here), {run_for} per point"),
            client_args: timed(&["--keep-alive", "--job", &format!("sumn:{heavy_n}")]),
            probe_n: Some(heavy_n),
        },
        Workload {
            name: "tiny",
            what: format!("keep-alive, sumn 1 (the server's own cost), {run_for} per point"),
            client_args: timed(&["--keep-alive", "--job", "sumn:1"]),
            probe_n: None,
        },
    ]
}
