//! A runner's life, and one job's round trip to a worker process: the whole
//! of `procs`' work for a job. Whatever happens — answer, timeout, worker
//! lost, no worker, shutdown — the job's `Done` is completed once, here.

use std::sync::atomic::Ordering;
use std::time::Instant;

use ipc_channel::{IpcError, TryRecvError};

use super::fork_server::Command;
use super::{Shared, WorkerHandle, EXIT_REPORT_WAIT, STOP_CHECK};
use crate::apply::queue::{Claimed, Taker};
use crate::apply::Timing;
use crate::error::{ApplyError, BusyReason};
use crate::job::{Answer, Job};
use crate::stats::Gauge;

impl Shared {
    /// One runner: hold a live worker, take a job from the queue, do its
    /// round trip; until the pool stops. A runner counts as a free worker
    /// (for a queue wait of zero) only while it holds a worker.
    pub(super) fn run_runner(&self, queue: &Taker) {
        let mut worker: Option<WorkerHandle> = None;
        loop {
            if worker.is_none() {
                match self.next_worker(None) {
                    Ok(next) => worker = Some(next),
                    Err(_) => return,
                }
            }
            let Some(claimed) = queue.take() else { return };
            // The worker in hand may have died while this runner waited for
            // a job: then the job gets the next worker within its queue wait.
            let in_hand = worker.take().filter(|w| !w.end.has_ended());
            let worker_for_job = match in_hand {
                Some(worker) => Ok(worker),
                None => self.next_worker(Some(claimed.arrived + self.queue_wait)),
            };
            worker = match worker_for_job {
                Ok(chosen) => self.serve(chosen, claimed, queue),
                Err(why) => {
                    let job = claimed.job;
                    let err = match why {
                        NoWorker::Stopping => ApplyError::ShuttingDown { job },
                        NoWorker::Down => Shared::pool_down(job),
                        NoWorker::InTime if self.queue_wait.is_zero() => ApplyError::Busy {
                            job,
                            reason: BusyReason::NoneFree,
                        },
                        NoWorker::InTime => ApplyError::Busy {
                            job,
                            reason: BusyReason::Waited {
                                queue_wait: self.queue_wait,
                            },
                        },
                    };
                    let timing = Timing {
                        queue_wait: Some(claimed.arrived.elapsed()),
                        run: None,
                    };
                    claimed.done.complete(Err(err), timing);
                    None
                }
            };
        }
    }

    /// Does `claimed`'s round trip on `worker` and completes it; gives the
    /// worker back if it can serve again.
    fn serve(
        &self,
        mut worker: WorkerHandle,
        claimed: Claimed,
        queue: &Taker,
    ) -> Option<WorkerHandle> {
        let Claimed { job, arrived, done } = claimed;
        let mut timing = Timing {
            queue_wait: Some(arrived.elapsed()),
            run: None,
        };
        if self.stopping.load(Ordering::Relaxed) {
            done.complete(Err(ApplyError::ShuttingDown { job }), timing);
            return Some(worker);
        }
        let result = self.round_trip(job, &mut worker, &mut timing);
        // Only a worker that answered may serve again.
        let answered = matches!(result, Ok(_) | Err(ApplyError::JobPanicked { .. }));
        let usable = answered
            && !worker.end.has_ended()
            && self.recycle_after.is_none_or(|limit| worker.served < limit);
        if usable {
            queue.free_before_reply();
        }
        done.complete(result, timing);
        // Dropping a handle closes the worker's channels: it exits and the
        // supervisor replaces it (recycling, or a worker that failed).
        usable.then_some(worker)
    }

    fn round_trip(
        &self,
        job: Job,
        worker: &mut WorkerHandle,
        timing: &mut Timing,
    ) -> Result<Answer, ApplyError> {
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
                reply.map_err(|message| ApplyError::JobPanicked { job, message })
            }
            Err(TryRecvError::Empty) => {
                // Over time: the only way to stop a job in another process is
                // to kill the process. The fork server does it, because it can
                // be sure the pid is still its child.
                worker.end.timed_out.store(true, Ordering::Relaxed);
                self.command(Command::Kill { pid: worker.pid });
                Err(ApplyError::Timeout { job, elapsed })
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_)))
                if self.stopping.load(Ordering::Relaxed) =>
            {
                Err(ApplyError::ShuttingDown { job })
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_))) => {
                let exit = worker.end.wait(EXIT_REPORT_WAIT);
                if worker.end.orphaned.load(Ordering::Relaxed) {
                    return Err(ApplyError::PoolDown {
                        job,
                        reason: format!(
                            "the worker pool's fork server died, and worker {} with it",
                            worker.pid
                        ),
                    });
                }
                Err(ApplyError::WorkerLost {
                    job,
                    pid: worker.pid,
                    exit,
                })
            }
            Err(TryRecvError::IpcError(IpcError::SerializationError(err))) => {
                // A garbled reply means the worker cannot be trusted: retire it.
                self.command(Command::Kill { pid: worker.pid });
                Err(ApplyError::PoolDown {
                    job,
                    reason: format!("unreadable reply from worker {}: {err}", worker.pid),
                })
            }
        }
    }

    /// A live worker that no runner holds, waiting until `give_up_at` (for
    /// ever if `None`); in short slices, so that a shutdown stops the wait
    /// at once.
    fn next_worker(&self, give_up_at: Option<Instant>) -> Result<WorkerHandle, NoWorker> {
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(NoWorker::Stopping);
            }
            let slice = Instant::now() + STOP_CHECK;
            let slice = give_up_at.map_or(slice, |at| at.min(slice));
            match self.idle.recv_deadline(slice) {
                // It died while idle; the supervisor is already replacing it.
                Ok(worker) if worker.end.has_ended() => {}
                Ok(worker) => return Ok(worker),
                Err(_) if give_up_at.is_none_or(|at| Instant::now() < at) => {}
                Err(_) if self.down.load(Ordering::Relaxed) => return Err(NoWorker::Down),
                Err(_) => return Err(NoWorker::InTime),
            }
        }
    }
}

/// Why a job got no worker.
#[derive(Debug, Clone, Copy)]
enum NoWorker {
    Stopping,
    Down,
    InTime,
}
