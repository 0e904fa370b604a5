//! The fork server: a single-threaded process that forks every worker.
//!
//! `fork()` copies only the calling thread; a lock held by any other thread at
//! that moment stays locked for ever in the child. So the server never forks
//! itself: it starts a *fresh* process from its own executable
//! (`/proc/self/exe`) in fork-server mode, which `main` enters before it does
//! anything else (see [`fork_server_main_if_requested`]), and asks that
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
//!  pool: Spawn         ─commands─▶         fork() ─────────────────▶   serve(jobs, replies)
//!                      ◀─events──          Spawned{pid, jobs, replies}
//!  runner: job         ─────────────────── jobs ──────────────────▶
//!                      ◀─────────────────── replies ───────────────
//!                      ◀─events──          waitpid: Exited{pid, exit}
//!  events: EOF = the fork server died
//! ```
//!
//! The fork server holds the only sending end of `events`, so its death shows
//! up in the pool as EOF on that channel at once. The channel is set up with
//! ipc-channel's one-shot server: its name (a socket path in a private
//! temporary directory) goes to the new process in an environment variable.
//! Every descriptor the server opens is close-on-exec (std and ipc-channel
//! both ask for it), so the fork server inherits nothing but stdio.

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use ipc_channel::TryRecvError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::worker::{self, exit_now, WorkerReply};
use crate::error::{Exit, StartError};
use crate::job::Job;

/// Set in the environment of a process started as a fork server: the pool's
/// pid and the name of the one-shot server to connect to, as `PID:NAME`.
const FORK_SERVER_ENV: &str = "OFFLOAD_FORK_SERVER";

/// Raised by [`fork_server_main_if_requested`]: this binary can serve as a
/// fork server, so `procs` may start one from it.
static HOST_PREPARED: AtomicBool = AtomicBool::new(false);

/// How often the fork server looks for ended workers between commands. A
/// dead worker is reported within this, and the idle cost is a few hundred
/// cheap wake-ups a second.
const REAP_EVERY: Duration = Duration::from_millis(2);

/// How long the fork server, once told to stop, lets its workers finish
/// before it kills them.
const WORKER_GRACE: Duration = Duration::from_secs(2);

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

/// Enters fork-server mode if this process was started as a fork server,
/// and never returns then; otherwise returns at once and does nothing else.
///
/// A binary that uses the `procs` strategy must call this first thing in
/// `main`, before it parses arguments, starts a thread or logs anything: the
/// pool starts its fork servers by running the binary's own executable
/// (`/proc/self/exe`) with a marker in the environment, and this call is
/// where such a process turns into a fork server instead of running the
/// program. `procs` refuses to start in a process that has not called it
/// ([`StartError::HostNotPrepared`]).
///
/// # Examples
///
/// ```no_run
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     offload::fork_server_main_if_requested();
///     // ... the program, which may now use `--apply procs`.
/// }
/// ```
pub fn fork_server_main_if_requested() {
    HOST_PREPARED.store(true, Ordering::Relaxed);
    let Some(value) = std::env::var_os(FORK_SERVER_ENV) else {
        return;
    };
    // Its own children (workers) are forked, never exec'd, but keep the
    // marker from anything they might start.
    std::env::remove_var(FORK_SERVER_ENV);
    let parsed = value.to_str().and_then(|v| {
        let (pid, name) = v.split_once(':')?;
        Some((pid.parse::<i32>().ok()?, name.to_owned()))
    });
    let Some((parent, name)) = parsed else {
        eprintln!("offload fork server: bad {FORK_SERVER_ENV} value {value:?}");
        exit_now(2)
    };
    close_inherited_descriptors();
    serve_pool(Pid::from_raw(parent), name)
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
    /// [`fork_server_main_if_requested`]; [`StartError::ForkServer`] when the
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
        let mut child = {
            use std::os::unix::process::CommandExt as _;
            std::process::Command::new("/proc/self/exe")
                .env(FORK_SERVER_ENV, format!("{}:{name}", getpid()))
                .stdin(Stdio::null())
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

/// Closes every descriptor above stdio. What the server opened is
/// close-on-exec already; this also drops what the server itself inherited
/// without that flag (a jobserver pipe from cargo, a shell's stray
/// descriptor), which the fork server and its workers have no use for.
fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: the directory's own descriptor is among them.
    let fds: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: nothing in this process owns these descriptors yet: it is
        // single-threaded and has opened nothing since `main` began, so no
        // object will use or close them after this.
        unsafe {
            nix::libc::close(fd);
        }
    }
}

/// The fork server's life, from connecting to its pool. Never returns.
fn serve_pool(parent: Pid, name: String) -> ! {
    worker::die_with_parent(parent);
    // Named apart from the server, so that `ps` tells them apart and
    // `pkill sumserver` signals the server alone.
    let _ = nix::sys::prctl::set_name(c"ysum-forksrv");
    let events = match IpcSender::<Event>::connect(name) {
        Ok(events) => events,
        Err(err) => {
            eprintln!("offload fork server: cannot reach the pool: {err}");
            exit_now(2)
        }
    };
    let (commands, requests) = match ipc::channel::<Command>() {
        Ok(channel) => channel,
        Err(err) => {
            eprintln!("offload fork server: no command channel: {err}");
            exit_now(2)
        }
    };
    if events.send(Event::Ready { commands }).is_err() {
        exit_now(2);
    }
    serve(requests, events)
}

/// Serves commands until the pool closes its end, then stops the workers.
fn serve(requests: IpcReceiver<Command>, events: IpcSender<Event>) -> ! {
    let me = getpid();
    let mut children: HashSet<Pid> = HashSet::new();
    loop {
        match requests.try_recv_timeout(REAP_EVERY) {
            Ok(Command::Spawn) => {
                if let Some((jobs, replies)) = spawn(&events, &mut children) {
                    // This is the new worker. Keep only its own ends: every
                    // other copy would stop EOF from telling its owner of a
                    // death (the pool's `events` in particular, which must
                    // close when the fork server dies).
                    drop(requests);
                    drop(events);
                    drop(children);
                    worker::serve(jobs, replies, me)
                }
            }
            Ok(Command::Kill { pid }) => {
                let pid = Pid::from_raw(pid as i32);
                if children.contains(&pid) {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::IpcError(_)) => break,
        }
        reap(&mut children, &events);
    }
    // The server is gone or done: its pool has closed its workers'
    // channels, so the workers are on their way out. Wait for them, then
    // kill what is left, and reap everything.
    let deadline = Instant::now() + WORKER_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        std::thread::sleep(REAP_EVERY);
        reap(&mut children, &events);
    }
    for pid in &children {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    while !children.is_empty() {
        match waitpid(None, None) {
            Ok(status) => report(&mut children, &events, status),
            Err(_) => break,
        }
    }
    exit_now(0)
}

/// Forks one worker and reports it (or the failure) to the pool. Returns
/// the worker's channel ends in the new worker, `None` in the fork server.
fn spawn(
    events: &IpcSender<Event>,
    children: &mut HashSet<Pid>,
) -> Option<(IpcReceiver<Job>, IpcSender<WorkerReply>)> {
    let channels =
        ipc::channel::<Job>().and_then(|jobs| Ok((jobs, ipc::channel::<WorkerReply>()?)));
    let ((job_tx, job_rx), (reply_tx, reply_rx)) = match channels {
        Ok(channels) => channels,
        Err(err) => {
            let _ = events.send(Event::SpawnFailed {
                reason: format!("no channel: {err}"),
            });
            return None;
        }
    };
    // SAFETY: this process never starts a thread.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(job_tx);
            drop(reply_rx);
            Some((job_rx, reply_tx))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(job_rx);
            drop(reply_tx);
            let pid = child.as_raw().unsigned_abs();
            // If the pool is gone, the worker's channel ends went with the
            // failed message: it sees EOF and exits, and is reaped like any
            // other.
            let _ = events.send(Event::Spawned {
                pid,
                jobs: job_tx,
                replies: reply_rx,
            });
            children.insert(child);
            None
        }
        Err(err) => {
            let _ = events.send(Event::SpawnFailed {
                reason: format!("fork failed: {err}"),
            });
            None
        }
    }
}

/// Reaps every worker that has ended, without blocking.
fn reap(children: &mut HashSet<Pid>, events: &IpcSender<Event>) {
    while !children.is_empty() {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => report(children, events, status),
        }
    }
}

/// Tells the pool how a reaped worker ended.
fn report(children: &mut HashSet<Pid>, events: &IpcSender<Event>, status: WaitStatus) {
    let (pid, exit) = match status {
        WaitStatus::Exited(pid, code) => (pid, Exit::Code(code)),
        WaitStatus::Signaled(pid, signal, _) => (pid, Exit::Signal(signal as i32)),
        _ => return,
    };
    if children.remove(&pid) {
        let _ = events.send(Event::Exited {
            pid: pid.as_raw().unsigned_abs(),
            exit,
        });
    }
}
