//! `procs` (alias `pool`): a pool of K worker processes over ipc-channel,
//! the counterpart of the original's `multiprocessing.Pool`.
//!
//! A job goes straight from the thread that hands it in to a worker's
//! channel (`dispatch.rs`): no thread sits between them. Before sending, the
//! sender reserves room in the worker's status page (`status.rs`), shared
//! memory that the worker updates itself: a worker is free again the moment
//! it has run a job, not once that job's caller has woken up. An idle worker
//! takes any job; a small one (predicted below a bound, at most 100 µs of
//! work in the channel in all) may also queue in the channel of a worker
//! that runs other small jobs, and the worker starts it as soon as the one
//! before ends, without sleeping in between. When no worker has room, the
//! job waits in the same [`Queue`] as `threads`, so a job no worker takes
//! within the queue wait is refused at that moment by the queue's timer;
//! whoever sees a worker make room (a reply arriving, a new worker) sends it
//! the front job.
//!
//! Replies come back two ways. An `apply` caller waits on a mailbox of its
//! own (`mailbox.rs`), a channel per worker that the worker writes to, so it
//! is woken by its own reply and nobody else's. Every other job (`submit`'s,
//! and jobs that waited in the queue) is answered on the worker's own reply
//! socket (`reply_socket.rs`), which the collector (`collector.rs`) reads
//! and completes the job's [`Done`]: a thread of the pool's, or an event
//! loop that took the reading over, on its own thread. Either way a worker
//! that dies closes its reply socket and mailbox channels, so its death is
//! seen at once, and the status page says what
//! became of each of its jobs: one never started is sent again, the one
//! running is lost with the worker, and one the watchdog (`watchdog.rs`)
//! claimed for running past the job timeout has timed out. What the
//! processes buy is isolation: a job that runs too long is killed with its
//! process, a worker that dies fails only its own job, and the pool
//! replaces it.
//!
//! A supervisor thread (`supervisor.rs`) owns the fork server: it starts it
//! (from this program's own executable, see `fork_server.rs`), adds new
//! workers to the pool, records how each one ended, and asks for a
//! replacement every time a worker leaves (death, timeout kill, recycling).
//! When the fork server itself dies, the supervisor sees EOF on its channel
//! at once, reaps it, refuses jobs as [`ApplyError::PoolDown`] while there is
//! none, and starts a new one.

mod collector;
mod dispatch;
mod fork_server;
mod fork_server_main;
mod mailbox;
mod reply_socket;
mod status;
mod supervisor;
mod throttle;
mod watchdog;
mod worker;

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcSender;

use collector::Collector;
use fork_server::Command;
pub use fork_server_main::fork_server_main_if_requested;
use mailbox::Mailboxes;
use status::StatusPage;
use watchdog::Watchdog;
use worker::ToWorker;

use super::cost::StepCosts;
use super::done::{Caller, Done};
use super::queue::Queue;
use super::StrategyConfig;
use crate::error::{ApplyError, Exit, StartError};
use crate::job::{Cancel, Job};
use crate::stats::Stats;

/// How long a caller that saw its worker vanish waits for the fork server to
/// say how it ended, before reporting the end as unknown.
const EXIT_REPORT_WAIT: Duration = Duration::from_millis(500);

/// How long the pool waits for its first workers.
const START_WAIT: Duration = Duration::from_secs(10);

/// How long the supervisor waits for workers to leave at shutdown before it
/// has the fork server kill them.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The most predicted work a worker's channel may hold when a job queues
/// behind another there (and never more than the queue wait): a job sent to
/// a busy worker starts within about this much work, so that the queue-wait
/// promise still holds for it. 100 µs is a hundred tiny jobs, or one `sumn`
/// of about 100 000.
const BEHIND_BOUND: Duration = Duration::from_micros(100);

/// What the pool knows of one worker process, shared by everyone who sends
/// it jobs, the collector, the watchdog and the supervisor.
#[derive(Debug)]
struct WorkerState {
    pid: u32,
    /// Unique in the pool, unlike pids, which the kernel reuses.
    number: u64,
    page: StatusPage,
    /// The sequence number of its next job.
    next_seq: AtomicU64,
    /// Jobs whose reply the collector takes, by sequence number; `None` once
    /// the collector has seen the worker die and dealt with them, so that a
    /// late sender knows its job will not be.
    pending: Mutex<Option<HashMap<u64, dispatch::Pending>>>,
    /// Raised by the watchdog before it has the worker killed for running
    /// past the job timeout, so that its end is logged as that.
    timed_out: AtomicBool,
    /// Raised when the fork server died: the worker died with it.
    orphaned: AtomicBool,
    /// Raised when its reply socket or a mailbox channel closed: it has died
    /// (or exited), though the
    /// fork server may not have reaped it yet.
    gone: AtomicBool,
    exit: Mutex<Option<Exit>>,
    reported: Condvar,
}

impl WorkerState {
    fn report(&self, exit: Exit) {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit);
        self.reported.notify_all();
    }

    /// Whether it runs a job it has started: not one whose job the watchdog
    /// has claimed, nor one already seen dead (their pages stay as they
    /// were).
    fn runs_a_job(&self) -> bool {
        self.page.running()
            && !self.timed_out.load(Ordering::Relaxed)
            && !self.gone.load(Ordering::Relaxed)
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

/// The way to send one worker jobs. Only the directory holds it for long
/// (a sender holds it for the length of a send), so that taking it out of
/// the directory closes the worker's job channel once the last send is
/// through: the worker then runs what is already in its channel and exits.
/// That is how a worker is retired.
#[derive(Debug)]
struct Route {
    worker: Arc<WorkerState>,
    jobs: IpcSender<ToWorker>,
    /// Jobs sent to it, for recycling.
    sent: AtomicU64,
}

/// What the senders, the collector, the watchdog and the supervisor share.
#[derive(Debug)]
struct Shared {
    /// The workers that take jobs now.
    directory: RwLock<Vec<Arc<Route>>>,
    /// Where the next look for a worker with room starts, so that jobs
    /// spread over the workers.
    rotor: AtomicUsize,
    /// Every worker alive (retired ones too, until they exit), by pid.
    alive: Mutex<HashMap<u32, Arc<WorkerState>>>,
    next_worker: AtomicU64,
    mailboxes: Mailboxes,
    queue: Queue,
    collector: Collector,
    /// The threads that settle the started jobs of workers gone, which wait
    /// for the fork server's report (see `collector.rs`); joined at the end.
    mourners: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    /// Raised while there is no fork server (it died; a new one is
    /// starting): jobs are refused at once as pool-down.
    down: AtomicBool,
    /// The fork server's command channel; `None` while there is none.
    commands: Mutex<Option<IpcSender<Command>>>,
    /// The fork server's pid, for diagnostics and tests.
    fork_server_pid: AtomicU32,
    stats: Arc<Stats>,
    job_timeout: Option<Duration>,
    recycle_after: Option<u64>,
    /// What a job will cost, to decide whether it may queue behind others.
    costs: StepCosts,
    /// [`BEHIND_BOUND`], or the queue wait if that is shorter, in ns.
    behind_ns: u64,
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

    /// How many workers take jobs now.
    fn directory_len(&self) -> usize {
        self.directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Takes a worker out of the directory: no job is sent to it any more.
    fn retire(&self, worker: &WorkerState) {
        self.directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|route| route.worker.number != worker.number);
    }
}

/// K worker processes, the queue in front of them, the collector and the
/// watchdog beside them, and the supervisor with its fork server behind them.
#[derive(Debug)]
pub(crate) struct Procs {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
    /// Reads the reply sockets until an event loop takes that over.
    collector: Option<JoinHandle<()>>,
    /// Kills workers whose job runs past the job timeout; none without one.
    watchdog: Option<Watchdog>,
}

impl Procs {
    /// Starts the supervisor (which starts the fork server and asks it for
    /// `config.workers` workers) and waits until the workers are all up.
    pub(crate) fn start(config: &StrategyConfig, stats: &Arc<Stats>) -> Result<Self, StartError> {
        // Workers are the fork server's children; if it dies, they die with
        // it and would be re-parented to init, which in a container may
        // never reap them. As a child subreaper this process gets them, and
        // the supervisor reaps them by pid.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| StartError::os("could not become a child subreaper", e))?;
        let behind = BEHIND_BOUND.min(config.queue_wait);
        let shared = Arc::new(Shared {
            directory: RwLock::new(Vec::new()),
            rotor: AtomicUsize::new(0),
            alive: Mutex::new(HashMap::new()),
            next_worker: AtomicU64::new(1),
            mailboxes: Mailboxes::default(),
            queue: Queue::start(config.queue, config.queue_wait, stats)?,
            collector: Collector::new()?,
            mourners: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            down: AtomicBool::new(true),
            commands: Mutex::new(None),
            fork_server_pid: AtomicU32::new(0),
            stats: Arc::clone(stats),
            job_timeout: config.job_timeout,
            recycle_after: config.recycle_after,
            // Timed as a worker runs jobs: with no deadline to check.
            costs: StepCosts::calibrate(&Cancel::never()),
            behind_ns: u64::try_from(behind.as_nanos()).unwrap_or(u64::MAX),
        });
        let collector = collector::start_thread(&shared)?;
        let supervisor = supervisor::Supervisor::start(&shared, config.workers);
        let mut procs = Procs {
            shared,
            supervisor: None,
            collector: Some(collector),
            watchdog: None,
        };
        // Dropped on failure, which stops the collector's thread.
        procs.supervisor = Some(supervisor?);
        if let Some(limit) = config.job_timeout {
            procs.watchdog = Some(Watchdog::start(&procs.shared, limit)?);
        }
        let deadline = Instant::now() + START_WAIT;
        while procs.shared.directory_len() < config.workers {
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

    /// Sends `job` to a worker with room, or queues it; either completes
    /// `done`. An `apply` caller (`Caller::Blocking`) waits for the reply on
    /// its own mailbox, on this thread; refused at once while the pool has no
    /// fork server, and by the queue when it is full or no worker takes the
    /// job within the queue wait.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        match caller {
            Caller::Blocking => self.shared.serve_here(job, done),
            Caller::NonBlocking => self.shared.dispatch(job, done, Instant::now()),
        }
    }

    /// `client` has gone: its jobs still waiting leave the queue; those
    /// sent to a worker process finish there, and their answers are
    /// dropped.
    pub(crate) fn withdraw(&self, client: &super::client::Client) {
        self.shared.queue.withdraw(client);
    }

    /// Hands the reading of the reply sockets to the caller, an event loop:
    /// it must call [`Procs::run_completions`] whenever the descriptor
    /// returned is readable.
    pub(crate) fn take_completion_fd(&self) -> BorrowedFd<'_> {
        self.shared.collector.take_over()
    }

    /// Completes, on this thread, the jobs whose replies have come.
    pub(crate) fn run_completions(&self) {
        let _ = self.shared.collector.read_ready(&self.shared);
    }

    /// Pids of the workers alive now; if `busy`, only those running a job
    /// they have started (not one whose job the watchdog has claimed, nor
    /// one already seen dead: their pages stay as they were).
    pub(crate) fn worker_pids(&self, busy: bool) -> Vec<u32> {
        self.pids_where(|worker| !busy || worker.runs_a_job())
    }

    /// [`Procs::worker_pids`] of the busy ones, with the jobs each holds.
    pub(crate) fn busy_worker_loads(&self) -> Vec<(u32, usize)> {
        let alive = self.shared.alive.lock().unwrap_or_else(|p| p.into_inner());
        let mut loads: Vec<(u32, usize)> = alive
            .iter()
            .filter(|(_, worker)| worker.runs_a_job())
            .map(|(pid, worker)| (*pid, worker.page.held()))
            .collect();
        loads.sort_unstable();
        loads
    }

    fn pids_where(&self, keep: impl Fn(&WorkerState) -> bool) -> Vec<u32> {
        let alive = self.shared.alive.lock().unwrap_or_else(|p| p.into_inner());
        let mut pids: Vec<u32> = alive
            .iter()
            .filter(|(_, worker)| keep(worker))
            .map(|(pid, _)| *pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The fork server's pid (0 while there is none).
    pub(crate) fn fork_server_pid(&self) -> u32 {
        self.shared.fork_server_pid.load(Ordering::Relaxed)
    }

    /// Refuses new jobs and the jobs waiting, and kills the workers that
    /// hold any (running, or queued in their channel); their callers get
    /// `ShuttingDown`.
    pub(crate) fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.queue.close();
        for pid in self.pids_where(|worker| worker.page.busy()) {
            self.shared.command(Command::Kill { pid });
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.stopping.store(true, Ordering::Relaxed);
        // Waiting jobs are refused. Emptying the directory closes every
        // worker's job channel: each runs what it holds and exits, which
        // closes its reply socket; the supervisor waits for every worker to be
        // reported gone (killing stragglers), and stops the fork server.
        shared.queue.close();
        shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        self.watchdog.take();
        shared.collector.close();
        if let Some(collector) = self.collector.take() {
            let _ = collector.join();
        }
        // Whoever read the replies (an event loop may have stopped long
        // ago), what the workers left is read here, up to their EOFs, so
        // that every job's `Done` is completed.
        shared.collector.read_to_the_end(&self.shared, STOP_WAIT);
        let mourners: Vec<_> = shared
            .mourners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for mourner in mourners {
            let _ = mourner.join();
        }
    }
}
