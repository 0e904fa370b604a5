//! Strategies: where a job runs while its caller blocks, or while an event
//! loop gets on with other work.
//!
//! [`Strategy`] is the one type that callers see. It wraps a private closed
//! enum of implementations (the way crossbeam's `Sender` wraps its flavors),
//! so the code that serves a connection never knows, or matches on, which one
//! it has:
//!
//! | name | where the job runs | what it shows |
//! |---|---|---|
//! | `inline` | on the calling thread | the original's default `apply` |
//! | `exclusive` | on the calling thread, under one global lock | the original's `exclusive_apply` |
//! | `threads` | in a pool of worker threads fed by a bounded queue | Rust's native answer: no GIL |
//! | `procs` (`pool`) | in a pool of forked worker processes, over ipc-channel | `multiprocessing.Pool.apply`, with isolation and killable jobs |
//! | `remote` | in `sumworker` processes anywhere, through a Redis stream | "send it out to the cloud": see `docs/distributed.md` |
//!
//! Every strategy applies the same limits: a job waits at most
//! [`StrategyConfig::queue_wait`] for a worker (and at most
//! [`StrategyConfig::queue`] jobs wait at once) before it is refused as
//! [`ApplyError::Busy`]; it runs at most [`StrategyConfig::job_timeout`]
//! before [`ApplyError::Timeout`]; a panic becomes [`ApplyError::JobPanicked`]
//! for its caller alone.
//!
//! In front of the strategies that hand work away, an optional rule
//! ([`StrategyConfig::inline_below`], `inline_below.rs`) runs the jobs
//! predicted to be tiny on the caller's thread instead, since handing them
//! over costs more than running them.
//!
//! Two ways in, one implementation per strategy: [`Strategy::submit`] hands a
//! job over with a callback that is called exactly once with its result, and
//! [`Strategy::apply`] is `submit` with a one-slot reply (`reply.rs`) that
//! the calling thread waits on. Each flavor sees a private `Done` (the promise to report
//! the result, which reports `ShuttingDown` if it is ever dropped unkept) and
//! whether the caller may block.

mod client;
mod cost;
mod done;
mod exclusive;
mod inline;
mod inline_below;
mod procs;
mod queue;
mod remote;
mod reply;
mod run;
mod threads;

use std::fmt;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ApplyError, StartError};
use crate::job::{Answer, Job};
use crate::stats::{Stats, StatsReader, StatsSnapshot};

use done::{Caller, Done};
use inline_below::InlineBelow;

pub use client::Client;
pub use cost::StepCosts;
pub use inline_below::InlineBelowSnapshot;

pub use procs::fork_server_main_if_requested;
pub(crate) use remote::RemoteView;
pub use remote::{RemoteSnapshot, WorkerSeen};

/// Extra time `apply` waits for an answer beyond the job's own limits before
/// it gives up on it: the flavors enforce the limits themselves and always
/// complete, this only guards against waiting for ever.
const REPLY_SLACK: Duration = Duration::from_secs(1);

/// How often [`Strategy::apply_for`] asks whether its client is still
/// there while its job has not answered: the longest a gone client's job
/// keeps its place.
const CLIENT_CHECK: Duration = Duration::from_millis(50);

/// The names a user can type after `--apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// Run on the calling thread.
    Inline,
    /// Run on the calling thread under one global lock.
    Exclusive,
    /// Run in a pool of worker threads.
    Threads,
    /// Run in a pool of forked worker processes (alias `pool`).
    Procs,
    /// Hand to `sumworker` processes through a Redis broker.
    Remote,
}

impl StrategyKind {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::Inline,
        StrategyKind::Exclusive,
        StrategyKind::Threads,
        StrategyKind::Procs,
        StrategyKind::Remote,
    ];

    /// The name as typed after `--apply`.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Inline => "inline",
            StrategyKind::Exclusive => "exclusive",
            StrategyKind::Threads => "threads",
            StrategyKind::Procs => "procs",
            StrategyKind::Remote => "remote",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = StartError;

    /// Parses a strategy name, ignoring ASCII case; `pool` (the original's
    /// name) means `procs`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.eq_ignore_ascii_case("pool") {
            return Ok(StrategyKind::Procs);
        }
        StrategyKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| StartError::UnknownStrategy {
                name: name.to_owned(),
            })
    }
}

/// How to build a [`Strategy`]. Settings that a strategy has no use for are
/// ignored (`workers` by `inline`, for instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyConfig {
    /// Which strategy.
    pub kind: StrategyKind,
    /// Run a job on the calling thread, as `inline` would, when its
    /// predicted run time is below this; `None` hands every job over. Only
    /// for strategies that hand work away (not `inline`, `exclusive`).
    pub inline_below: Option<Duration>,
    /// Worker threads or processes for `threads` and `procs`.
    pub workers: usize,
    /// How many jobs may wait for a worker at once; more are refused at once
    /// as busy.
    pub queue: usize,
    /// How long a job may wait for a worker before it is refused as busy (at
    /// that moment; it never runs afterwards). Zero means "only if a worker
    /// is free right now".
    pub queue_wait: Duration,
    /// How long a job may run; `None` for no limit.
    pub job_timeout: Option<Duration>,
    /// `procs` only: replace a worker process after it has run this many jobs
    /// (like `maxtasksperchild`); `None` keeps workers for ever.
    pub recycle_after: Option<u64>,
    /// `remote` only: the broker, and what to trust there.
    pub broker: Option<crate::broker::BrokerConfig>,
}

impl StrategyConfig {
    /// The defaults: one worker per core, a queue of 256 jobs waiting at most
    /// 5 s, jobs limited to 30 s, no recycling, no job run inline.
    pub fn new(kind: StrategyKind) -> Self {
        StrategyConfig {
            kind,
            inline_below: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 256,
            queue_wait: Duration::from_secs(5),
            job_timeout: Some(Duration::from_secs(30)),
            recycle_after: None,
            broker: None,
        }
    }

    fn validate(&self) -> Result<(), StartError> {
        let bad = |setting, expected, value: &dyn fmt::Display| {
            Err(StartError::BadSetting {
                setting,
                expected,
                value: value.to_string(),
            })
        };
        if self.workers == 0 || self.workers > 1024 {
            return bad("workers", "from 1 to 1024", &self.workers);
        }
        if self.queue == 0 {
            return bad("queue", "at least 1", &self.queue);
        }
        if self.job_timeout == Some(Duration::ZERO) {
            return bad("job timeout", "above zero (or none)", &"0s");
        }
        if self.recycle_after == Some(0) {
            return bad("recycle-after", "at least 1 job (or none)", &0);
        }
        if self.kind == StrategyKind::Remote && self.broker.is_none() {
            return bad("broker", "given for remote (redis://HOST:PORT)", &"none");
        }
        Ok(())
    }
}

/// Where a job waited and ran, filled in by the flavor that handled it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timing {
    /// From `apply` until a worker took the job.
    pub(crate) queue_wait: Option<Duration>,
    /// How long the job ran.
    pub(crate) run: Option<Duration>,
}

/// The implementations; only [`Strategy`]'s methods match on it.
#[derive(Debug)]
enum Flavor {
    Inline(inline::Inline),
    Exclusive(exclusive::Exclusive),
    Threads(threads::Threads),
    Procs(procs::Procs),
    Remote(remote::Remote),
}

/// Runs jobs somewhere, on behalf of many threads at once.
///
/// Built once from a [`StrategyConfig`] and shared (`Send + Sync`) by every
/// connection thread. Dropping it stops its workers: threads are joined,
/// worker processes and the fork server are reaped.
#[derive(Debug)]
pub struct Strategy {
    flavor: Flavor,
    /// `--inline-below`: tiny jobs run on the calling thread, before the
    /// flavor sees them.
    inline_below: Option<Arc<InlineBelow>>,
    stats: Arc<Stats>,
    config: StrategyConfig,
    /// The client of the jobs handed in without one.
    anonymous: Client,
}

impl Strategy {
    /// Starts the strategy that `config` names.
    ///
    /// For `procs` this starts the pool's fork server from this program's
    /// own executable, which works only if `main` calls
    /// [`fork_server_main_if_requested`] first thing; it may be called from
    /// any thread, at any time.
    ///
    /// # Errors
    ///
    /// [`StartError`] for a bad setting, a host binary that does not call
    /// [`fork_server_main_if_requested`] (`procs`), or a failed system call.
    pub fn start(config: &StrategyConfig) -> Result<Strategy, StartError> {
        config.validate()?;
        let stats = Arc::new(Stats::new());
        let flavor = match config.kind {
            StrategyKind::Inline => Flavor::Inline(inline::Inline::new(config, &stats)),
            StrategyKind::Exclusive => Flavor::Exclusive(exclusive::Exclusive::new(config, &stats)),
            StrategyKind::Threads => Flavor::Threads(threads::Threads::start(config, &stats)?),
            StrategyKind::Procs => Flavor::Procs(procs::Procs::start(config, &stats)?),
            StrategyKind::Remote => {
                let broker = config.broker.as_ref().ok_or(StartError::BadSetting {
                    setting: "broker",
                    expected: "given for remote (redis://HOST:PORT)",
                    value: "none".into(),
                })?;
                Flavor::Remote(remote::Remote::start(config, broker)?)
            }
        };
        // Inline and exclusive run every job on the caller already (and
        // exclusive must not run one outside its lock).
        let hands_work_away =
            !matches!(config.kind, StrategyKind::Inline | StrategyKind::Exclusive);
        let inline_below = config
            .inline_below
            .filter(|threshold| hands_work_away && !threshold.is_zero())
            .map(|threshold| Arc::new(InlineBelow::start(threshold, config.job_timeout, &stats)));
        Ok(Strategy {
            flavor,
            inline_below,
            stats,
            config: config.clone(),
            anonymous: Client::anonymous(),
        })
    }

    /// Runs `job` where this strategy runs jobs, blocking the calling thread
    /// until it answers or fails.
    ///
    /// It is [`Strategy::submit`] plus a wait, with one difference: a held
    /// `exclusive` token is waited on for up to the queue wait instead of
    /// refused at once.
    ///
    /// # Errors
    ///
    /// [`ApplyError`] says why there is no answer: busy, timeout, worker lost,
    /// panic, shutdown.
    pub fn apply(&self, job: Job) -> Result<Answer, ApplyError> {
        self.apply_for(job, &self.anonymous, || true)
    }

    /// [`Strategy::apply`] for `client`'s job, which counts under its
    /// address for fair share; `still_there` is asked every 50 ms while the
    /// job has not answered (never for a job that answers sooner), and once
    /// it says no, the client's jobs are withdrawn ([`Strategy::withdraw`])
    /// and this returns [`ApplyError::Cancelled`] as soon as the job stops.
    ///
    /// # Errors
    ///
    /// As [`Strategy::apply`], and [`ApplyError::Cancelled`].
    pub fn apply_for(
        &self,
        job: Job,
        client: &Client,
        mut still_there: impl FnMut() -> bool,
    ) -> Result<Answer, ApplyError> {
        // Unreachable in practice, the fallback: a dropped promise still
        // reports.
        let (reply, answer) = reply::slot(Err(ApplyError::ShuttingDown { job }));
        let started = Instant::now();
        self.dispatch(
            job,
            client,
            Caller::Blocking,
            // The caller may have given up waiting; then nobody reads it.
            Box::new(move |result| reply.put(result)),
        );
        let bound = self
            .config
            .job_timeout
            .map(|limit| self.config.queue_wait + limit + REPLY_SLACK);
        let every = (!client.is(&self.anonymous)).then_some(CLIENT_CHECK);
        let result = answer.wait_checking(bound, every, || {
            if !client.is_gone() && !still_there() {
                self.withdraw(client);
            }
        });
        result.unwrap_or_else(|| {
            Err(ApplyError::Timeout {
                job,
                elapsed: started.elapsed(),
            })
        })
    }

    /// Hands `job` over without waiting for it, and calls `done` exactly once
    /// with its result: on the thread where the result becomes known, which
    /// may be this one, before `submit` returns.
    ///
    /// Where `done` runs, by strategy:
    ///
    /// - `inline`, `exclusive`: the job runs on this thread and `done` is
    ///   called before `submit` returns. An event loop that submits here
    ///   stalls for the whole job: that is what these strategies show.
    ///   `exclusive` does not wait for its token: if another thread holds it,
    ///   the job is [`ApplyError::Busy`] at once.
    /// - `threads`: on the worker thread that ran the job.
    /// - `procs`: on the collector thread of the worker process that ran the
    ///   job, including when the job timed out or the worker died (a job
    ///   queued behind it that never started goes to another worker).
    /// - with [`StrategyConfig::inline_below`], a job predicted to run below
    ///   the threshold runs on this thread, as under `inline`, whatever the
    ///   strategy; an event loop stalls at most that long for it.
    /// - `threads`, `procs`: a job that no worker took within the queue wait
    ///   is refused as [`ApplyError::Busy`] at that moment, on the queue's
    ///   timer thread, and never runs.
    ///
    /// `submit` itself never waits: when `queue` jobs are already waiting,
    /// or the queue wait is zero and no worker is free, `done` gets
    /// [`ApplyError::Busy`] at once, on this thread; while a `procs` pool has
    /// no fork server, [`ApplyError::PoolDown`]; after
    /// [`Strategy::shutdown`], [`ApplyError::ShuttingDown`]. Jobs still
    /// queued when the strategy is dropped complete as `ShuttingDown`.
    ///
    /// `done` should be quick (send on a channel, wake a poll): it runs on a
    /// worker's time.
    ///
    /// # Examples
    ///
    /// ```
    /// use offload::{Answer, Job, Strategy, StrategyConfig, StrategyKind};
    ///
    /// let strategy = Strategy::start(&StrategyConfig::new(StrategyKind::Threads)).unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// strategy.submit(Job::Sumn(25_000), move |result| {
    ///     let _ = tx.send(result);
    /// });
    /// assert_eq!(rx.recv().unwrap(), Ok(Answer::Sum(312_512_500)));
    /// ```
    pub fn submit(&self, job: Job, done: impl FnOnce(Result<Answer, ApplyError>) + Send + 'static) {
        self.dispatch(job, &self.anonymous, Caller::NonBlocking, Box::new(done));
    }

    /// [`Strategy::submit`] for `client`'s job, which counts under its
    /// address for fair share and is withdrawn with the client's other jobs
    /// by [`Strategy::withdraw`].
    pub fn submit_for(
        &self,
        job: Job,
        client: &Client,
        done: impl FnOnce(Result<Answer, ApplyError>) + Send + 'static,
    ) {
        self.dispatch(job, client, Caller::NonBlocking, Box::new(done));
    }

    /// `client` has gone (its connection closed): its jobs are completed as
    /// [`ApplyError::Cancelled`] and their results dropped. Those still
    /// waiting never run: taken out of the queue (`threads`, `procs`), or
    /// withdrawn from the broker (`remote`: a worker that reads the stream
    /// later never sees them). A running one stops at its next yield point
    /// under `threads` (and on a sumworker, at its next lease renewal); a
    /// `procs` worker process finishes the job it runs. Calling it again
    /// does nothing.
    pub fn withdraw(&self, client: &Client) {
        if client.is(&self.anonymous) || !client.leave() {
            return;
        }
        match &self.flavor {
            // The job runs on its caller's thread, which is not waiting.
            Flavor::Inline(_) | Flavor::Exclusive(_) => {}
            Flavor::Threads(threads) => threads.withdraw(client),
            Flavor::Procs(procs) => procs.withdraw(client),
            Flavor::Remote(remote) => remote.withdraw(client),
        }
    }

    /// For an event loop that calls [`Strategy::submit`]: takes over the
    /// reading of the submitted jobs' results, so that their callbacks run
    /// on the loop's own thread, with no other thread to wake in between.
    ///
    /// Returns a descriptor to register in the loop's poll (readable
    /// interest; edge- or level-triggered alike): from then on the loop
    /// must call [`Strategy::run_completions`] each time it is readable.
    /// `None` when the strategy has nothing to hand over (its callbacks run
    /// on its own threads, as before). Only `procs` hands over, and from
    /// then on its jobs that waited in the queue are answered by the loop
    /// too, whoever submitted them. The take-over is for good: a loop that
    /// stops reading leaves the results to be read when the strategy is
    /// dropped. (Until the pool's own collector thread sees the take-over,
    /// within 20 ms, it may still complete a few jobs itself.)
    pub fn take_completion_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.flavor {
            Flavor::Procs(procs) => Some(procs.take_completion_fd()),
            _ => None,
        }
    }

    /// Runs the callbacks of the jobs whose results have come, on this
    /// thread, without waiting for any; see
    /// [`Strategy::take_completion_fd`].
    pub fn run_completions(&self) {
        if let Flavor::Procs(procs) = &self.flavor {
            procs.run_completions();
        }
    }

    /// The one place that matches on the flavor to hand a job in.
    fn dispatch(&self, job: Job, client: &Client, caller: Caller, callback: done::Callback) {
        let done = Done::new(job, client.clone(), &self.stats, callback);
        if let Some(rule) = self.inline_below.as_ref().filter(|r| r.admits(job)) {
            return rule.run(job, done);
        }
        match &self.flavor {
            Flavor::Inline(inline) => inline.submit(job, done),
            Flavor::Exclusive(exclusive) => exclusive.submit(job, caller, done),
            Flavor::Threads(threads) => threads.submit(job, done),
            Flavor::Procs(procs) => procs.submit(job, caller, done),
            Flavor::Remote(remote) => remote.submit(job, caller, done),
        }
    }

    /// Stops taking work and cuts short the work under way: new jobs get
    /// [`ApplyError::ShuttingDown`], jobs running in this process stop at
    /// their next yield point, and busy worker processes are killed. For the
    /// end of a graceful shutdown, once in-flight jobs had their grace period.
    /// Workers are reaped when the strategy is dropped.
    pub fn shutdown(&self) {
        if let Some(rule) = &self.inline_below {
            rule.shutdown();
        }
        match &self.flavor {
            Flavor::Inline(inline) => inline.shutdown(),
            Flavor::Exclusive(exclusive) => exclusive.shutdown(),
            Flavor::Threads(threads) => threads.shutdown(),
            Flavor::Procs(procs) => procs.shutdown(),
            Flavor::Remote(remote) => remote.shutdown(),
        }
    }

    /// Which strategy this is.
    pub fn kind(&self) -> StrategyKind {
        self.config.kind
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &StrategyConfig {
        &self.config
    }

    /// A copy of its statistics now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats_reader().snapshot()
    }

    /// A handle on the same statistics that another thread may keep, e.g.
    /// a metrics endpoint.
    pub fn stats_reader(&self) -> StatsReader {
        let configured = match self.config.kind {
            StrategyKind::Inline => 0,
            StrategyKind::Exclusive => 1,
            StrategyKind::Threads | StrategyKind::Procs => self.config.workers,
            // The workers are other processes; `remote.workers` lists them.
            StrategyKind::Remote => 0,
        };
        let remote = match &self.flavor {
            Flavor::Remote(remote) => Some(remote.view()),
            _ => None,
        };
        let inline_below = self
            .inline_below
            .clone()
            .map(|rule| crate::stats::View::new(move || rule.snapshot()));
        StatsReader::new(
            Arc::clone(&self.stats),
            self.config.kind.name(),
            configured,
            remote,
            inline_below,
        )
    }

    /// The process ids of the worker processes alive now (empty unless
    /// `procs`): for tests and diagnostics.
    pub fn worker_pids(&self) -> Vec<u32> {
        match &self.flavor {
            Flavor::Procs(procs) => procs.worker_pids(false),
            _ => Vec::new(),
        }
    }

    /// The process ids of the worker processes running a job now (empty
    /// unless `procs`).
    pub fn busy_worker_pids(&self) -> Vec<u32> {
        match &self.flavor {
            Flavor::Procs(procs) => procs.worker_pids(true),
            _ => Vec::new(),
        }
    }

    /// For each worker process running a job now, its pid and how many jobs
    /// its channel holds, the running one included (empty unless `procs`):
    /// for tests and diagnostics.
    pub fn busy_worker_loads(&self) -> Vec<(u32, usize)> {
        match &self.flavor {
            Flavor::Procs(procs) => procs.busy_worker_loads(),
            _ => Vec::new(),
        }
    }

    /// The fork server's process id (`procs` only; `Some(0)` while it is
    /// being replaced).
    pub fn fork_server_pid(&self) -> Option<u32> {
        match &self.flavor {
            Flavor::Procs(procs) => Some(procs.fork_server_pid()),
            _ => None,
        }
    }

    /// Waits until `workers` workers are alive or `within` has passed; true
    /// if they are.
    pub fn wait_for_workers(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stats().workers.alive >= self.stats().workers.configured {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names parse case-insensitively, `pool` is `procs`, and unknown names
    /// are quoted.
    #[test]
    fn kinds_parse() {
        assert_eq!(
            "THREADS".parse::<StrategyKind>().unwrap(),
            StrategyKind::Threads
        );
        assert_eq!("pool".parse::<StrategyKind>().unwrap(), StrategyKind::Procs);
        let err = "gil".parse::<StrategyKind>().unwrap_err();
        assert!(err.to_string().contains("\"gil\""), "{err}");
    }

    /// Out-of-range settings are refused with the value quoted.
    #[test]
    fn bad_settings_refused() {
        let config = StrategyConfig {
            workers: 0,
            ..StrategyConfig::new(StrategyKind::Threads)
        };
        let err = Strategy::start(&config).unwrap_err();
        assert_eq!(err.to_string(), "workers must be from 1 to 1024, got 0");
    }

    /// `inline_below` wraps a strategy that hands work away: a tiny job is
    /// counted as run inline, a sleep is not; `inline` ignores the setting.
    #[test]
    fn inline_below_wraps_threads_and_not_inline() {
        let config = StrategyConfig {
            workers: 1,
            inline_below: Some(Duration::from_micros(100)),
            ..StrategyConfig::new(StrategyKind::Threads)
        };
        let strategy = Strategy::start(&config).unwrap();
        assert_eq!(strategy.apply(Job::Sumn(3)), Ok(Answer::Sum(6)));
        assert_eq!(strategy.apply(Job::Sleep(1)), Ok(Answer::Slept));
        let rule = strategy.stats().inline_below.expect("the rule is on");
        assert_eq!(rule.ran_inline, 1);
        assert_eq!(rule.threshold_us, 100.0);
        let inline = Strategy::start(&StrategyConfig {
            kind: StrategyKind::Inline,
            ..config
        })
        .unwrap();
        assert_eq!(inline.stats().inline_below, None);
    }

    /// The strategy is shareable between threads.
    #[test]
    fn strategy_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Strategy>();
    }
}
