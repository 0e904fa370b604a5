//! A worker process: receives jobs on its channel, runs them, replies.
//!
//! It is forked by the fork server and holds exactly two channel ends: the
//! receiving end of its job channel and the sending end of its reply channel.
//! When the pool drops the other ends, or when the fork server dies, it exits.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ipc_channel::ipc::{IpcReceiver, IpcSender};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::apply::run::panic_message;
use crate::job::{Answer, Cancel, Job};

/// A worker's reply: the answer, or the message of the panic the job raised.
pub(crate) type WorkerReply = Result<Answer, String>;

/// The worker's life: serve jobs until the job channel closes, then exit.
/// Never returns.
pub(crate) fn serve(
    jobs: IpcReceiver<Job>,
    replies: IpcSender<WorkerReply>,
    fork_server: Pid,
) -> ! {
    die_with_parent(fork_server);
    let _ = nix::sys::prctl::set_name(c"ysum-worker");
    // Jobs in a worker have no deadline of their own: a job that runs too
    // long is killed with its process by the pool.
    let cancel = Cancel::never();
    while let Ok(job) = jobs.recv() {
        let reply = match catch_unwind(AssertUnwindSafe(|| job.run(&cancel))) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(stop)) => Err(format!("stopped at a yield point: {stop:?}")),
            Err(payload) => Err(panic_message(payload.as_ref())),
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
    exit_now(0)
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
