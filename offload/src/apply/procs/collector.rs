//! A worker's collector: the one thread that reads the worker's own reply
//! channel, for the jobs whose sender does not wait on a mailbox (`submit`'s
//! from an event loop, and those that waited in the queue). It completes
//! each job's `Done` as its reply comes, and sends the worker a waiting job
//! as soon as it has room.
//!
//! Its channel's EOF is how the pool hears at once that the worker is gone
//! (exited when retired, killed, or dead): it then deals with every job it
//! was still to answer, and ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use ipc_channel::ipc::IpcReceiver;
use ipc_channel::IpcError;

use super::dispatch::{answer, Pending};
use super::fork_server::Command;
use super::worker::FromWorker;
use super::{Shared, WorkerState};
use crate::apply::Timing;
use crate::error::StartError;

/// Starts the collector of `worker`, reading `replies`.
pub(super) fn start(
    shared: &Arc<Shared>,
    worker: &Arc<WorkerState>,
    replies: IpcReceiver<FromWorker>,
) -> Result<JoinHandle<()>, StartError> {
    let (shared, worker) = (Arc::clone(shared), Arc::clone(worker));
    std::thread::Builder::new()
        .name(format!("offload-collector-{}", worker.pid))
        .spawn(move || collect(&shared, &worker, &replies))
        .map_err(|e| StartError::os("could not start a worker's collector thread", e))
}

fn collect(shared: &Shared, worker: &WorkerState, replies: &IpcReceiver<FromWorker>) {
    loop {
        match replies.recv() {
            Ok(reply) => shared.collected(worker, reply),
            Err(IpcError::SerializationError(err)) => {
                // A garbled reply means the worker cannot be trusted: retire
                // and kill it; its jobs are dealt with at the EOF that
                // follows, when its slots can no longer change.
                tracing::error!(pid = worker.pid, %err, "unreadable reply from a worker process; killing it");
                shared.retire(worker);
                shared.command(Command::Kill { pid: worker.pid });
            }
            Err(IpcError::Io(err)) => {
                // Not an EOF: the worker may be alive. The same way out as a
                // garbled reply, so that its slots are final when read.
                tracing::error!(pid = worker.pid, %err, "a worker process's reply channel failed; killing it");
                shared.retire(worker);
                shared.command(Command::Kill { pid: worker.pid });
                // Until the EOF, which the kill brings.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(IpcError::Disconnected) => break,
        }
    }
    worker.gone.store(true, Ordering::Relaxed);
    shared.worker_gone(worker);
}

impl Shared {
    /// The collector's side: completes the job that `reply` answers.
    fn collected(&self, worker: &WorkerState, reply: FromWorker) {
        let pending = worker
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|table| table.remove(&reply.seq));
        // The worker has room again: a job waiting may go now.
        self.pump();
        if let Some(pending) = pending {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            let timing = Timing {
                queue_wait: Some(pending.queue_wait),
                run: Some(pending.sent_at.elapsed()),
            };
            pending
                .done
                .complete(answer(pending.job, reply.reply), timing);
        }
    }

    /// The collector's side, once its worker is gone: every job it was to
    /// answer is sent again (never started) or completed with what happened.
    fn worker_gone(&self, worker: &WorkerState) {
        let table = worker
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let mut jobs: Vec<(u64, Pending)> = table.into_iter().collect();
        jobs.sort_unstable_by_key(|(seq, _)| *seq);
        for (seq, pending) in jobs {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            let run = pending.sent_at.elapsed();
            match self.after_loss(worker, pending.slot, seq, pending.job, run) {
                None => self.dispatch(pending.job, pending.done, pending.arrived),
                Some(err) => {
                    let timing = Timing {
                        queue_wait: Some(pending.queue_wait),
                        run: Some(run),
                    };
                    pending.done.complete(Err(err), timing);
                }
            }
        }
    }
}
