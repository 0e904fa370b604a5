//! `sumclient`: N client threads against sumserver, every answer checked,
//! throughput and latency reported.
//!
//! Run: `cargo run --release -p ysum-client -- 4` (against
//! `cargo run --release -p ysum-server -- --apply threads`)

mod cli;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use client::history::History;
use client::{hgrm, json, sweep, text, Interrupt, Report, RunError};

/// Exit status when every answer was right.
const ALL_RIGHT: u8 = 0;
/// Exit status when an answer was wrong or a request failed.
const SOME_FAILED: u8 = 1;
/// Exit status when nothing could be measured: no connection at all, bad
/// arguments, a report that could not be written.
const COULD_NOT_RUN: u8 = 2;
/// Exit status after Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args = cli::parse();
    if let Some(what) = args.generate {
        return match cli::write_generated(what, &mut io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("sumclient: {err}");
                ExitCode::from(COULD_NOT_RUN)
            }
        };
    }
    let plan = match args.into_plan() {
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

/// Ctrl-C: the first raises `interrupt` (the run stops sending and reports
/// what it did); a second quits at once, wiping the progress bar.
fn on_ctrl_c(interrupt: Arc<Interrupt>) -> anyhow::Result<()> {
    ctrlc::set_handler(move || {
        if !interrupt.raise() {
            if io::stderr().is_terminal() {
                eprint!("\r\x1b[K");
            }
            std::process::exit(i32::from(INTERRUPTED));
        }
    })
    .context("could not install the Ctrl-C handler")
}

/// Runs the plan, prints the report, and returns the exit status.
fn execute(mut plan: cli::Plan) -> anyhow::Result<u8> {
    // Every output file is opened before the load, so that a bad path
    // fails at once rather than after the whole run.
    let hgrm_out = match &plan.hgrm {
        Some(path) => {
            Some(File::create(path).with_context(|| format!("could not create {path:?}"))?)
        }
        None => None,
    };
    if let Some(path) = &plan.history {
        let history =
            History::create(path).with_context(|| format!("could not create {path:?}"))?;
        plan.config.history = Some(Arc::new(history));
    }
    let interrupt = Arc::new(Interrupt::new());
    on_ctrl_c(Arc::clone(&interrupt))?;
    let show_progress = io::stderr().is_terminal();
    let outcome = match &plan.sweep {
        Some(threads) => sweep::sweep(&plan.config, threads, show_progress, &interrupt),
        None => client::run(&plan.config, show_progress, &interrupt).map(|report| vec![report]),
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
    if reports.is_empty() {
        // Interrupted before the first run of a sweep started.
        return Ok(INTERRUPTED);
    }

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

    if let (Some(path), Some(file)) = (&plan.hgrm, hgrm_out) {
        let mut out = BufWriter::new(file);
        hgrm::write_hgrm(&reports[0].stats.latency(), &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("could not write {path:?}"))?;
    }

    if let (Some(path), Some(history)) = (&plan.history, &plan.config.history) {
        history
            .finish()
            .with_context(|| format!("could not write {path:?}"))?;
    }

    for report in &reports {
        warn(report, plan.json || plan.sweep.is_some());
    }
    if interrupt.raised() {
        return Ok(INTERRUPTED);
    }
    let all_right = reports.iter().all(Report::all_right);
    Ok(if all_right { ALL_RIGHT } else { SOME_FAILED })
}

/// Warnings on stderr: addresses given up on, an open loop short of its
/// rate, and (when stdout does not show them) the first wrong answer and
/// extra replies.
fn warn(report: &Report, stdout_hides_wrong: bool) {
    for (addr, reason) in &report.stats.unreachable {
        eprintln!(
            "sumclient: cannot connect to {addr}: {reason} (its threads' requests are \
             counted as errors)"
        );
    }
    if let Some((addr, reply)) = report
        .stats
        .extra
        .first
        .as_ref()
        .filter(|_| stdout_hides_wrong)
    {
        eprintln!(
            "sumclient: {} extra replies that no request asked for, the first from {addr}: \
             {reply:?}",
            report.stats.extra.count
        );
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
