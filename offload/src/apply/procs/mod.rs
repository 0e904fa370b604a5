//! `procs` (alias `pool`): a pool of K forked worker processes over
//! ipc-channel, the counterpart of the original's `multiprocessing.Pool`.
//!
//! One function does the round trip (`round_trip.rs`): take an idle worker
//! from the pool, send the job on that worker's channel, block on the reply,
//! complete the job's [`Done`] with the answer or with what went wrong
//! (timeout, worker lost, busy, shutdown). `apply` runs it on the calling
//! thread — no thread hand-off in between, so a job costs about one
//! socketpair round trip more than `inline`. `submit` must not block, so it
//! hands the job to one of K *runner* threads, which run the same function.
//! What the processes buy is isolation: a job that runs too long is killed
//! with its process, a worker that dies fails only its own job, and the pool
//! replaces it.
//!
//! A supervisor thread listens to the fork server: it adds new workers to the
//! pool, records how each one ended, and asks for a replacement every time a
//! worker leaves (death, timeout kill, recycling).

mod fork_server;
mod round_trip;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::TryRecvError;

pub use fork_server::ForkServer;
use fork_server::{Command, Event};
use worker::WorkerReply;

use super::done::{Caller, Done};
use super::run::{join_queue, Place};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, Exit, StartError};
use crate::job::Job;
use crate::stats::Stats;

/// How long a caller that saw its worker vanish waits for the fork server to
/// say how it ended, before reporting the end as unknown.
const EXIT_REPORT_WAIT: Duration = Duration::from_millis(500);

/// How often a job waiting for an idle worker looks whether the pool is
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

/// What the callers and the supervisor share.
#[derive(Debug)]
struct Shared {
    /// Workers waiting for a job. Unbounded only in type: it never holds more
    /// than the workers alive.
    idle: Receiver<WorkerHandle>,
    give_back: Sender<WorkerHandle>,
    /// Pids of the workers alive, with their end records.
    alive: Mutex<HashMap<u32, Arc<WorkerEnd>>>,
    stopping: AtomicBool,
    /// Raised when the fork server stops answering: no more replacements.
    broken: AtomicBool,
    fork_server: Arc<ForkServer>,
    stats: Arc<Stats>,
    queue_wait: Duration,
    job_timeout: Option<Duration>,
    recycle_after: Option<u64>,
}

/// A job admitted to the pool, on its way to a worker.
#[derive(Debug)]
struct Ticket {
    job: Job,
    arrived: Instant,
    /// Its place among the waiting jobs, left when a worker takes it.
    place: Place,
    done: Done,
}

/// K worker processes, their supervisor, the runners that do submitted
/// jobs' round trips, and the fork server behind them.
#[derive(Debug)]
pub(crate) struct Procs {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
    /// Submitted jobs for the runners; `None` once dropping, which ends them.
    submitted: Option<Sender<Ticket>>,
    runners: Vec<JoinHandle<()>>,
    queue: usize,
}

impl Procs {
    /// Starts the supervisor, asks the fork server for `config.workers`
    /// workers and waits until they are all up.
    pub(crate) fn start(
        config: &StrategyConfig,
        stats: &Arc<Stats>,
        fork_server: Arc<ForkServer>,
    ) -> Result<Self, StartError> {
        let (give_back, idle) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            idle,
            give_back,
            alive: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            fork_server,
            stats: Arc::clone(stats),
            queue_wait: config.queue_wait,
            job_timeout: config.job_timeout,
            recycle_after: config.recycle_after,
        });
        let (events_tx, events_rx) = ipc::channel::<Event>()
            .map_err(|e| StartError::os("could not create the pool's event channel", e))?;
        let supervisor = Supervisor {
            shared: Arc::clone(&shared),
            events: events_rx,
            spawn_to: events_tx,
        };
        for _ in 0..config.workers {
            supervisor.request_worker();
        }
        let supervisor = std::thread::Builder::new()
            .name("offload-supervisor".into())
            .spawn(move || supervisor.run())
            .map_err(|e| StartError::os("could not start the pool's supervisor thread", e))?;
        // Never more tickets wait than places in the queue, so the channel's
        // bound is only a backstop.
        let (submitted, tickets) = crossbeam_channel::bounded::<Ticket>(config.queue);
        let mut procs = Procs {
            shared,
            supervisor: Some(supervisor),
            submitted: Some(submitted),
            runners: Vec::with_capacity(config.workers),
            queue: config.queue,
        };
        // One runner per worker is enough to keep every worker busy with
        // submitted jobs; `apply` callers bring their own threads.
        for index in 0..config.workers {
            let shared = Arc::clone(&procs.shared);
            let tickets = tickets.clone();
            let runner = std::thread::Builder::new()
                .name(format!("offload-runner-{index}"))
                .spawn(move || {
                    while let Ok(ticket) = tickets.recv() {
                        shared.serve(ticket);
                    }
                })
                .map_err(|e| StartError::os("could not start a runner thread", e))?;
            procs.runners.push(runner);
        }
        let deadline = Instant::now() + START_WAIT;
        while procs.shared.stats.alive.load(Ordering::Relaxed) < config.workers {
            if Instant::now() >= deadline || procs.shared.broken.load(Ordering::Relaxed) {
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

    /// Admits `job` (busy at once when the queue is full), then does its
    /// round trip on this thread for a blocking caller, or hands it to a
    /// runner for a non-blocking one. Either way `done` is completed exactly
    /// once.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        let shared = &*self.shared;
        let refuse = |done: Done, err| done.complete(Err(err), Timing::default());
        if shared.stopping.load(Ordering::Relaxed) {
            return refuse(done, ApplyError::ShuttingDown { job });
        }
        let arrived = Instant::now();
        let place = match join_queue(&shared.stats, self.queue, job) {
            Ok(place) => place,
            Err(busy) => return refuse(done, busy),
        };
        let ticket = Ticket {
            job,
            arrived,
            place,
            done,
        };
        match (caller, &self.submitted) {
            (Caller::Blocking, _) => shared.serve(ticket),
            (Caller::NonBlocking, Some(submitted)) => {
                if let Err(err) = submitted.try_send(ticket) {
                    let ticket = err.into_inner();
                    let queued = shared.stats.queued.load(Ordering::Relaxed) - 1;
                    drop(ticket.place);
                    refuse(
                        ticket.done,
                        ApplyError::Busy {
                            job,
                            waited: Duration::ZERO,
                            queued,
                        },
                    );
                }
            }
            (Caller::NonBlocking, None) => refuse(ticket.done, ApplyError::ShuttingDown { job }),
        }
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
}

impl Procs {
    /// The fork server's pid.
    pub(crate) fn fork_server_pid(&self) -> u32 {
        self.shared.fork_server.pid()
    }

    /// Refuses new jobs and kills the busy workers; their callers get
    /// `ShuttingDown`.
    pub(crate) fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for pid in self.worker_pids(true) {
            self.shared.fork_server.send(Command::Kill { pid });
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Runners finish the ticket in hand (refused at once now, or ended
        // when the supervisor kills a lingering worker), refuse the rest, and
        // end when the channel is empty.
        self.submitted = None;
        for runner in self.runners.drain(..) {
            let _ = runner.join();
        }
        // Idle workers' channels close here; the supervisor closes any that
        // arrive later, and waits for every worker to be reported gone.
        while self.shared.idle.try_recv().is_ok() {}
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

/// The thread that hears the fork server's news for one pool.
struct Supervisor {
    shared: Arc<Shared>,
    events: IpcReceiver<Event>,
    /// Sent along with every spawn request, so that the fork server can
    /// report back. Holding it also means `events` never sees EOF.
    spawn_to: IpcSender<Event>,
}

impl Supervisor {
    fn request_worker(&self) {
        let shared = &self.shared;
        let sent = shared.fork_server.send(Command::Spawn {
            events: self.spawn_to.clone(),
        });
        let first_failure = !sent && !shared.broken.swap(true, Ordering::Relaxed);
        if first_failure && !shared.stopping.load(Ordering::Relaxed) {
            tracing::error!(
                pid = shared.fork_server.pid(),
                "the fork server is gone: no more workers"
            );
        }
    }

    fn run(self) {
        let shared = &*self.shared;
        let mut stop_deadline: Option<Instant> = None;
        loop {
            if shared.stopping.load(Ordering::Relaxed) {
                while shared.idle.try_recv().is_ok() {}
                let alive = shared.alive.lock().unwrap_or_else(|p| p.into_inner());
                if alive.is_empty() {
                    return;
                }
                let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_WAIT);
                if Instant::now() >= deadline {
                    for pid in alive.keys() {
                        shared.fork_server.send(Command::Kill { pid: *pid });
                    }
                    if Instant::now() >= deadline + STOP_WAIT
                        || shared.broken.load(Ordering::Relaxed)
                    {
                        return;
                    }
                }
            }
            match self.events.try_recv_timeout(Duration::from_millis(20)) {
                Ok(Event::Spawned { pid, jobs, replies }) => {
                    let end = Arc::new(WorkerEnd::default());
                    shared
                        .alive
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pid, Arc::clone(&end));
                    shared.stats.alive.fetch_add(1, Ordering::Relaxed);
                    let worker = WorkerHandle {
                        pid,
                        jobs,
                        replies,
                        served: 0,
                        end,
                    };
                    if !shared.stopping.load(Ordering::Relaxed) {
                        let _ = shared.give_back.send(worker);
                    }
                }
                Ok(Event::Exited { pid, exit }) => {
                    let Some(end) = shared
                        .alive
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&pid)
                    else {
                        continue;
                    };
                    end.report(exit);
                    shared.stats.alive.fetch_sub(1, Ordering::Relaxed);
                    // If it died idle, its handle (two descriptors) would wait
                    // in the idle queue until a caller pulled it: drop it now.
                    for worker in shared.idle.try_iter().collect::<Vec<_>>() {
                        if !worker.end.has_ended() {
                            let _ = shared.give_back.send(worker);
                        }
                    }
                    if !shared.stopping.load(Ordering::Relaxed) {
                        if let Exit::Signal(_) = exit {
                            tracing::warn!(pid, %exit, "worker process lost; starting a replacement");
                        }
                        shared.stats.respawned.fetch_add(1, Ordering::Relaxed);
                        self.request_worker();
                    }
                }
                Ok(Event::SpawnFailed { reason }) => {
                    tracing::error!(%reason, "could not start a worker process; retrying");
                    if !shared.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                        self.request_worker();
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::IpcError(err)) => {
                    tracing::error!(%err, "the pool's event channel failed");
                    shared.broken.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}
