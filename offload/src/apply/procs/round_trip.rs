//! A runner's life, and one job's round trip to a worker process: the whole
//! of `procs`' work for a job. Whatever happens — answer, timeout, worker
//! lost, no worker, shutdown — the job's `Done` is completed once, here.
//!
//! A round trip is two halves, [`Shared::send`] and [`Shared::await_reply`],
//! so that a runner can send the next waiting job to its worker *before* it
//! completes the previous one: completing wakes the caller, and the
//! scheduler may then run the caller in the runner's place; with the next
//! job already sent, the worker is busy meanwhile instead of idle.

use std::sync::atomic::Ordering;
use std::time::Instant;

use ipc_channel::IpcError;

use super::fork_server::Command;
use super::{Shared, WorkerHandle, EXIT_REPORT_WAIT, STOP_CHECK};
use crate::apply::done::Done;
use crate::apply::queue::{Claimed, Taker};
use crate::apply::Timing;
use crate::error::{ApplyError, BusyReason};
use crate::job::{Answer, Job};
use crate::stats::Gauge;

/// A job sent to a worker, whose reply is awaited.
struct InFlight {
    job: Job,
    done: Done,
    timing: Timing,
    sent_at: Instant,
    /// How the send went: a failed send is reported as the reply would be.
    sent: Result<(), IpcError>,
}

impl Shared {
    /// One runner: take a job from the queue, get a worker for it within its
    /// queue wait, do its round trip and those of the jobs waiting behind it
    /// on the same worker; until the queue closes. Runners hold no worker
    /// between jobs, so that an `apply` caller can take an idle worker
    /// itself (see [`Shared::serve_here`]).
    pub(super) fn run_runner(&self, queue: &Taker) {
        while let Some(claimed) = queue.take() {
            match self.next_worker(Some(claimed.arrived + self.queue_wait)) {
                Ok(worker) => self.serve_queue(worker, claimed, queue),
                Err(why) => self.refuse(claimed, why),
            }
        }
    }

    /// Serves `claimed` on `worker`, then every job that is waiting when the
    /// previous one answers, sending each before completing the one before
    /// it; gives the worker back once no job waits.
    fn serve_queue(&self, mut worker: WorkerHandle, claimed: Claimed, queue: &Taker) {
        let Some(mut flight) = self.send(&mut worker, claimed) else {
            return self.give_back(worker, Some(queue));
        };
        loop {
            let result = self.await_reply(&mut worker, &mut flight);
            let usable = self.usable(&worker, &result);
            let next = if usable { queue.try_take() } else { None };
            let next_flight = next.and_then(|claimed| self.send(&mut worker, claimed));
            if next_flight.is_none() && usable {
                // Back among the idle before the caller hears, so that its
                // next job finds the worker free.
                self.give_back(worker, Some(queue));
                flight.done.complete(result, flight.timing);
                return;
            }
            flight.done.complete(result, flight.timing);
            match next_flight {
                Some(next) => flight = next,
                // Dropping a handle closes the worker's channels: it exits
                // and the supervisor replaces it (recycling, or a worker that
                // failed).
                None => return,
            }
        }
    }

    /// An `apply` caller's round trip on its own thread, with a worker it
    /// took from the idle ones: no hand-off to a runner and back.
    pub(super) fn serve_here(&self, mut worker: WorkerHandle, claimed: Claimed) {
        let Some(mut flight) = self.send(&mut worker, claimed) else {
            return self.give_back(worker, None);
        };
        let result = self.await_reply(&mut worker, &mut flight);
        if self.usable(&worker, &result) {
            self.give_back(worker, None);
        }
        flight.done.complete(result, flight.timing);
    }

    /// Whether `worker` may serve again after `result`: only a worker that
    /// answered, is alive, and is not due for recycling.
    fn usable(&self, worker: &WorkerHandle, result: &Result<Answer, ApplyError>) -> bool {
        let answered = matches!(result, Ok(_) | Err(ApplyError::JobPanicked { .. }));
        let worn_out = self
            .recycle_after
            .is_some_and(|limit| worker.served >= limit);
        if answered && worn_out {
            self.stats.recycled.fetch_add(1, Ordering::Relaxed);
        }
        answered && !worker.end.has_ended() && !worn_out
    }

    /// Puts a worker back among the idle ones; from a runner (`queue`), also
    /// counts the runner as free, since it is about to wait for a job again
    /// and with a queue wait of zero the next job may count on it.
    fn give_back(&self, worker: WorkerHandle, queue: Option<&Taker>) {
        if let Some(queue) = queue {
            queue.free_before_reply();
        }
        let _ = self.give_back.send(worker);
    }

    /// Completes a job that got no worker with the reason.
    fn refuse(&self, claimed: Claimed, why: NoWorker) {
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
    }

    /// Sends `claimed` to `worker`; `None` if it was completed instead (the
    /// pool is stopping), the worker still usable.
    fn send(&self, worker: &mut WorkerHandle, claimed: Claimed) -> Option<InFlight> {
        let Claimed { job, arrived, done } = claimed;
        let timing = Timing {
            queue_wait: Some(arrived.elapsed()),
            run: None,
        };
        if self.stopping.load(Ordering::Relaxed) {
            done.complete(Err(ApplyError::ShuttingDown { job }), timing);
            return None;
        }
        worker.end.busy.store(true, Ordering::Relaxed);
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        if let Some(limit) = self.job_timeout {
            worker.end.deadline.arm(self.epoch, sent_at, limit);
        }
        let sent = worker.jobs.send(job);
        Some(InFlight {
            job,
            done,
            timing,
            sent_at,
            sent,
        })
    }

    /// Waits for the reply to `flight`, and says what it means. The wait
    /// itself has no timeout: the watchdog kills a worker whose job runs
    /// past the job timeout, which ends the wait with EOF (see
    /// `watchdog.rs`).
    fn await_reply(
        &self,
        worker: &mut WorkerHandle,
        flight: &mut InFlight,
    ) -> Result<Answer, ApplyError> {
        let job = flight.job;
        let reply = match std::mem::replace(&mut flight.sent, Ok(())) {
            Ok(()) => worker.replies.recv(),
            Err(err) => Err(err),
        };
        let elapsed = flight.sent_at.elapsed();
        let overdue = worker.end.deadline.disarm();
        flight.timing.run = Some(elapsed);
        worker.end.busy.store(false, Ordering::Relaxed);
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        if overdue {
            // Over time, and already being killed by the watchdog, even if
            // the reply slipped in meanwhile: the job used its whole limit.
            return Err(ApplyError::Timeout { job, elapsed });
        }
        match reply {
            Ok(reply) => {
                worker.served += 1;
                reply.map_err(|message| ApplyError::JobPanicked { job, message })
            }
            Err(IpcError::Disconnected | IpcError::Io(_))
                if self.stopping.load(Ordering::Relaxed) =>
            {
                Err(ApplyError::ShuttingDown { job })
            }
            Err(IpcError::Disconnected | IpcError::Io(_)) => {
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
            Err(IpcError::SerializationError(err)) => {
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
        // While a runner waits here, `apply` callers leave the idle workers
        // to it (see `Procs::submit`).
        let _wanting = Gauge::raise(&self.wanting);
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
                // No fork server: the job is refused now, not when a new
                // pool is up (its idle workers died with the old one).
                Err(_) if self.down.load(Ordering::Relaxed) => return Err(NoWorker::Down),
                Err(_) if give_up_at.is_none_or(|at| Instant::now() < at) => {}
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
