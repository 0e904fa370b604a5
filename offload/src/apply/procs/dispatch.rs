//! Sending a job to a worker, and what its sender does until it is
//! answered: the whole of `procs`' work for a job. Whatever happens
//! (answer, timeout, worker lost, no worker, shutdown), the job's `Done` is
//! completed once, here or by the worker's collector.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_channel::IpcError;

use super::fork_server::Command;
use super::status::{Fate, Load};
use super::worker::{FromWorker, ReplyTo, ToWorker, WorkerReply};
use super::{Route, Shared, WorkerState, EXIT_REPORT_WAIT};
use crate::apply::done::Done;
use crate::apply::Timing;
use crate::error::ApplyError;
use crate::job::{Answer, Job};

/// A job with room reserved for it in a worker's channel and a slot in its
/// status page, about to be sent.
#[derive(Debug)]
pub(super) struct Ticket {
    route: Arc<Route>,
    slot: usize,
    seq: u64,
    load: Load,
}

/// A job sent to a worker whose reply the collector takes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(super) job: Job,
    pub(super) done: Done,
    /// When it was handed in, for its queue wait if it is sent again.
    pub(super) arrived: Instant,
    pub(super) slot: usize,
    pub(super) queue_wait: Duration,
    pub(super) sent_at: Instant,
}

impl Shared {
    /// An `apply` caller's job: sent from this thread to a worker with room,
    /// the reply awaited on this thread's mailbox; queued if no worker has
    /// room, or if other jobs wait already (they were first).
    pub(super) fn serve_here(&self, job: Job, mut done: Done) {
        let arrived = Instant::now();
        loop {
            if let Some(err) = self.refusal(job) {
                return done.complete(Err(err), Timing::default());
            }
            let ticket = if self.queue.looks_empty() {
                self.reserve(job)
            } else {
                None
            };
            let Some(ticket) = ticket else {
                return self.enqueue(job, done, arrived);
            };
            let mut mailbox = self.mailboxes.take(self);
            let worker = Arc::clone(&ticket.route.worker);
            let Ok(reply_to) = mailbox.reply_to(worker.number) else {
                // No channel to be had (out of descriptors): the collector
                // can take the reply instead.
                self.mailboxes.give_back(mailbox);
                return self.send_for_collector(ticket, job, done, arrived);
            };
            let queue_wait = arrived.elapsed();
            self.count_running(&mut done);
            self.stats.running.fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            if self.send(&ticket, job, reply_to).is_err() {
                self.stats.running.fetch_sub(1, Ordering::Relaxed);
                mailbox.forget(worker.number);
                self.mailboxes.give_back(mailbox);
                self.unsend(&ticket);
                // Dead: its replacement is on its way.
                self.retire(&worker);
                continue;
            }
            drop(ticket.route);
            let reply = mailbox.recv(worker.number);
            let run = sent_at.elapsed();
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            let timing = Timing {
                queue_wait: Some(queue_wait),
                run: Some(run),
            };
            match reply {
                Ok(FromWorker { seq, reply }) if seq == ticket.seq => {
                    self.mailboxes.give_back(mailbox);
                    // The worker has room again: a job waiting may go now.
                    self.pump();
                    return done.complete(answer(job, reply), timing);
                }
                Ok(FromWorker { seq, .. }) => {
                    mailbox.forget(worker.number);
                    self.mailboxes.give_back(mailbox);
                    let reason = format!(
                        "worker {} answered job {seq} instead of job {}",
                        worker.pid, ticket.seq
                    );
                    return done.complete(Err(self.untrusted(&worker, job, reason)), timing);
                }
                Err(IpcError::SerializationError(err)) => {
                    mailbox.forget(worker.number);
                    self.mailboxes.give_back(mailbox);
                    let reason = format!("unreadable reply from worker {}: {err}", worker.pid);
                    return done.complete(Err(self.untrusted(&worker, job, reason)), timing);
                }
                Err(IpcError::Io(err)) => {
                    // Not an EOF: the worker may still be alive and running
                    // the job, so its slot says nothing yet.
                    mailbox.forget(worker.number);
                    self.mailboxes.give_back(mailbox);
                    let reason = format!("no reply from worker {}: {err}", worker.pid);
                    return done.complete(Err(self.untrusted(&worker, job, reason)), timing);
                }
                Err(IpcError::Disconnected) => {
                    worker.gone.store(true, Ordering::Relaxed);
                    mailbox.forget(worker.number);
                    self.mailboxes.give_back(mailbox);
                    match self.after_loss(&worker, ticket.slot, ticket.seq, job, run) {
                        // Never started: off to another worker.
                        None => continue,
                        Some(err) => return done.complete(Err(err), timing),
                    }
                }
            }
        }
    }

    /// A job whose caller does not wait (`submit`'s, arrived now, or one
    /// sent again after its worker died before starting it, arrived at
    /// `arrived`): sent to a worker with room for the collector to answer,
    /// or queued.
    pub(super) fn dispatch(&self, job: Job, done: Done, arrived: Instant) {
        if let Some(err) = self.refusal(job) {
            return done.complete(Err(err), Timing::default());
        }
        if self.queue.looks_empty() {
            if let Some(ticket) = self.reserve(job) {
                return self.send_for_collector(ticket, job, done, arrived);
            }
        }
        self.enqueue(job, done, arrived);
    }

    /// Sends the jobs waiting in the queue to idle workers, as long as there
    /// are both. Called by whoever sees a worker make room.
    pub(super) fn pump(&self) {
        // Pairs with the fence in `enqueue`: either this look sees the job
        // queued there, or that thread's look sees the room made here.
        fence(Ordering::SeqCst);
        while !self.queue.looks_empty() && !self.stopping.load(Ordering::Relaxed) {
            // The job first, then room for it by the same rules as any job:
            // a small one may still queue behind small ones.
            let Some(claimed) = self.queue.taker().try_take() else {
                return;
            };
            let job = claimed.job;
            if let Some(ticket) = self.reserve(job) {
                self.send_for_collector(ticket, job, claimed.done, claimed.arrived);
                continue;
            }
            self.queue.put_back(claimed);
            // A worker that made room while the job was out of the queue saw
            // no job to send it: look once more, and go round again if there
            // is room now.
            fence(Ordering::SeqCst);
            if !self.has_room(self.load_of(job)) {
                return;
            }
        }
    }

    /// Queues a job (its queue wait counting from `arrived`), then sends the
    /// front one if a worker has room: a worker that made room just before
    /// the job was queued saw no job to take.
    fn enqueue(&self, job: Job, done: Done, arrived: Instant) {
        self.queue.push_since(job, done, arrived);
        // Pairs with the fence in `pump`.
        fence(Ordering::SeqCst);
        self.pump();
    }

    /// Counts a job sent to a worker as running for its client's address
    /// (fair share), unless it counts already (taken from the queue).
    fn count_running(&self, done: &mut Done) {
        if !done.is_running() {
            let running = self.queue.start_running(done.client());
            done.set_running(running);
        }
    }

    /// Why a job must be refused now, if it must.
    fn refusal(&self, job: Job) -> Option<ApplyError> {
        if self.stopping.load(Ordering::Relaxed) {
            Some(ApplyError::ShuttingDown { job })
        } else if self.down.load(Ordering::Relaxed) {
            Some(Shared::pool_down(job))
        } else {
            None
        }
    }

    /// Reserves room for `job` on a worker: an idle one if any, else one
    /// whose channel holds only small jobs, if `job` is small too.
    fn reserve(&self, job: Job) -> Option<Ticket> {
        self.reserve_load(self.load_of(job))
    }

    /// The room `job` takes in a worker's channel.
    fn load_of(&self, job: Job) -> Load {
        match self.costs.predict(job) {
            Some(cost) if cost.as_nanos() <= u128::from(self.behind_ns) => {
                Load::small(u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX))
            }
            _ => Load::alone(),
        }
    }

    /// Whether some worker has room for a job of `load` now.
    fn has_room(&self, load: Load) -> bool {
        let directory = self.directory.read().unwrap_or_else(|p| p.into_inner());
        directory
            .iter()
            .any(|route| route.worker.page.has_room(load, self.behind_ns))
    }

    fn reserve_load(&self, load: Load) -> Option<Ticket> {
        let directory = self.directory.read().unwrap_or_else(|p| p.into_inner());
        let count = directory.len();
        let start = self.rotor.fetch_add(1, Ordering::Relaxed);
        let passes: &[bool] = if self.behind_ns == 0 {
            &[true]
        } else {
            &[true, false]
        };
        for &idle_only in passes {
            for i in 0..count {
                let route = &directory[start.wrapping_add(i) % count];
                let page = &route.worker.page;
                if page.reserve(load, idle_only, self.behind_ns) {
                    let route = Arc::clone(route);
                    drop(directory);
                    let seq = route.worker.next_seq.fetch_add(1, Ordering::Relaxed);
                    let slot = route.worker.page.occupy(seq);
                    return Some(Ticket {
                        route,
                        slot,
                        seq,
                        load,
                    });
                }
            }
        }
        None
    }

    /// Counts a job sent to `route`, and retires the worker once it has been
    /// sent as many as `recycle_after`: it runs those and exits, and the
    /// supervisor replaces it. Only jobs that did go count.
    fn count_sent(&self, route: &Route) {
        let sent = route.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if self.recycle_after == Some(sent) {
            self.stats.recycled.fetch_add(1, Ordering::Relaxed);
            self.retire(&route.worker);
        }
    }

    fn send(&self, ticket: &Ticket, job: Job, reply_to: ReplyTo) -> Result<(), IpcError> {
        let limit_ns = self.job_timeout.map_or(0, |limit| {
            u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        ticket.route.jobs.send(ToWorker {
            job,
            // Fewer than 256 slots: see `status::SLOTS`.
            slot: ticket.slot as u8,
            seq: ticket.seq,
            load: ticket.load,
            limit_ns,
            reply_to,
        })?;
        self.count_sent(&ticket.route);
        Ok(())
    }

    /// Undoes a reservation whose job was not sent.
    fn unsend(&self, ticket: &Ticket) {
        let page = &ticket.route.worker.page;
        page.vacate(ticket.slot, ticket.seq);
        page.release(ticket.load);
    }

    /// Sends a job whose reply the worker's collector will take and complete.
    fn send_for_collector(&self, ticket: Ticket, job: Job, mut done: Done, arrived: Instant) {
        self.count_running(&mut done);
        let worker = Arc::clone(&ticket.route.worker);
        let pending = Pending {
            job,
            done,
            arrived,
            slot: ticket.slot,
            queue_wait: arrived.elapsed(),
            sent_at: Instant::now(),
        };
        // Counted and recorded before it is sent, so that the collector
        // knows it when the reply comes (and never counts it out first);
        // refused if the collector has already seen the worker die, in which
        // case this one is not sent at all.
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        let refused = {
            let mut table = worker.pending.lock().unwrap_or_else(|p| p.into_inner());
            match table.as_mut() {
                Some(table) => {
                    table.insert(ticket.seq, pending);
                    None
                }
                None => Some(pending),
            }
        };
        if let Some(pending) = refused {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            self.unsend(&ticket);
            self.retire(&worker);
            return self.dispatch(pending.job, pending.done, arrived);
        }
        if self.send(&ticket, job, ReplyTo::Collector).is_ok() {
            return;
        }
        // Dead. If the collector has not taken the job back yet, it is this
        // thread's to place again.
        let taken = worker
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|table| table.remove(&ticket.seq));
        if let Some(pending) = taken {
            self.stats.running.fetch_sub(1, Ordering::Relaxed);
            self.unsend(&ticket);
            self.retire(&worker);
            self.dispatch(pending.job, pending.done, arrived);
        }
    }

    /// What to tell the sender of job `seq` in `slot` of a worker that died
    /// before answering it; `None` if it never started and may be sent
    /// again.
    pub(super) fn after_loss(
        &self,
        worker: &WorkerState,
        slot: usize,
        seq: u64,
        job: Job,
        elapsed: Duration,
    ) -> Option<ApplyError> {
        let fate = worker.page.fate(slot, seq);
        if self.stopping.load(Ordering::Relaxed) {
            return Some(ApplyError::ShuttingDown { job });
        }
        match fate {
            Fate::NeverStarted => None,
            Fate::Killed => Some(ApplyError::Timeout { job, elapsed }),
            Fate::Started => {
                let exit = worker.wait(EXIT_REPORT_WAIT);
                if worker.orphaned.load(Ordering::Relaxed) {
                    return Some(ApplyError::PoolDown {
                        job,
                        reason: format!(
                            "the worker pool's fork server died, and worker {} with it",
                            worker.pid
                        ),
                    });
                }
                Some(ApplyError::WorkerLost {
                    job,
                    pid: worker.pid,
                    exit,
                })
            }
        }
    }

    /// A worker that sent something unreadable cannot be trusted: it is
    /// retired and killed.
    fn untrusted(&self, worker: &WorkerState, job: Job, reason: String) -> ApplyError {
        self.retire(worker);
        self.command(Command::Kill { pid: worker.pid });
        ApplyError::PoolDown { job, reason }
    }
}

/// A worker's reply as the job's result.
pub(super) fn answer(job: Job, reply: WorkerReply) -> Result<Answer, ApplyError> {
    reply.map_err(|message| ApplyError::JobPanicked { job, message })
}
