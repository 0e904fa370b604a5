//! One run: start the threads together, let each work through its
//! schedule, merge what they saw into a [`Report`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{Amount, Config};
use crate::interrupt::Interrupt;
use crate::progress::Progress;
use crate::report::Report;
use crate::schedule::{Limit, Pacing, Schedule};
use crate::stats::Stats;
use crate::worker::{Shared, Worker};

/// Stack for each client thread: they need little, and a run may start
/// thousands.
const STACK_SIZE: usize = 256 * 1024;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings cannot make a run (the message says which and why).
    #[error("{0}")]
    BadConfig(String),
    /// No connect of the whole run succeeded; each address with the reason
    /// its connect failed.
    #[error("{}", unreachable_message(.0))]
    CannotConnect(Vec<(SocketAddr, String)>),
    /// The system would not start another thread.
    #[error("could not start client thread {index} of {threads}")]
    Spawn {
        /// The thread that could not start (from 0).
        index: usize,
        /// How many were asked for.
        threads: usize,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

fn unreachable_message(addrs: &[(SocketAddr, String)]) -> String {
    let parts: Vec<String> = addrs
        .iter()
        .map(|(addr, reason)| format!("cannot connect to {addr}: {reason}"))
        .collect();
    parts.join("; ")
}

/// Makes one run as `config` says; with `show_progress`, a progress bar
/// goes to stderr (and is wiped at the end). Once `interrupt` is raised no
/// new request is sent, the ones in flight get
/// [`GRACE`](crate::interrupt::GRACE) to finish, and the report of what was
/// done is returned, marked as interrupted.
///
/// # Errors
///
/// [`RunError::CannotConnect`] when no connection could be made at all,
/// [`RunError::BadConfig`] for settings that leave a thread nothing to do,
/// [`RunError::Spawn`] when the threads cannot be started.
///
/// # Examples
///
/// ```no_run
/// let stop = client::Interrupt::new();
/// let report = client::run(&client::Config::seed(4), false, &stop)?;
/// println!("{} requests/s", report.throughput());
/// # Ok::<(), client::RunError>(())
/// ```
pub fn run(
    config: &Config,
    show_progress: bool,
    interrupt: &Interrupt,
) -> Result<Report, RunError> {
    check(config)?;
    let shared = Shared::default();
    let gate = Gate::default();
    let (stats, started, ended) = thread::scope(|scope| {
        let mut workers = Vec::with_capacity(config.threads);
        for index in 0..config.threads {
            let (gate, shared) = (&gate, &shared);
            let spawned = thread::Builder::new()
                .name(format!("sumclient-{index}"))
                .stack_size(STACK_SIZE)
                .spawn_scoped(scope, move || {
                    let start = gate.wait()?;
                    Some(worker(config, index, start, shared, interrupt).run())
                });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(source) => {
                    gate.release(None);
                    return Err(RunError::Spawn {
                        index,
                        threads: config.threads,
                        source,
                    });
                }
            }
        }
        let started = Instant::now();
        gate.release(Some(started));
        let progress = Progress::start(scope, config, &shared.finished, started, show_progress);
        let mut stats = Stats::default();
        for handle in workers {
            match handle.join() {
                Ok(seen) => stats.merge(seen.expect("the gate opened")),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        let ended = Instant::now();
        drop(progress);
        Ok((stats, started, ended))
    })?;
    if !shared.connected_any.load(Ordering::Relaxed) && !stats.unreachable.is_empty() {
        return Err(RunError::CannotConnect(
            stats.unreachable.into_iter().collect(),
        ));
    }
    let measured_from = started + config.warmup;
    let send_span = stats.last_start.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(measured_from)
    });
    Ok(Report {
        config: config.clone(),
        elapsed: ended.saturating_duration_since(measured_from),
        send_span,
        stats,
        interrupted: interrupt.raised(),
    })
}

/// Refuses settings that leave a thread nothing to do.
fn check(config: &Config) -> Result<(), RunError> {
    let bad = |message: String| Err(RunError::BadConfig(message));
    if config.threads == 0 {
        return bad("the number of threads must be at least 1, got 0".into());
    }
    if config.targets.is_empty() {
        return bad("no address to send requests to".into());
    }
    if let Amount::Requests(total) = config.amount {
        if total < config.threads as u64 {
            return bad(format!(
                "{total} requests leave some of the {} threads nothing to do \
                 (each makes total / threads, as the original)",
                config.threads
            ));
        }
    }
    match config.rate {
        Some(rate) if !(rate.is_finite() && rate > 0.0) => {
            bad(format!("the rate must be above 0 requests/s, got {rate}"))
        }
        _ => Ok(()),
    }
}

/// Thread `index`'s worker, its schedule starting at `start`.
fn worker<'a>(
    config: &'a Config,
    index: usize,
    start: Instant,
    shared: &'a Shared,
    interrupt: &'a Interrupt,
) -> Worker<'a> {
    let measure_from = start + config.warmup;
    let limit = match config.amount {
        Amount::Requests(_) => Limit::Requests(config.requests_per_thread().unwrap_or(0)),
        Amount::Duration(length) => Limit::Until(measure_from + length),
    };
    let pacing = match config.rate {
        None => Pacing::Closed,
        Some(rate) => {
            // Each thread gets rate / threads, its requests staggered
            // against the other threads' by a fraction of the interval.
            let interval = Duration::from_secs_f64(config.threads as f64 / rate);
            let first = start + interval.mul_f64(index as f64 / config.threads as f64);
            Pacing::Open { first, interval }
        }
    };
    Worker {
        addr: config.target(index),
        connection: config.connection,
        timeout: config.timeout,
        retries: config.retries,
        sentinel: config.mix.sentinel(),
        schedule: Schedule::new(pacing, measure_from, limit),
        picker: config.mix.picker(index),
        shared,
        interrupt,
        stats: Stats::default(),
        connected_once: false,
        trail: config
            .history
            .as_deref()
            .map(|history| history.trail(index)),
    }
}

/// Holds the threads until all are started, then lets them go with a
/// common start time (or none, when the run is called off).
#[derive(Debug, Default)]
struct Gate {
    /// `None` until released; then the start time, or `None` inside to
    /// call the run off.
    state: Mutex<Option<Option<Instant>>>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(start) = *state {
                return start;
            }
            state = self.opened.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, start: Option<Instant>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(start);
        self.opened.notify_all();
    }
}
