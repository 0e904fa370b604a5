//! The fork server's own side: [`fork_server_main_if_requested`], where a
//! process started from the host's executable becomes a fork server, and its
//! life from then on: fork workers on command, reap them, report how each
//! ended, and stop its workers when the pool closes its command channel.
//! `fork_server.rs` is the pool's side.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcReceiver, IpcSender, IpcSharedMemory};
use ipc_channel::TryRecvError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};

use super::fork_server::{Command, Event};
use super::reply_socket::{self, ReplySender};
use super::status::StatusPage;
use super::worker::{self, exit_now, ToWorker};
use crate::error::Exit;

/// Set in the environment of a process started as a fork server: the pool's
/// pid and the name of the one-shot server to connect to, as `PID:NAME`.
pub(super) const FORK_SERVER_ENV: &str = "OFFLOAD_FORK_SERVER";

/// Raised by [`fork_server_main_if_requested`]: this binary can serve as a
/// fork server, so `procs` may start one from it.
pub(super) static HOST_PREPARED: AtomicBool = AtomicBool::new(false);
/// How often the fork server looks for ended workers between commands. A
/// dead worker is reported within this, and the idle cost is a few hundred
/// cheap wake-ups a second.
const REAP_EVERY: Duration = Duration::from_millis(2);

/// How long the fork server, once told to stop, lets its workers finish
/// before it kills them.
pub(super) const WORKER_GRACE: Duration = Duration::from_secs(2);
/// Enters fork-server mode if this process was started as a fork server,
/// and never returns then; otherwise returns at once and does nothing else.
///
/// A binary that uses the `procs` strategy must call this first thing in
/// `main`, before it parses arguments, starts a thread or logs anything: the
/// pool starts its fork servers by running the binary's own executable
/// (`/proc/self/exe`) with a marker in the environment, and this call is
/// where such a process turns into a fork server instead of running the
/// program. `procs` refuses to start in a process that has not called it
/// ([`StartError::HostNotPrepared`](crate::StartError::HostNotPrepared)).
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
    // SAFETY: standard input is the pool's socket (see `fork_server.rs`),
    // and nothing else in this process uses it.
    let to_pool = unsafe { OwnedFd::from_raw_fd(0) };
    serve_pool(Pid::from_raw(parent), name, to_pool)
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
fn serve_pool(parent: Pid, name: String, to_pool: OwnedFd) -> ! {
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
    serve(requests, events, to_pool)
}

/// Serves commands until the pool closes its end, then stops the workers.
fn serve(requests: IpcReceiver<Command>, events: IpcSender<Event>, to_pool: OwnedFd) -> ! {
    let me = getpid();
    let mut children: HashSet<Pid> = HashSet::new();
    loop {
        match requests.try_recv_timeout(REAP_EVERY) {
            Ok(Command::Spawn) => {
                if let Some((jobs, replies, page)) = spawn(&events, to_pool.as_fd(), &mut children)
                {
                    // This is the new worker. Keep only its own ends: every
                    // other copy would stop EOF from telling its owner of a
                    // death (the pool's `events` in particular, which must
                    // close when the fork server dies).
                    drop(requests);
                    drop(events);
                    drop(children);
                    // Its standard input is the pool's socket: /dev/null
                    // takes its place, and fd 0 stays open, so that no
                    // descriptor the worker gets later lands there.
                    let mut stdin = to_pool;
                    if let Ok(null) = std::fs::File::open("/dev/null") {
                        let _ = nix::unistd::dup2(&null, &mut stdin);
                    }
                    std::mem::forget(stdin);
                    match StatusPage::open(page) {
                        Some(page) => worker::serve(jobs, replies, page, me),
                        None => exit_now(2),
                    }
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
/// the worker's channel ends and status page in the new worker, `None` in
/// the fork server.
fn spawn(
    events: &IpcSender<Event>,
    to_pool: BorrowedFd<'_>,
    children: &mut HashSet<Pid>,
) -> Option<(IpcReceiver<ToWorker>, ReplySender, IpcSharedMemory)> {
    let channels = ipc::channel::<ToWorker>()
        .map_err(|e| e.to_string())
        .and_then(|jobs| Ok((jobs, reply_socket::pair().map_err(|e| e.to_string())?)));
    let ((job_tx, job_rx), (reply_tx, reply_rx)) = match channels {
        Ok(channels) => channels,
        Err(err) => {
            let _ = events.send(Event::SpawnFailed {
                reason: format!("no channel: {err}"),
            });
            return None;
        }
    };
    // Mapped here, before the fork, so that the worker shares this mapping;
    // the pool maps the same memory from the copy sent to it.
    let page = StatusPage::create();
    // SAFETY: this process never starts a thread.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(job_tx);
            drop(reply_rx);
            Some((job_rx, ReplySender::new(reply_tx), page))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(job_rx);
            drop(reply_tx);
            let pid = child.as_raw().unsigned_abs();
            // The reply socket first, so that it is there when the pool
            // hears of the worker. If the pool is gone, the worker's ends
            // went with the failed messages: it sees EOF and exits, and is
            // reaped like any other.
            let _ = reply_socket::pass(to_pool, pid, &reply_rx);
            drop(reply_rx);
            let _ = events.send(Event::Spawned {
                pid,
                jobs: job_tx,
                page,
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
