//! The fork server: a single-threaded process that forks every worker.
//!
//! `fork()` copies only the calling thread; a lock held by any other thread at
//! that moment stays locked for ever in the child. So the server forks this
//! process first, while it has one thread, and asks it for workers from then
//! on — at start and for every replacement. This is CPython's `forkserver`
//! start method, for the same reason.
//!
//! The fork server is also the parent of every worker, so it is the one that
//! reaps them (no zombies) and reports how each one ended to its pool.
//!
//! ```text
//!  server process (threads)            fork server (1 thread)        worker
//!  ──────────────────────────          ──────────────────────        ──────
//!  ForkServer::start()  ──fork──▶      serve(commands)
//!  pool: Spawn{events}  ─commands─▶    fork() ──────────────────▶    serve(jobs, replies)
//!                       ◀─events──     Spawned{pid, jobs, replies}
//!  apply: job           ─────────────────── jobs ───────────────▶
//!                       ◀─────────────────── replies ────────────
//!                       ◀─events──     waitpid: Exited{pid, exit}
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::TryRecvError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::worker::{self, exit_now, WorkerReply};
use crate::error::{Exit, StartError};
use crate::job::Job;

/// How often the fork server looks for ended workers between commands. A
/// dead worker is reported within this, and the idle cost is a few hundred
/// cheap wake-ups a second.
const REAP_EVERY: Duration = Duration::from_millis(2);

/// How long the fork server, once told to stop, lets its workers finish
/// before it kills them.
const WORKER_GRACE: Duration = Duration::from_secs(2);

/// A request from a pool to the fork server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Fork a worker; report on `events`.
    Spawn {
        /// Where the pool listens for news of its workers.
        events: IpcSender<Event>,
    },
    /// SIGKILL this worker, if it is still a child (never a recycled pid).
    Kill {
        /// The worker's pid.
        pid: u32,
    },
}

/// News from the fork server to a pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    /// A new worker, and the pool's ends of its channels.
    Spawned {
        /// The worker's pid.
        pid: u32,
        /// Where to send it jobs.
        jobs: IpcSender<Job>,
        /// Where its replies come.
        replies: IpcReceiver<WorkerReply>,
    },
    /// A worker ended and was reaped.
    Exited {
        /// Its pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// A worker could not be forked.
    SpawnFailed {
        /// Why.
        reason: String,
    },
}

/// The server's handle on its fork server. Dropping it stops the fork server
/// (which stops its workers) and reaps it.
#[derive(Debug)]
pub struct ForkServer {
    pid: Pid,
    /// `None` once stopping. A mutex because an `IpcSender` may be used by one
    /// thread at a time.
    commands: Mutex<Option<IpcSender<Command>>>,
}

impl ForkServer {
    /// Forks the fork server.
    ///
    /// Call it first thing in `main`, before anything starts a thread (a
    /// logger with a background writer, a runtime, a thread pool): the call
    /// checks `/proc/self/task` and refuses to fork a threaded process.
    ///
    /// # Errors
    ///
    /// [`StartError::Threaded`] when the process already has more than one
    /// thread, [`StartError::Os`] when a channel or the fork fails.
    pub fn start() -> Result<std::sync::Arc<ForkServer>, StartError> {
        let threads = std::fs::read_dir("/proc/self/task")
            .map_err(|e| StartError::os("could not count this process's threads", e))?
            .count();
        if threads > 1 {
            return Err(StartError::Threaded { threads });
        }
        let (commands, requests) = ipc::channel::<Command>()
            .map_err(|e| StartError::os("could not create the fork server's channel", e))?;
        let parent = getpid();
        // SAFETY: the process has a single thread (checked above), so the child
        // is a complete copy and may run any code, allocation included.
        match unsafe { fork() }.map_err(|e| StartError::os("could not fork the fork server", e))? {
            ForkResult::Child => {
                drop(commands);
                serve(requests, parent)
            }
            ForkResult::Parent { child } => {
                drop(requests);
                Ok(std::sync::Arc::new(ForkServer {
                    pid: child,
                    commands: Mutex::new(Some(commands)),
                }))
            }
        }
    }

    /// The fork server's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Sends a command; false if the fork server is gone or stopping.
    pub(crate) fn send(&self, command: Command) -> bool {
        let commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        commands.as_ref().is_some_and(|c| c.send(command).is_ok())
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Closing the command channel tells the fork server to stop.
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let deadline = Instant::now() + WORKER_GRACE + Duration::from_secs(1);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(self.pid, Signal::SIGKILL);
                    let _ = waitpid(self.pid, None);
                    return;
                }
                _ => return,
            }
        }
    }
}

/// The fork server's life. Never returns.
fn serve(requests: IpcReceiver<Command>, parent: Pid) -> ! {
    worker::die_with_parent(parent);
    // The server blocks SIGINT and SIGTERM in its threads to take them with
    // `sigwait`; that mask came along with the fork. Workers must die of them.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    // Named apart from the server, so that `ps` tells them apart and
    // `pkill sumserver` signals the server alone.
    let _ = nix::sys::prctl::set_name(c"ysum-forksrv");
    // A terminal's Ctrl-C goes to the whole foreground process group; leave
    // it so that only the server hears it, and stops its workers in order.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let me = getpid();
    let mut children: HashMap<Pid, IpcSender<Event>> = HashMap::new();
    loop {
        match requests.try_recv_timeout(REAP_EVERY) {
            Ok(Command::Spawn { events }) => {
                let channels = ipc::channel::<Job>()
                    .and_then(|jobs| Ok((jobs, ipc::channel::<WorkerReply>()?)));
                let ((job_tx, job_rx), (reply_tx, reply_rx)) = match channels {
                    Ok(channels) => channels,
                    Err(err) => {
                        let _ = events.send(Event::SpawnFailed {
                            reason: format!("no channel: {err}"),
                        });
                        continue;
                    }
                };
                // SAFETY: this process never starts a thread.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        // Keep only this worker's own ends: every other copy
                        // would stop EOF from telling its owner of a death.
                        drop(requests);
                        drop(children);
                        drop(events);
                        drop(job_tx);
                        drop(reply_rx);
                        worker::serve(job_rx, reply_tx, me)
                    }
                    Ok(ForkResult::Parent { child }) => {
                        drop(job_rx);
                        drop(reply_tx);
                        let pid = child.as_raw().unsigned_abs();
                        // If the pool is gone, the worker's channel ends went
                        // with the failed message: it sees EOF and exits, and
                        // is reaped like any other.
                        let _ = events.send(Event::Spawned {
                            pid,
                            jobs: job_tx,
                            replies: reply_rx,
                        });
                        children.insert(child, events);
                    }
                    Err(err) => {
                        let _ = events.send(Event::SpawnFailed {
                            reason: format!("fork failed: {err}"),
                        });
                    }
                }
            }
            Ok(Command::Kill { pid }) => {
                let pid = Pid::from_raw(pid as i32);
                if children.contains_key(&pid) {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::IpcError(_)) => break,
        }
        reap(&mut children);
    }
    // The server is gone or done: its pools have closed their workers'
    // channels, so the workers are on their way out. Wait for them, then kill
    // what is left, and reap everything.
    let deadline = Instant::now() + WORKER_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        std::thread::sleep(REAP_EVERY);
        reap(&mut children);
    }
    for pid in children.keys() {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    while !children.is_empty() {
        match waitpid(None, None) {
            Ok(status) => report(&mut children, status),
            Err(_) => break,
        }
    }
    exit_now(0)
}

/// Reaps every worker that has ended, without blocking.
fn reap(children: &mut HashMap<Pid, IpcSender<Event>>) {
    while !children.is_empty() {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => report(children, status),
        }
    }
}

/// Tells a reaped worker's pool how it ended.
fn report(children: &mut HashMap<Pid, IpcSender<Event>>, status: WaitStatus) {
    let (pid, exit) = match status {
        WaitStatus::Exited(pid, code) => (pid, Exit::Code(code)),
        WaitStatus::Signaled(pid, signal, _) => (pid, Exit::Signal(signal as i32)),
        _ => return,
    };
    if let Some(events) = children.remove(&pid) {
        let _ = events.send(Event::Exited {
            pid: pid.as_raw().unsigned_abs(),
            exit,
        });
    }
}
