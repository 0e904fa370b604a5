//! `threads`: a pool of worker threads fed by the bounded [`Queue`].
//!
//! Rust threads run Rust code on every core at once, so this is the native
//! answer to the original's problem. The worker completes the job's [`Done`]:
//! `apply` blocks on a one-slot reply behind it (two hand-offs per
//! job, which the benchmark prices at a few microseconds), `submit` returns at
//! once and the worker calls the submitter's callback. A job no worker takes
//! within the queue wait is refused by the queue's timer at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::Client;
use super::done::Done;
use super::queue::{Queue, Taker};
use super::run::{deadline, run_here};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, StartError};
use crate::job::{Cancel, Job};
use crate::stats::{Gauge, Stats};

/// K worker threads and the queue in front of them.
#[derive(Debug)]
pub(crate) struct Threads {
    queue: Queue,
    workers: Vec<JoinHandle<()>>,
    /// Raised at shutdown: running jobs stop at their next yield point.
    stopping: Arc<AtomicBool>,
}

impl Threads {
    pub(crate) fn start(config: &StrategyConfig, stats: &Arc<Stats>) -> Result<Self, StartError> {
        let queue = Queue::start(config.queue, config.queue_wait, stats)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let worker = Worker {
                queue: queue.taker(),
                stopping: Arc::clone(&stopping),
                job_timeout: config.job_timeout,
                stats: Arc::clone(stats),
            };
            let handle = std::thread::Builder::new()
                .name(format!("offload-worker-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| StartError::os("could not start a worker thread", e))?;
            workers.push(handle);
        }
        Ok(Threads {
            queue,
            workers,
            stopping,
        })
    }

    /// Queues `job` for a worker, which completes `done`; the queue refuses
    /// it as busy when it is full, when no worker takes it within the queue
    /// wait, or (queue wait zero) when no worker is free now. Blocking and
    /// non-blocking callers are treated alike.
    pub(crate) fn submit(&self, job: Job, done: Done) {
        if self.stopping.load(Ordering::Relaxed) {
            return done.complete(Err(ApplyError::ShuttingDown { job }), Timing::default());
        }
        self.queue.push(job, done);
    }

    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// `client` has gone: its waiting jobs leave the queue; a running one
    /// stops at its next yield point (it checks the client's flag).
    pub(crate) fn withdraw(&self, client: &Client) {
        self.queue.withdraw(client);
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.queue.close();
        for worker in self.workers.drain(..) {
            // A worker catches its jobs' panics, so joining cannot fail.
            let _ = worker.join();
        }
    }
}

/// What one worker thread owns.
struct Worker {
    queue: Taker,
    stopping: Arc<AtomicBool>,
    job_timeout: Option<Duration>,
    stats: Arc<Stats>,
}

impl Worker {
    fn run(self) {
        let _alive = Gauge::raise(&self.stats.alive);
        while let Some(claimed) = self.queue.take() {
            let mut timing = Timing {
                queue_wait: Some(claimed.arrived.elapsed()),
                run: None,
            };
            let client = claimed.done.client().clone();
            let result = {
                let _running = Gauge::raise(&self.stats.running);
                let cancel = Cancel::never()
                    .with_deadline(deadline(self.job_timeout))
                    .with_pool_flag(&self.stopping)
                    .with_flag(client.gone_flag());
                match run_here(claimed.job, &cancel, &mut timing.run) {
                    // Stopped by its client's flag, not the pool's.
                    Err(ApplyError::ShuttingDown { job }) if client.is_gone() => {
                        Err(ApplyError::Cancelled { job })
                    }
                    result => result,
                }
            };
            let mut done = claimed.done;
            self.queue.finished(done.take_running());
            done.complete(result, timing);
        }
    }
}
