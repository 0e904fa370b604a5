//! `threads`: a pool of worker threads fed by a bounded crossbeam channel.
//!
//! Rust threads run Rust code on every core at once, so this is the native
//! answer to the original's problem. The worker completes the job's [`Done`]:
//! `apply` blocks on a one-slot reply channel behind it (two hand-offs per
//! job, which the benchmark prices at a few microseconds), `submit` returns at
//! once and the worker calls the submitter's callback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use super::done::{Caller, Done};
use super::run::{deadline, run_here};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, StartError};
use crate::job::{Cancel, Job};
use crate::stats::{Gauge, Stats};

/// One job on its way to a worker.
struct Task {
    job: Job,
    enqueued: Instant,
    /// The worker refuses the job as busy if it gets it after this.
    start_by: Instant,
    /// Completed by the worker; a task dropped unread (the pool stopped)
    /// completes itself as shutting down.
    done: Done,
}

/// K worker threads and the queue in front of them.
#[derive(Debug)]
pub(crate) struct Threads {
    /// `None` once shutting down: dropping it lets the workers' `recv` end.
    tasks: Option<Sender<Task>>,
    workers: Vec<JoinHandle<()>>,
    /// Raised at shutdown: running jobs stop at their next yield point.
    stopping: Arc<AtomicBool>,
    queue_wait: Duration,
    stats: Arc<Stats>,
}

impl Threads {
    pub(crate) fn start(config: &StrategyConfig, stats: &Arc<Stats>) -> Result<Self, StartError> {
        let (tasks, queue) = crossbeam_channel::bounded::<Task>(config.queue);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let worker = Worker {
                queue: queue.clone(),
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
            tasks: Some(tasks),
            workers,
            stopping,
            queue_wait: config.queue_wait,
            stats: Arc::clone(stats),
        })
    }

    /// Queues `job` for a worker, which completes `done`. A blocking caller
    /// waits at most the queue wait for room in the queue; a non-blocking
    /// one is refused as busy at once when the queue is full.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        let tasks = match &self.tasks {
            Some(tasks) if !self.stopping.load(Ordering::Relaxed) => tasks,
            _ => return done.complete(Err(ApplyError::ShuttingDown { job }), Timing::default()),
        };
        let enqueued = Instant::now();
        let task = Task {
            job,
            enqueued,
            start_by: enqueued + self.queue_wait,
            done,
        };
        // The worker that takes the task lowers the count again.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match caller {
            Caller::Blocking => tasks.send_timeout(task, self.queue_wait),
            Caller::NonBlocking => tasks.try_send(task).map_err(|err| match err {
                TrySendError::Full(task) => SendTimeoutError::Timeout(task),
                TrySendError::Disconnected(task) => SendTimeoutError::Disconnected(task),
            }),
        };
        if let Err(err) = sent {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let waited = enqueued.elapsed();
            let timing = Timing {
                queue_wait: Some(waited),
                run: None,
            };
            let (result, task) = match err {
                SendTimeoutError::Timeout(task) => (
                    ApplyError::Busy {
                        job,
                        waited,
                        queued: tasks.len(),
                    },
                    task,
                ),
                SendTimeoutError::Disconnected(task) => (ApplyError::ShuttingDown { job }, task),
            };
            task.done.complete(Err(result), timing);
        }
    }
}

impl Threads {
    pub(crate) fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.tasks = None;
        for worker in self.workers.drain(..) {
            // A worker catches its jobs' panics, so joining cannot fail.
            let _ = worker.join();
        }
    }
}

/// What one worker thread owns.
struct Worker {
    queue: Receiver<Task>,
    stopping: Arc<AtomicBool>,
    job_timeout: Option<Duration>,
    stats: Arc<Stats>,
}

impl Worker {
    fn run(self) {
        let _alive = Gauge::raise(&self.stats.alive);
        while let Ok(task) = self.queue.recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            let waited = task.enqueued.elapsed();
            let mut timing = Timing {
                queue_wait: Some(waited),
                run: None,
            };
            let result = if Instant::now() > task.start_by {
                Err(ApplyError::Busy {
                    job: task.job,
                    waited,
                    queued: self.queue.len(),
                })
            } else {
                let _running = Gauge::raise(&self.stats.running);
                let cancel = Cancel::never()
                    .with_deadline(deadline(self.job_timeout))
                    .with_pool_flag(&self.stopping);
                run_here(task.job, &cancel, &mut timing.run)
            };
            task.done.complete(result, timing);
        }
    }
}
