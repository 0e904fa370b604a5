//! `sumworker`: runs the jobs of `sumserver --apply remote`, taken from a
//! Redis stream, with a local strategy (see docs/distributed.md).
//!
//! Run: `cargo run --release -p ysum-worker -- --broker redis://127.0.0.1:6380`
//!
//! Threads: the reader (this one) takes jobs for the free slots and hands
//! them to the local strategy; the replier settles finished jobs; the lease
//! thread renews the leases of running jobs; the signal thread turns
//! SIGINT/SIGTERM into a graceful stop.

mod cli;
mod lease;
mod reader;
mod replier;
mod running;
mod settle;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser as _;
use nix::sys::signal::{SigSet, Signal};
use offload::broker::Broker;
use offload::Strategy;

use cli::Config;
use running::Running;

fn main() -> ExitCode {
    // A fork server for `--apply procs` is this executable started again;
    // it turns off here, before anything else runs (see offload's docs).
    offload::fork_server_main_if_requested();
    let args = cli::Args::parse();
    if let Some(what) = args.generate {
        return match cli::write_generated(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("sumworker: {err}");
                ExitCode::FAILURE
            }
        };
    }
    match args.into_config().and_then(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sumworker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn work(config: Config) -> anyhow::Result<()> {
    // As in sumserver: block the stop signals while this is the only thread
    // (every later thread inherits the mask), then start the strategy
    // (`procs` starts its fork server from this executable).
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    signals
        .thread_block()
        .context("could not block SIGINT and SIGTERM")?;
    let broker = Broker::new(&config.broker).context("bad --broker")?;
    let strategy =
        Strategy::start(&config.strategy).context("could not start the local strategy")?;
    init_logging(&config.log_filter)?;

    let stopping = Arc::new(AtomicBool::new(false));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn({
            let stopping = Arc::clone(&stopping);
            move || {
                if let Ok(signal) = signals.wait() {
                    tracing::info!(%signal, "signal received; finishing running jobs");
                    stopping.store(true, Ordering::Release);
                }
            }
        })
        .context("could not start the signal thread")?;

    let tick = (config.lease / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let running = Arc::new(Running::new(config.strategy.workers));
    let (finished, finished_rx) = crossbeam_channel::unbounded();
    // Raised once the reader has stopped and the running jobs are done.
    let stop_helpers = AtomicBool::new(false);
    tracing::info!(
        name = %config.name,
        broker = %config.broker,
        apply = %strategy.kind(),
        slots = config.strategy.workers,
        lease = ?config.lease,
        "sumworker started"
    );
    std::thread::scope(|scope| -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("replier".into())
            .spawn_scoped(scope, || {
                replier::run(&broker, &running, &finished_rx, &stop_helpers);
            })
            .context("could not start the replier")?;
        std::thread::Builder::new()
            .name("lease".into())
            .spawn_scoped(scope, || {
                lease::run(&broker, &config.name, &running, tick, &stop_helpers);
            })
            .context("could not start the lease thread")?;
        let reader = reader::Reader {
            config: &config,
            broker: &broker,
            strategy: &strategy,
            running: &running,
            finished,
            tick,
        };
        reader.run(&stopping);
        drop(reader);
        wind_down(&config, &strategy, &running);
        stop_helpers.store(true, Ordering::Release);
        Ok(())
    })?;
    drop(strategy);
    tracing::info!("sumworker stopped");
    Ok(())
}

/// Lets running jobs finish within the grace period, then cuts the rest
/// short: they are handed back (left pending, taken over after the lease).
fn wind_down(config: &Config, strategy: &Strategy, running: &Running) {
    let started = Instant::now();
    while !running.is_empty() && started.elapsed() < config.grace {
        running.wait_for_free(Duration::from_millis(50));
    }
    if !running.is_empty() {
        tracing::warn!(grace = ?config.grace, "jobs still running after the grace period; handing them back");
        strategy.shutdown();
        let cut = Instant::now();
        while !running.is_empty() && cut.elapsed() < Duration::from_secs(2) {
            running.wait_for_free(Duration::from_millis(50));
        }
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => filter.to_owned(),
    };
    let filter =
        EnvFilter::try_new(&filter).with_context(|| format!("bad log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
