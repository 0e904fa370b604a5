//! One job's round trip to a worker process, the whole of `procs`' work for
//! a job: run on the `apply` caller's thread, or on a runner for `submit`.
//! Whatever happens — answer, timeout, worker lost, no worker in time,
//! shutdown — the job's `Done` is completed once, here.

use std::sync::atomic::Ordering;
use std::time::Instant;

use ipc_channel::{IpcError, TryRecvError};

use super::fork_server::Command;
use super::{Shared, Ticket, WorkerHandle, EXIT_REPORT_WAIT, STOP_CHECK};
use crate::apply::run::Place;
use crate::apply::Timing;
use crate::error::ApplyError;
use crate::job::{Answer, Job};
use crate::stats::Gauge;

impl Shared {
    /// One job's round trip, on whichever thread calls it (an `apply` caller
    /// or a runner): waits for an idle worker until the job has waited the
    /// queue wait, sends the job, waits for the reply at most the job
    /// timeout, and completes the ticket with what happened.
    pub(super) fn serve(&self, ticket: Ticket) {
        let Ticket {
            job,
            arrived,
            place,
            done,
        } = ticket;
        let mut timing = Timing::default();
        let result = self.round_trip(job, arrived, place, &mut timing);
        done.complete(result, timing);
    }

    fn round_trip(
        &self,
        job: Job,
        arrived: Instant,
        place: Place,
        timing: &mut Timing,
    ) -> Result<Answer, ApplyError> {
        let mut worker = match self.take_idle_worker(arrived + self.queue_wait) {
            Ok(worker) => worker,
            Err(why) => {
                timing.queue_wait = Some(arrived.elapsed());
                let queued = self.stats.queued.load(Ordering::Relaxed) - 1;
                return Err(match why {
                    NoWorker::Stopping => ApplyError::ShuttingDown { job },
                    NoWorker::Broken => ApplyError::PoolDown {
                        job,
                        reason: "the fork server is gone".into(),
                    },
                    NoWorker::InTime => ApplyError::Busy {
                        job,
                        waited: arrived.elapsed(),
                        queued,
                    },
                });
            }
        };
        drop(place);
        timing.queue_wait = Some(arrived.elapsed());
        worker.end.busy.store(true, Ordering::Relaxed);

        let _running = Gauge::raise(&self.stats.running);
        let started = Instant::now();
        let reply = match worker.jobs.send(job) {
            Ok(()) => match self.job_timeout {
                Some(limit) => worker.replies.try_recv_timeout(limit),
                None => worker.replies.recv().map_err(TryRecvError::IpcError),
            },
            Err(err) => Err(TryRecvError::IpcError(err)),
        };
        let elapsed = started.elapsed();
        timing.run = Some(elapsed);
        worker.end.busy.store(false, Ordering::Relaxed);
        match reply {
            Ok(reply) => {
                worker.served += 1;
                if self
                    .recycle_after
                    .is_some_and(|limit| worker.served >= limit)
                {
                    // Dropping the handle closes the worker's channels: it exits
                    // and the supervisor replaces it.
                    drop(worker);
                } else {
                    let _ = self.give_back.send(worker);
                }
                reply.map_err(|message| ApplyError::JobPanicked { job, message })
            }
            Err(TryRecvError::Empty) => {
                // Over time: the only way to stop a job in another process is
                // to kill the process. The fork server does it, because it can
                // be sure the pid is still its child.
                self.fork_server.send(Command::Kill { pid: worker.pid });
                Err(ApplyError::Timeout { job, elapsed })
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_)))
                if self.stopping.load(Ordering::Relaxed) =>
            {
                Err(ApplyError::ShuttingDown { job })
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_))) => {
                let exit = worker.end.wait(EXIT_REPORT_WAIT);
                Err(ApplyError::WorkerLost {
                    job,
                    pid: worker.pid,
                    exit,
                })
            }
            Err(TryRecvError::IpcError(IpcError::SerializationError(err))) => {
                // A garbled reply means the worker cannot be trusted: retire it.
                self.fork_server.send(Command::Kill { pid: worker.pid });
                Err(ApplyError::PoolDown {
                    job,
                    reason: format!("unreadable reply from worker {}: {err}", worker.pid),
                })
            }
        }
    }

    /// An idle worker that is still alive, waiting until `give_up_at`; in
    /// short slices, so that a shutdown stops the wait at once.
    fn take_idle_worker(&self, give_up_at: Instant) -> Result<WorkerHandle, NoWorker> {
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(NoWorker::Stopping);
            }
            let slice = (Instant::now() + STOP_CHECK).min(give_up_at);
            match self.idle.recv_deadline(slice) {
                // It died while idle; the supervisor is already replacing it.
                Ok(worker) if worker.end.has_ended() => {}
                Ok(worker) => return Ok(worker),
                Err(_) if Instant::now() < give_up_at => {}
                Err(_) if self.broken.load(Ordering::Relaxed) => return Err(NoWorker::Broken),
                Err(_) => return Err(NoWorker::InTime),
            }
        }
    }
}

/// Why a job got no worker.
#[derive(Debug, Clone, Copy)]
enum NoWorker {
    Stopping,
    Broken,
    InTime,
}
