//! The fork server: a single-threaded process that forks every worker.
//!
//! `fork()` copies only the calling thread; a lock held by any other thread at
//! that moment stays locked for ever in the child. So the server never forks
//! itself: it starts a *fresh* process from its own executable
//! (`/proc/self/exe`) in fork-server mode, which `main` enters before it does
//! anything else (see [`fork_server_main_if_requested`](crate::fork_server_main_if_requested)), and asks that
//! process for workers — at start, for every replacement, and again after a
//! fork server died. This is the shape of CPython's `forkserver` start
//! method, and starting by exec rather than by fork means the pool can
//! replace its fork server at any time, from a server full of threads.
//!
//! The fork server is the parent of every worker, so it is the one that
//! reaps them (no zombies) and reports how each one ended to its pool. The
//! pool is the parent of the fork server and reaps it.
//!
//! ```text
//!  server process (threads)               fork server (1 thread)       worker
//!  ──────────────────────────             ──────────────────────       ──────
//!  spawn /proc/self/exe ──exec──▶          connect(one-shot name)
//!                      ◀─events──          Ready{commands}
//!  pool: Spawn         ─commands─▶         fork() ─────────────────▶   serve(jobs, replies, page)
//!                      ◀─stdin───          SCM_RIGHTS{pid, replies}
//!                      ◀─events──          Spawned{pid, jobs, page}
//!  caller: job         ─────────────────── jobs ──────────────────▶
//!  collector           ◀─────────────────── replies ───────────────
//!  caller's mailbox    ◀─────────────────── its own channel ───────
//!                      ◀─events──          waitpid: Exited{pid, exit}
//!  events: EOF = the fork server died
//! ```
//!
//! The fork server holds the only sending end of `events`, so its death shows
//! up in the pool as EOF on that channel at once. The channel is set up with
//! ipc-channel's one-shot server: its name (a socket path in a private
//! temporary directory) goes to the new process in an environment variable.
//! Every descriptor the server opens is close-on-exec (std and ipc-channel
//! both ask for it), so the fork server inherits nothing but stdio. Its
//! standard input is one end of a socket pair whose other end the pool
//! keeps: the fork server passes each worker's reply socket over it
//! (`reply_socket.rs`), since ipc-channel cannot carry a bare descriptor.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender, IpcSharedMemory};
use nix::unistd::getpid;
use serde::{Deserialize, Serialize};

use super::fork_server_main::{FORK_SERVER_ENV, HOST_PREPARED, WORKER_GRACE};
use super::reply_socket::{self, ReplyReceiver};
use super::worker::ToWorker;
use crate::error::{Exit, StartError};

/// How long a new fork server has to report for work.
const READY_WAIT: Duration = Duration::from_secs(5);
/// A request from a pool to its fork server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Fork a worker.
    Spawn,
    /// SIGKILL this worker, if it is still a child (never a recycled pid).
    Kill {
        /// The worker's pid.
        pid: u32,
    },
}

/// News from the fork server to its pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Event {
    /// The first message: the fork server is up and takes commands here.
    Ready {
        /// Where the pool sends its commands.
        commands: IpcSender<Command>,
    },
    /// A new worker, and the pool's ends of its channels.
    Spawned {
        /// The worker's pid.
        pid: u32,
        /// Where to send it jobs.
        jobs: IpcSender<ToWorker>,
        /// Its status page.
        page: IpcSharedMemory,
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
/// The pool's handle on one fork server process: the process (to reap it)
/// and the channel its news comes on.
#[derive(Debug)]
pub(crate) struct ForkServer {
    child: Child,
    /// Where commands go; `None` once closed, which tells it to stop.
    pub(crate) commands: Option<IpcSender<Command>>,
    /// Its news; EOF when it dies.
    pub(crate) events: IpcReceiver<Event>,
    /// Where it passes each new worker's reply socket (its stdin).
    passed: OwnedFd,
}

impl ForkServer {
    /// Starts a fork server from this process's own executable and waits
    /// until it reports for work.
    ///
    /// Call it from a thread that lives as long as the fork server should:
    /// the fork server asks to be killed when the thread that started it
    /// ends (`PR_SET_PDEATHSIG` follows the thread, not the process).
    ///
    /// # Errors
    ///
    /// [`StartError::HostNotPrepared`] when `main` did not call
    /// [`fork_server_main_if_requested`](crate::fork_server_main_if_requested); [`StartError::ForkServer`] when the
    /// process does not start or report in time.
    pub(crate) fn start() -> Result<ForkServer, StartError> {
        if !HOST_PREPARED.load(Ordering::Relaxed) {
            return Err(StartError::HostNotPrepared);
        }
        let failed = |what: &str, err: &dyn std::fmt::Display| StartError::ForkServer {
            reason: format!("{what}: {err}"),
        };
        let (one_shot, name) = IpcOneShotServer::<Event>::new()
            .map_err(|e| failed("could not create its one-shot channel", &e))?;
        let (passed, its_end) =
            reply_socket::pair().map_err(|e| failed("could not create its socket pair", &e))?;
        let mut child = {
            use std::os::unix::process::CommandExt as _;
            std::process::Command::new("/proc/self/exe")
                .env(FORK_SERVER_ENV, format!("{}:{name}", getpid()))
                .stdin(Stdio::from(its_end))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                // A terminal's Ctrl-C goes to the whole foreground process
                // group; a group of its own leaves it to the server, which
                // stops its workers in order.
                .process_group(0)
                .spawn()
                .map_err(|e| failed("could not run /proc/self/exe", &e))?
        };
        // `accept` has no timeout: it runs on a helper thread, which a
        // connection of our own releases if the child never connects.
        let (accepted_tx, accepted) = crossbeam_channel::bounded(1);
        let acceptor = std::thread::Builder::new()
            .name("offload-fork-server-accept".into())
            .spawn(move || {
                let _ = accepted_tx.send(one_shot.accept());
            });
        let acceptor = match acceptor {
            Ok(acceptor) => acceptor,
            Err(err) => {
                stop_child(&mut child);
                return Err(failed("could not start a thread", &err));
            }
        };
        let deadline = Instant::now() + READY_WAIT;
        let outcome = loop {
            match accepted.recv_timeout(Duration::from_millis(10)) {
                Ok(outcome) => break Some(outcome),
                Err(_) if Instant::now() >= deadline => break None,
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        break Some(Err(ipc_channel::IpcError::Io(std::io::Error::other(
                            format!("it ended at start: {status}"),
                        ))));
                    }
                }
            }
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                // Release the acceptor: connect, and hang up at once.
                drop(IpcSender::<Event>::connect(name));
                match accepted.recv_timeout(READY_WAIT) {
                    Ok(outcome) => outcome,
                    Err(_) => Err(ipc_channel::IpcError::Disconnected),
                }
            }
        };
        let ready = match outcome {
            Ok((events, Event::Ready { commands })) => Ok((events, commands)),
            Ok((_, other)) => Err(format!("its first message was {other:?}")),
            Err(err) => Err(format!("it did not report within {READY_WAIT:?}: {err:?}")),
        };
        match ready {
            Ok((events, commands)) => {
                let _ = acceptor.join();
                Ok(ForkServer {
                    child,
                    commands: Some(commands),
                    events,
                    passed,
                })
            }
            Err(reason) => {
                stop_child(&mut child);
                // The child is gone, so the acceptor has returned (or will,
                // once the connection above is seen).
                let _ = acceptor.join();
                Err(StartError::ForkServer { reason })
            }
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The reply socket of worker `pid`, which it has just reported.
    pub(crate) fn reply_socket(&self, pid: u32) -> Result<ReplyReceiver, String> {
        reply_socket::take_passed(self.passed.as_fd(), pid)
    }

    /// Reaps it after its death (its `events` said EOF); how it ended.
    pub(crate) fn reap(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // EOF but still running: it closed its end and is no use.
                Ok(None) => {
                    stop_child(&mut self.child);
                    return "it closed its channel; killed".into();
                }
                Err(err) => return format!("could not reap it: {err}"),
            }
        }
    }

    /// Tells it to stop (closing its command channel), waits a bounded time
    /// for it to stop its workers, and reaps it.
    pub(crate) fn stop(mut self) {
        self.commands = None;
        let deadline = Instant::now() + WORKER_GRACE + Duration::from_secs(1);
        loop {
            match self.child.try_wait() {
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => return stop_child(&mut self.child),
                _ => return,
            }
        }
    }
}

/// Kills and reaps a fork server that is of no use.
fn stop_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
