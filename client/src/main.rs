//! `sumclient`: N client threads against sumserver, every answer checked,
//! throughput and latency reported.
//!
//! Run: `cargo run --release -p client -- 4` (against
//! `cargo run --release -p server -- --apply threads`)

mod cli;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use client::{hgrm, json, sweep, text, Report, RunError};

/// Exit status when every answer was right.
const ALL_RIGHT: u8 = 0;
/// Exit status when an answer was wrong or a request failed.
const SOME_FAILED: u8 = 1;
/// Exit status when nothing could be measured: no connection at all, bad
/// arguments, a report that could not be written.
const COULD_NOT_RUN: u8 = 2;

fn main() -> ExitCode {
    let plan = match cli::Args::parse().into_plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("sumclient: {err:#}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    match execute(plan) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("sumclient: {err:#}");
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

/// Runs the plan, prints the report, and returns the exit status.
fn execute(plan: cli::Plan) -> anyhow::Result<u8> {
    let show_progress = io::stderr().is_terminal();
    let outcome = match &plan.sweep {
        Some(threads) => sweep::sweep(&plan.config, threads, show_progress),
        None => client::run(&plan.config, show_progress).map(|report| vec![report]),
    };
    let reports = match outcome {
        Ok(reports) => reports,
        Err(RunError::CannotConnect(addrs)) => {
            for (addr, reason) in addrs {
                eprintln!("sumclient: cannot connect to {addr}: {reason}");
            }
            return Ok(COULD_NOT_RUN);
        }
        Err(err) => return Err(err).context("the run could not be made"),
    };

    let report = match (plan.json, plan.sweep.is_some()) {
        (true, true) => json::render_sweep(&reports) + "\n",
        (true, false) => json::render(&reports[0]) + "\n",
        (false, true) => sweep::render(&reports),
        (false, false) => text::render(&reports[0]),
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // Whoever read the report stopped early (`| head`): not an error.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("could not write the report")?,
    }

    if let Some(path) = &plan.hgrm {
        let file = File::create(path).with_context(|| format!("could not create {path:?}"))?;
        let mut out = BufWriter::new(file);
        hgrm::write_hgrm(&reports[0].stats.latency(), &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("could not write {path:?}"))?;
    }

    for report in &reports {
        warn(report, plan.json || plan.sweep.is_some());
    }
    let all_right = reports.iter().all(Report::all_right);
    Ok(if all_right { ALL_RIGHT } else { SOME_FAILED })
}

/// Warnings on stderr: addresses given up on, an open loop short of its
/// rate, and (when stdout does not show it) the first wrong answer.
fn warn(report: &Report, stdout_hides_wrong: bool) {
    for (addr, reason) in &report.stats.unreachable {
        eprintln!("sumclient: cannot connect to {addr}: {reason} (its threads gave up)");
    }
    if let Some(rate) = report.rate_check().filter(|rate| rate.short) {
        eprintln!(
            "sumclient: warning: achieved {:.1} requests/s, {:.0}% of the {} asked; the \
             figures describe a lighter load than intended",
            rate.achieved,
            100.0 * rate.achieved / rate.target,
            rate.target
        );
    }
    if let Some(wrong) = report
        .stats
        .first_wrong
        .as_ref()
        .filter(|_| stdout_hides_wrong)
    {
        eprintln!(
            "sumclient: first wrong answer: request {:?} to {} got {:?}, expected {:?}",
            wrong.request, wrong.addr, wrong.reply, wrong.expected
        );
    }
}
