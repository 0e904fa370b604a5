//! A worker process: receives jobs on its channel, runs them, replies.
//!
//! It is forked by the fork server and holds its job channel's receiving
//! end, the sending end of its own reply socket (read by the pool's
//! collector), and its status page. A job names
//! where its reply goes: the collector, or the mailbox of the thread that
//! sent it, whose channel the worker is given the first time that mailbox
//! sends it a job. When the pool drops its end of the job channel, or when
//! the fork server dies, it exits.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::reply_socket::ReplySender;
use super::status::{monotonic_ns, Load, StatusPage};
use crate::apply::run::panic_message;
use crate::job::{Answer, Cancel, Job};

/// A worker's reply: the answer, or the message of the panic the job raised.
pub(crate) type WorkerReply = Result<Answer, String>;

/// One job sent to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ToWorker {
    pub(crate) job: Job,
    /// Its slot in the status page, and its sequence number there.
    pub(crate) slot: u8,
    pub(crate) seq: u64,
    /// The room it took in the load word, given back when it ends.
    pub(crate) load: Load,
    /// Its time limit in nanoseconds, counted from its start; 0 for none.
    pub(crate) limit_ns: u64,
    pub(crate) reply_to: ReplyTo,
}

/// Where a job's reply goes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ReplyTo {
    /// The worker's own reply channel, read by the pool's collector.
    Collector,
    /// A caller's mailbox; its channel comes with its first job here.
    Mailbox {
        id: u64,
        channel: Option<IpcSender<FromWorker>>,
    },
}

/// A reply, with the sequence number of the job it answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FromWorker {
    pub(crate) seq: u64,
    pub(crate) reply: WorkerReply,
}

/// The worker's life: serve jobs until the job channel closes, then exit.
/// Never returns.
pub(crate) fn serve(
    jobs: IpcReceiver<ToWorker>,
    replies: ReplySender,
    page: StatusPage,
    fork_server: Pid,
) -> ! {
    die_with_parent(fork_server);
    let _ = nix::sys::prctl::set_name(c"ysum-worker");
    run_as_batch();
    // Jobs in a worker have no deadline of their own: a job that runs too
    // long is killed with its process by the pool's watchdog.
    let cancel = Cancel::never();
    // Bounded by the mailboxes the pool ever made, which is bounded by its
    // callers at once.
    let mut mailboxes: HashMap<u64, IpcSender<FromWorker>> = HashMap::new();
    while let Ok(message) = jobs.recv() {
        let ToWorker {
            job,
            slot,
            seq,
            load,
            limit_ns,
            reply_to,
        } = message;
        let slot = usize::from(slot);
        if let ReplyTo::Mailbox {
            id,
            channel: Some(channel),
        } = &reply_to
        {
            mailboxes.insert(*id, channel.clone());
        }
        let deadline = if limit_ns == 0 {
            0
        } else {
            monotonic_ns().saturating_add(limit_ns).max(1)
        };
        if !page.start(slot, seq, deadline) {
            // Not a job the pool queued for this worker: it cannot be
            // trusted any more.
            exit_now(2);
        }
        let reply = match catch_unwind(AssertUnwindSafe(|| job.run(&cancel))) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(stop)) => Err(format!("stopped at a yield point: {stop:?}")),
            Err(payload) => Err(cut_short(panic_message(payload.as_ref()))),
        };
        if !page.finish(slot, seq, load) {
            // The watchdog claimed the job: its caller is told it timed out,
            // and this process is about to be killed.
            exit_now(0);
        }
        let reply = FromWorker { seq, reply };
        match reply_to {
            ReplyTo::Collector => {
                if replies.send(&reply).is_err() {
                    break;
                }
            }
            ReplyTo::Mailbox { id, .. } => {
                // A mailbox gone means the pool is going.
                let sent = mailboxes.get(&id).map(|to| to.send(reply).is_ok());
                if sent != Some(true) {
                    mailboxes.remove(&id);
                }
            }
        }
    }
    exit_now(0)
}

/// Runs this process under `SCHED_BATCH`, unless it was given a policy
/// other than the default. A worker runs CPU-heavy work, and a batch task
/// that wakes does not preempt the one running: so the thread that sends a
/// worker its job (the `--io events` reactor, a connection thread), which
/// has more I/O to do for this and other requests, goes on, and the worker
/// runs on a free core or at the next tick. Under 8 clients of tiny jobs on
/// two cores, `perf` put a tenth of the reactor's time in waking workers
/// and a further 5% in being preempted by them on its way out of `sendmsg`
/// (docs/results.md, "Issue 15, fifth pass"). Nothing else changes: the
/// nice value, and the share of the CPU, are those of any other task.
fn run_as_batch() {
    use nix::libc::{
        sched_getscheduler, sched_param, sched_setscheduler, SCHED_BATCH, SCHED_OTHER,
    };
    // SAFETY: system calls on this process alone, with a valid `sched_param`.
    unsafe {
        if sched_getscheduler(0) == SCHED_OTHER {
            let param = sched_param { sched_priority: 0 };
            // Failure leaves the default policy, which only costs speed.
            let _ = sched_setscheduler(0, SCHED_BATCH, &param);
        }
    }
}

/// The longest panic message sent back: a reply must fit the pool's buffer
/// (`reply_socket::MAX_REPLY`).
const MAX_MESSAGE: usize = 4096;

/// `message`, cut at a character boundary to at most [`MAX_MESSAGE`] bytes.
fn cut_short(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Asks the kernel to SIGKILL this process when its parent dies, then checks
/// that the parent has not already died before the request took effect.
pub(crate) fn die_with_parent(parent: Pid) {
    // Failure leaves the EOF on the channels as the way out, so it is not
    // fatal.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        exit_now(1);
    }
}

/// Ends this forked process at once, without running the exit handlers or
/// flushing the stdio buffers that it inherited from the server (they belong
/// to the server and would be written twice).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers.
    unsafe { nix::libc::_exit(code) }
}
