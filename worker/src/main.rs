//! `sumworker`: runs the jobs of `sumserver --apply remote`, taken from a
//! Redis stream, with a local strategy (see docs/distributed.md).
//!
//! Run: `cargo run --release -p ysum-worker -- --broker redis://127.0.0.1:6380`
//!
//! Threads: the reader (this one) takes jobs for the free slots and hands
//! them to the local strategy; the thread that finishes a job settles it and
//! reads the next one for its slot in the same round trip; the replier
//! settles what those could not; the lease thread renews the leases of
//! running jobs; the signal thread turns SIGINT/SIGTERM into a graceful
//! stop.

mod cli;
mod counts;
mod lease;
mod metrics;
mod reader;
mod replier;
mod running;
mod settle;
mod stop;
mod take;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use offload::broker::{Broker, Probe, Role};
use offload::Strategy;
use service::logging;
use service::StopSignals;

use cli::Config;
use counts::Counts;
use running::Running;
use stop::Stop;
use take::Taker;

fn main() -> ExitCode {
    // A fork server for `--apply procs` is this executable started again;
    // it turns off here, before anything else runs (see offload's docs).
    offload::fork_server_main_if_requested();
    let args = cli::parse();
    let log_format = args.log_format();
    if let Some(what) = args.generate {
        return match cli::write_generated(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                logging::last_words("sumworker", &format!("sumworker: {err}"), log_format);
                ExitCode::FAILURE
            }
        };
    }
    let status = match args.into_config().and_then(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::finish();
            logging::last_words("sumworker", &format!("sumworker: {err:#}"), log_format);
            return ExitCode::FAILURE;
        }
    };
    logging::finish();
    status
}

fn work(config: Config) -> anyhow::Result<()> {
    // As in sumserver: block the stop signals while this is the only thread
    // (every later thread inherits the mask), then start the strategy
    // (`procs` starts its fork server from this executable).
    let signals = StopSignals::block().context("could not block SIGINT, SIGTERM and SIGHUP")?;
    let broker = Broker::new(&config.broker).context("bad --broker")?;
    let strategy =
        Arc::new(Strategy::start(&config.strategy).context("could not start the local strategy")?);
    logging::start(&config.log_filter, config.log_format)?;
    // A broker that refuses the credentials is a configuration error, told
    // at once; one that does not answer may come later.
    match broker.probe(Role::Worker { name: &config.name }) {
        Ok(()) => {}
        Err(Probe::Refused(detail)) => anyhow::bail!("{detail}"),
        Err(Probe::Unreachable(why)) => {
            tracing::warn!(broker = broker.shown(), %why, "the broker is not reachable yet; waiting for it");
        }
    }

    let stop = Arc::new(Stop::default());
    signals
        .watch({
            let (stop, grace) = (Arc::clone(&stop), config.grace);
            move |signal| {
                tracing::info!(%signal, ?grace, "signal received; finishing running jobs");
                stop.request(grace);
            }
        })
        .context("could not start the signal thread")?;

    let tick = (config.lease / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let running = Arc::new(Running::new(config.strategy.workers));
    let counts = Arc::new(Counts::default());
    let metrics = config
        .metrics
        .map(|addr| {
            let collector = metrics::WorkerCollector {
                stats: strategy.stats_reader(),
                counts: Arc::clone(&counts),
                running: Arc::clone(&running),
                broker: broker.clone(),
                name: config.name.clone(),
                started: Instant::now(),
            };
            let ready = metrics::readiness(
                strategy.stats_reader(),
                Arc::clone(&counts),
                Arc::clone(&stop),
            );
            service::MetricsEndpoint::start(addr, "ysum_worker", Box::new(collector), ready)
        })
        .transpose()?;
    if let Some(metrics) = &metrics {
        // Scripts and tests wait for this line, as for sumserver's.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "metrics on {}", metrics.addr()).and_then(|()| out.flush());
    }
    let (unsent, unsent_rx) = crossbeam_channel::unbounded();
    let taker = Arc::new(Taker {
        name: config.name.clone(),
        broker: broker.clone(),
        running: Arc::clone(&running),
        unsent,
        strategy: Arc::downgrade(&strategy),
        counts: Arc::clone(&counts),
    });
    tracing::info!(
        name = %config.name,
        broker = broker.shown(),
        apply = %strategy.kind(),
        slots = config.strategy.workers,
        lease = ?config.lease,
        "sumworker started"
    );
    std::thread::scope(|scope| -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("replier".into())
            .spawn_scoped(scope, || {
                replier::run(&broker, &running, &unsent_rx, &stop, &counts);
            })
            .context("could not start the replier")?;
        std::thread::Builder::new()
            .name("lease".into())
            .spawn_scoped(scope, || {
                let me = lease::Identity {
                    name: &config.name,
                    slots: config.strategy.workers,
                    lease: config.lease,
                    counts: &counts,
                };
                // A job its server withdrew stops at its next yield point.
                let withdraw = |entry: &str| {
                    if let Some(client) = running.client_of(entry) {
                        strategy.withdraw(&client);
                    }
                };
                lease::run(&broker, &me, &running, tick, &stop, &withdraw);
            })
            .context("could not start the lease thread")?;
        let reader = reader::Reader {
            config: &config,
            broker: &broker,
            running: &running,
            taker: &taker,
            tick,
        };
        reader.run(&stop);
        // Finishing jobs read no more either.
        running.close();
        wind_down(&stop, &strategy, &running);
        stop.release_helpers();
        Ok(())
    })?;
    let refused = &counts.refused;
    tracing::info!(
        most_held = running.most_held(),
        slots = config.strategy.workers,
        refused_malformed = Counts::get(&refused.malformed),
        refused_forged = Counts::get(&refused.forged),
        refused_foreign_key = Counts::get(&refused.foreign_key),
        left_newer_format = Counts::get(&counts.left.entries),
        "sumworker stopped"
    );
    drop(metrics);
    drop(taker);
    stop_strategy(strategy);
    Ok(())
}

/// How long before the end of the grace period running jobs are cut short,
/// so that cutting them (and handing them back) is over by its end.
const CUT_BEFORE_THE_END: Duration = Duration::from_millis(300);

/// Lets running jobs finish, and their replies go out, within the grace
/// period; then cuts the rest short: they are handed back (left pending,
/// taken over after the lease).
fn wind_down(stop: &Stop, strategy: &Strategy, running: &Running) {
    let left = || stop.left().unwrap_or_default();
    while !running.is_empty() && left() > CUT_BEFORE_THE_END {
        running.wait_for_change(Duration::from_millis(50).min(left()));
    }
    if !running.is_empty() {
        tracing::warn!("jobs still running at the end of the grace period; handing them back");
        strategy.shutdown();
        while !running.is_empty() && !left().is_zero() {
            running.wait_for_change(Duration::from_millis(20).min(left()));
        }
    }
}

/// Drops the local strategy on this thread, which joins its pool threads.
/// A pool thread may still hold it for a moment (it started a job just
/// before the table emptied); if it held it last, it would drop it and join
/// itself.
fn stop_strategy(mut strategy: Arc<Strategy>) {
    let started = Instant::now();
    loop {
        match Arc::try_unwrap(strategy) {
            Ok(alone) => return drop(alone),
            Err(shared) if started.elapsed() < Duration::from_secs(2) => {
                strategy = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(shared) => {
                // A job's start stuck for seconds: not seen. Left to the
                // process's exit, which follows at once.
                tracing::warn!("the local strategy is still in use; not waiting for it");
                std::mem::forget(shared);
                return;
            }
        }
    }
}
