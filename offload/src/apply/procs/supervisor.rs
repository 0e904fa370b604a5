//! The supervisor: the one thread that owns a pool's fork server and hears
//! its news. It adds new workers to the pool, records how each one ended,
//! asks for a replacement whenever one leaves, and when the fork server
//! itself dies, reaps it, fails what waits as pool-down, and starts another.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::TryRecvError;

use ipc_channel::ipc::{IpcSender, IpcSharedMemory};

use super::fork_server::{Command, Event, ForkServer};
use super::reply_socket::ReplyReceiver;
use super::status::StatusPage;
use super::throttle::{Throttle, WINDOW};
use super::worker::ToWorker;
use super::{Route, Shared, WorkerState, STOP_WAIT};
use crate::error::{Exit, StartError};

/// How often the supervisor wakes with no news, to see to shutdown and to
/// log the summaries of rate-limited lines.
const TICK: Duration = Duration::from_millis(20);

/// How long to wait before trying again when a new fork server would not
/// start.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// How long the supervisor tries to reap the workers of a dead fork server.
const ORPHAN_REAP_WAIT: Duration = Duration::from_secs(3);

/// The supervisor's state, owned by its thread.
pub(super) struct Supervisor {
    shared: Arc<Shared>,
    workers: usize,
    /// Workers of a dead fork server, re-parented to this process (a child
    /// subreaper), to reap by pid until the deadline.
    orphans: Vec<(nix::unistd::Pid, Instant)>,
    /// Warnings that a flood could repeat thousands of times a second.
    lost: Throttle,
    timed_out: Throttle,
    spawn_failed: Throttle,
    restart_failed: Throttle,
}

impl Supervisor {
    /// Starts the supervisor thread, which starts the fork server (so that
    /// the fork server's parent thread is one that lives as long as the
    /// pool) and asks it for `workers` workers. Returns once the fork server
    /// is up.
    pub(super) fn start(
        shared: &Arc<Shared>,
        workers: usize,
    ) -> Result<JoinHandle<()>, StartError> {
        let supervisor = Supervisor {
            shared: Arc::clone(shared),
            workers,
            orphans: Vec::new(),
            lost: Throttle::default(),
            timed_out: Throttle::default(),
            spawn_failed: Throttle::default(),
            restart_failed: Throttle::default(),
        };
        let (started_tx, started) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name("offload-supervisor".into())
            .spawn(move || match ForkServer::start() {
                Ok(fork_server) => {
                    supervisor.install(&fork_server);
                    let _ = started_tx.send(Ok(()));
                    supervisor.run(fork_server);
                }
                Err(err) => {
                    let _ = started_tx.send(Err(err));
                }
            })
            .map_err(|e| StartError::os("could not start the pool's supervisor thread", e))?;
        match started.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(err)) => {
                let _ = handle.join();
                Err(err)
            }
            Err(_) => {
                let _ = handle.join();
                Err(StartError::ForkServer {
                    reason: "the supervisor thread ended".into(),
                })
            }
        }
    }

    /// Puts a fork server that has just started in service and asks it for
    /// the pool's workers.
    fn install(&self, fork_server: &ForkServer) {
        let shared = &*self.shared;
        *shared.commands.lock().unwrap_or_else(|p| p.into_inner()) = fork_server.commands.clone();
        shared
            .fork_server_pid
            .store(fork_server.pid(), Ordering::Relaxed);
        shared.down.store(false, Ordering::Relaxed);
        for _ in 0..self.workers {
            shared.command(Command::Spawn);
        }
    }

    fn run(mut self, mut fork_server: ForkServer) {
        let mut stop_deadline: Option<Instant> = None;
        loop {
            if self.shared.stopping.load(Ordering::Relaxed) && self.stopped(&mut stop_deadline) {
                break;
            }
            self.log_summaries();
            self.reap_orphans();
            match fork_server.events.try_recv_timeout(TICK) {
                Ok(Event::Ready { .. }) => {}
                Ok(Event::Spawned { pid, jobs, page }) => {
                    let replies = fork_server.reply_socket(pid);
                    self.worker_started(pid, jobs, replies, page);
                }
                Ok(Event::Exited { pid, exit }) => self.worker_ended(pid, exit),
                Ok(Event::SpawnFailed { reason }) => {
                    if self.spawn_failed.admit(Instant::now()) {
                        tracing::error!(%reason, "could not start a worker process; retrying");
                    }
                    if !self.shared.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                        self.shared.command(Command::Spawn);
                    }
                }
                Err(TryRecvError::Empty) => {}
                // At shutdown the fork server ends once its workers are
                // reaped: nothing is left to supervise.
                Err(TryRecvError::IpcError(_)) if self.shared.stopping.load(Ordering::Relaxed) => {
                    break;
                }
                Err(TryRecvError::IpcError(err)) => {
                    self.fork_server_died(&mut fork_server, &format!("{err:?}"));
                    match self.restart() {
                        Some(new) => fork_server = new,
                        None => break,
                    }
                }
            }
        }
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        fork_server.stop();
    }

    /// At shutdown: true once every worker is gone (or after the bounded
    /// wait, having had the stragglers killed).
    fn stopped(&self, stop_deadline: &mut Option<Instant>) -> bool {
        let shared = &*self.shared;
        let alive = shared.alive.lock().unwrap_or_else(|p| p.into_inner());
        if alive.is_empty() {
            return true;
        }
        let deadline = *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_WAIT);
        if Instant::now() < deadline {
            return false;
        }
        let pids: Vec<u32> = alive.keys().copied().collect();
        drop(alive);
        for pid in pids {
            shared.command(Command::Kill { pid });
        }
        Instant::now() >= deadline + STOP_WAIT
    }

    /// A new worker: the collector watches its reply socket, and it joins
    /// the directory.
    fn worker_started(
        &mut self,
        pid: u32,
        jobs: IpcSender<ToWorker>,
        replies: Result<ReplyReceiver, String>,
        page: IpcSharedMemory,
    ) {
        let shared = &self.shared;
        let Some(page) = StatusPage::open(page) else {
            tracing::error!(
                pid,
                "a new worker process came with no usable status page; killing it"
            );
            shared.command(Command::Kill { pid });
            return;
        };
        let worker = Arc::new(WorkerState {
            pid,
            number: shared.next_worker.fetch_add(1, Ordering::Relaxed),
            page,
            next_seq: std::sync::atomic::AtomicU64::new(1),
            pending: std::sync::Mutex::new(Some(Default::default())),
            timed_out: Default::default(),
            orphaned: Default::default(),
            gone: Default::default(),
            exit: Default::default(),
            reported: Default::default(),
        });
        shared
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, Arc::clone(&worker));
        shared.stats.alive.fetch_add(1, Ordering::Relaxed);
        // Unwatched, its death would go unheard: it goes (and, being in
        // `alive`, is replaced once reaped).
        let watched = replies.and_then(|replies| {
            shared
                .collector
                .watch(&worker, replies)
                .map_err(|err| format!("could not watch its reply socket: {err}"))
        });
        if let Err(reason) = watched {
            tracing::error!(pid, %reason, "killing a new worker process");
            shared.command(Command::Kill { pid });
            return;
        }
        if shared.stopping.load(Ordering::Relaxed) {
            // Dropping `jobs` closes its channel: it exits at once.
            return;
        }
        shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(Route {
                worker,
                jobs,
                sent: Default::default(),
            }));
        // Jobs that waited for room may go now.
        shared.pump();
    }

    /// A worker was reaped: record how, and replace it.
    fn worker_ended(&mut self, pid: u32, exit: Exit) {
        let shared = &*self.shared;
        let Some(worker) = shared
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid)
        else {
            return;
        };
        shared.retire(&worker);
        worker.report(exit);
        shared.stats.alive.fetch_sub(1, Ordering::Relaxed);
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        if worker.timed_out.load(Ordering::Relaxed) {
            shared.stats.killed_timeout.fetch_add(1, Ordering::Relaxed);
            if self.timed_out.admit(now) {
                tracing::warn!(
                    pid,
                    "killed worker process: its job ran past the job timeout; starting a replacement"
                );
            }
        } else if let Exit::Signal(_) = exit {
            if self.lost.admit(now) {
                tracing::warn!(pid, %exit, "worker process lost; starting a replacement");
            }
        }
        shared.stats.respawned.fetch_add(1, Ordering::Relaxed);
        shared.command(Command::Spawn);
    }

    /// The fork server's channel closed while the pool runs: it died, and
    /// its workers with it (they ask to be killed when it dies).
    fn fork_server_died(&mut self, fork_server: &mut ForkServer, why: &str) {
        let shared = &*self.shared;
        shared.down.store(true, Ordering::Relaxed);
        shared
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        shared.fork_server_pid.store(0, Ordering::Relaxed);
        let pid = fork_server.pid();
        let status = fork_server.reap();
        tracing::error!(
            pid,
            %status,
            channel = why,
            "the worker pool's fork server died, and its workers with it; starting a new one"
        );
        let ended: Vec<_> = shared
            .alive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        let reap_until = Instant::now() + ORPHAN_REAP_WAIT;
        shared
            .directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for (pid, worker) in ended {
            self.orphans
                .push((nix::unistd::Pid::from_raw(pid as i32), reap_until));
            worker.orphaned.store(true, Ordering::Relaxed);
            worker.report(Exit::Unknown);
            shared.stats.alive.fetch_sub(1, Ordering::Relaxed);
        }
        shared.queue.fail_all(Shared::pool_down);
    }

    /// Starts a new fork server, trying again every second until one starts
    /// or the pool stops (`None`).
    fn restart(&mut self) -> Option<ForkServer> {
        let began = Instant::now();
        loop {
            if self.shared.stopping.load(Ordering::Relaxed) {
                return None;
            }
            match ForkServer::start() {
                Ok(fork_server) => {
                    self.install(&fork_server);
                    self.shared
                        .stats
                        .fork_server_restarts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        pid = fork_server.pid(),
                        took = ?began.elapsed(),
                        "a new fork server is up; starting its workers"
                    );
                    return Some(fork_server);
                }
                Err(err) => {
                    if self.restart_failed.admit(Instant::now()) {
                        tracing::error!(
                            err = %err,
                            "could not start a new fork server; trying again every {RESTART_BACKOFF:?}"
                        );
                    }
                    let until = Instant::now() + RESTART_BACKOFF;
                    while Instant::now() < until && !self.shared.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                    }
                }
            }
        }
    }

    /// Reaps the workers a dead fork server left behind: they die with it
    /// (parent-death signal) and, this process being a child subreaper, come
    /// to it. Only these pids are waited for, never "any child", so the
    /// host's other children are left alone.
    fn reap_orphans(&mut self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let now = Instant::now();
        self.orphans.retain(|&(pid, until)| {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => now < until,
                // Not (yet) re-parented here: try again until the deadline.
                Err(nix::errno::Errno::ECHILD) => now < until,
                _ => false,
            }
        });
    }

    /// Logs how many lines each rate-limited warning held back, once its
    /// window is over.
    fn log_summaries(&mut self) {
        let now = Instant::now();
        if let Some(count) = self.timed_out.summary(now) {
            tracing::warn!(
                count,
                "killed more worker processes whose jobs ran past the job timeout in the last {WINDOW:?}"
            );
        }
        if let Some(count) = self.lost.summary(now) {
            tracing::warn!(count, "lost more worker processes in the last {WINDOW:?}");
        }
        if let Some(count) = self.spawn_failed.summary(now) {
            tracing::error!(
                count,
                "more worker processes failed to start in the last {WINDOW:?}"
            );
        }
        if let Some(count) = self.restart_failed.summary(now) {
            tracing::error!(
                count,
                "more fork server starts failed in the last {WINDOW:?}"
            );
        }
    }
}
