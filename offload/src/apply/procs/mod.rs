//! `procs` (alias `pool`): a pool of K worker processes over ipc-channel,
//! the counterpart of the original's `multiprocessing.Pool`.
//!
//! A job reaches a worker one of two ways. An `apply` caller that finds a
//! worker idle, with no job waiting and no runner waiting for a worker, takes
//! it and does the round trip on its own thread (`round_trip.rs`): send the
//! job on the worker's channel, block on the reply, complete the job's
//! [`Done`]. Every other job (all of `submit`'s, and `apply`'s when workers
//! are busy) waits in the same [`Queue`] as `threads`, so a job no worker
//! takes within the queue wait is refused at that moment by the queue's
//! timer; K *runner* threads take jobs from it, get an idle worker within the
//! job's queue wait, and do the round trip, then send the next waiting job
//! to the same worker before completing the one that just answered. Both
//! paths complete the job with its answer or with what went wrong (timeout,
//! worker lost, shutdown). What the processes buy is isolation: a job that
//! runs too long is killed with its process, a worker that dies fails only
//! its own job, and the pool replaces it.
//!
//! Why two paths: a hand-off to a runner and back is two thread wake-ups,
//! which cost more than a tiny job's whole round trip to the worker; but
//! when callers outnumber workers, a fair queue matters more, and a runner
//! that sends the next job as soon as a worker answers keeps the workers
//! busy while the callers it wakes are scheduled.
//!
//! A supervisor thread (`supervisor.rs`) owns the fork server: it starts it
//! (from this program's own executable, see `fork_server.rs`), adds new
//! workers to the pool, records how each one ended, and asks for a
//! replacement every time a worker leaves (death, timeout kill, recycling).
//! When the fork server itself dies, the supervisor sees EOF on its channel
//! at once, reaps it, refuses jobs as [`ApplyError::PoolDown`] while there is
//! none, and starts a new one.

mod fork_server;
mod fork_server_main;
mod round_trip;
mod supervisor;
mod throttle;
mod watchdog;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{IpcReceiver, IpcSender};

use fork_server::Command;
pub use fork_server_main::fork_server_main_if_requested;
use watchdog::{Deadline, Watchdog};
use worker::WorkerReply;

use super::done::{Caller, Done};
use super::queue::{Claimed, Queue};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, Exit, StartError};
use crate::job::Job;
use crate::stats::Stats;

/// How long a caller that saw its worker vanish waits for the fork server to
/// say how it ended, before reporting the end as unknown.
const EXIT_REPORT_WAIT: Duration = Duration::from_millis(500);

/// How often a runner waiting for a worker looks whether the pool is
/// stopping.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// How long the pool waits for its first workers.
const START_WAIT: Duration = Duration::from_secs(10);

/// How long the supervisor waits for workers to leave at shutdown before it
/// has the fork server kill them.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the pool knows of one worker, shared by its handle and the
/// supervisor: whether it runs a job now, and how it ended.
#[derive(Debug, Default)]
struct WorkerEnd {
    busy: AtomicBool,
    /// Raised by the runner before it has the worker killed for running past
    /// the job timeout, so that its end is logged as that.
    timed_out: AtomicBool,
    /// Raised when the fork server died: the worker died with it.
    orphaned: AtomicBool,
    /// When its job in flight runs out of time, for the watchdog.
    deadline: Deadline,
    exit: Mutex<Option<Exit>>,
    reported: Condvar,
}

impl WorkerEnd {
    fn report(&self, exit: Exit) {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit);
        self.reported.notify_all();
    }

    fn has_ended(&self) -> bool {
        self.exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// How the worker ended, waiting at most `within` for the report.
    fn wait(&self, within: Duration) -> Exit {
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        let (exit, _) = self
            .reported
            .wait_timeout_while(exit, within, |exit| exit.is_none())
            .unwrap_or_else(|p| p.into_inner());
        exit.unwrap_or(Exit::Unknown)
    }
}

/// The pool's end of one worker.
#[derive(Debug)]
struct WorkerHandle {
    pid: u32,
    jobs: IpcSender<Job>,
    replies: IpcReceiver<WorkerReply>,
    /// Jobs it has answered, for recycling.
    served: u64,
    end: Arc<WorkerEnd>,
}

/// What the runners and the supervisor share.
#[derive(Debug)]
struct Shared {
    /// Workers that no runner holds yet. Unbounded only in type: it never
    /// holds more than the workers alive.
    idle: Receiver<WorkerHandle>,
    give_back: Sender<WorkerHandle>,
    /// Pids of the workers alive, with their end records.
    alive: Mutex<HashMap<u32, Arc<WorkerEnd>>>,
    stopping: AtomicBool,
    /// Runners waiting for an idle worker for a job they claimed.
    wanting: AtomicUsize,
    /// Raised while there is no fork server (it died; a new one is
    /// starting): jobs are refused at once as pool-down.
    down: AtomicBool,
    /// The fork server's command channel; `None` while there is none.
    commands: Mutex<Option<IpcSender<Command>>>,
    /// The fork server's pid, for diagnostics and tests.
    fork_server_pid: AtomicU32,
    stats: Arc<Stats>,
    queue_wait: Duration,
    job_timeout: Option<Duration>,
    recycle_after: Option<u64>,
    /// What job deadlines count from.
    epoch: Instant,
}

impl Shared {
    /// Sends a command to the fork server; false if there is none or it is
    /// gone.
    fn command(&self, command: Command) -> bool {
        let commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        commands.as_ref().is_some_and(|c| c.send(command).is_ok())
    }

    /// The refusal for a job that finds no fork server.
    fn pool_down(job: Job) -> ApplyError {
        ApplyError::PoolDown {
            job,
            reason: "the worker pool's fork server died; a new one is starting".into(),
        }
    }
}

/// K worker processes, the runners that do their round trips, the queue in
/// front of them, and the supervisor with its fork server behind them.
#[derive(Debug)]
pub(crate) struct Procs {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    supervisor: Option<JoinHandle<()>>,
    runners: Vec<JoinHandle<()>>,
    /// Kills workers whose job runs past the job timeout; none without one.
    watchdog: Option<Watchdog>,
}

impl Procs {
    /// Starts the supervisor (which starts the fork server and asks it for
    /// `config.workers` workers) and the runners, and waits until the
    /// workers are all up.
    pub(crate) fn start(config: &StrategyConfig, stats: &Arc<Stats>) -> Result<Self, StartError> {
        // Workers are the fork server's children; if it dies, they die with
        // it and would be re-parented to init, which in a container may
        // never reap them. As a child subreaper this process gets them, and
        // the supervisor reaps them by pid.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| StartError::os("could not become a child subreaper", e))?;
        let (give_back, idle) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            idle,
            give_back,
            alive: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            wanting: AtomicUsize::new(0),
            down: AtomicBool::new(true),
            commands: Mutex::new(None),
            fork_server_pid: AtomicU32::new(0),
            stats: Arc::clone(stats),
            queue_wait: config.queue_wait,
            job_timeout: config.job_timeout,
            recycle_after: config.recycle_after,
            epoch: Instant::now(),
        });
        let queue = Arc::new(Queue::start(config.queue, config.queue_wait, stats)?);
        let supervisor = supervisor::Supervisor::start(&shared, &queue, config.workers)?;
        let mut procs = Procs {
            shared,
            queue,
            supervisor: Some(supervisor),
            runners: Vec::with_capacity(config.workers),
            watchdog: None,
        };
        if let Some(limit) = config.job_timeout {
            procs.watchdog = Some(Watchdog::start(&procs.shared, limit)?);
        }
        for index in 0..config.workers {
            let shared = Arc::clone(&procs.shared);
            let taker = procs.queue.taker();
            let runner = std::thread::Builder::new()
                .name(format!("offload-runner-{index}"))
                .spawn(move || shared.run_runner(&taker))
                .map_err(|e| StartError::os("could not start a runner thread", e))?;
            procs.runners.push(runner);
        }
        // Ready when every worker is idle and every runner waits for a job.
        let deadline = Instant::now() + START_WAIT;
        while procs.shared.idle.len() < config.workers
            || procs.queue.free_workers() < config.workers
        {
            if Instant::now() >= deadline {
                return Err(StartError::WorkersMissing {
                    started: procs.shared.stats.alive.load(Ordering::Relaxed),
                    wanted: config.workers,
                    waited: START_WAIT,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(procs)
    }

    /// Runs `job`'s round trip on this thread if the caller blocks anyway
    /// and a worker is idle with nobody ahead; otherwise queues it for a
    /// runner. Either completes `done`. Refused at once while the pool has no
    /// fork server, and by the queue when it is full or no worker takes the
    /// job within the queue wait.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        let shared = &*self.shared;
        let refuse = |done: Done, err| done.complete(Err(err), Timing::default());
        if shared.stopping.load(Ordering::Relaxed) {
            return refuse(done, ApplyError::ShuttingDown { job });
        }
        if shared.down.load(Ordering::Relaxed) {
            return refuse(done, Shared::pool_down(job));
        }
        // The fast path skips two thread hand-offs (to a runner and back),
        // which cost more than a tiny job's whole round trip. Only when no
        // job waits and no runner waits for a worker: an idle worker is
        // theirs first, or a caller that came later would overtake them.
        let nobody_ahead = shared.wanting.load(Ordering::Relaxed) == 0 && self.queue.looks_empty();
        if caller == Caller::Blocking && nobody_ahead {
            if let Some(worker) = shared.idle.try_iter().find(|w| !w.end.has_ended()) {
                let claimed = Claimed {
                    job,
                    arrived: Instant::now(),
                    done,
                };
                return shared.serve_here(worker, claimed);
            }
        }
        self.queue.push(job, done);
    }

    /// Pids of the workers alive now; only those running a job if `busy`.
    pub(crate) fn worker_pids(&self, busy: bool) -> Vec<u32> {
        let alive = self.shared.alive.lock().unwrap_or_else(|p| p.into_inner());
        let mut pids: Vec<u32> = alive
            .iter()
            .filter(|(_, state)| !busy || state.busy.load(Ordering::Relaxed))
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The fork server's pid (0 while there is none).
    pub(crate) fn fork_server_pid(&self) -> u32 {
        self.shared.fork_server_pid.load(Ordering::Relaxed)
    }

    /// Refuses new jobs and the jobs waiting, and kills the busy workers;
    /// their callers get `ShuttingDown`.
    pub(crate) fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.queue.close();
        for pid in self.worker_pids(true) {
            self.shared.command(Command::Kill { pid });
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Waiting jobs are refused; runners finish the job in hand (ended
        // when the supervisor kills a lingering worker) and end, closing
        // their workers' channels.
        self.queue.close();
        for runner in self.runners.drain(..) {
            let _ = runner.join();
        }
        // Idle workers' channels close here; the supervisor closes any that
        // arrive later, waits for every worker to be reported gone, and
        // stops the fork server.
        while self.shared.idle.try_recv().is_ok() {}
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}
