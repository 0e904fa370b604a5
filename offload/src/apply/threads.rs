//! `threads`: a pool of worker threads fed by a bounded crossbeam channel.
//!
//! Rust threads run Rust code on every core at once, so this is the native
//! answer to the original's problem. The caller's thread blocks on a one-slot
//! reply channel while a worker runs the job: two hand-offs per job, which the
//! benchmark prices at a few microseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::run::{deadline, run_here};
use super::{StrategyConfig, Timing};
use crate::error::{ApplyError, StartError};
use crate::job::{Answer, Cancel, Job};
use crate::stats::{Gauge, Stats};

/// Extra time a caller waits for a worker's reply beyond the job's own
/// limits, before it stops waiting: the worker enforces the limits itself,
/// this only guards against waiting for ever.
const REPLY_SLACK: Duration = Duration::from_secs(1);

/// One job on its way to a worker.
struct Task {
    job: Job,
    enqueued: Instant,
    /// The worker refuses the job as busy if it gets it after this.
    start_by: Instant,
    /// Raised by a caller that stopped waiting: the job is skipped or stops
    /// at its next yield point.
    abandoned: Arc<AtomicBool>,
    reply: Sender<Finished>,
}

/// A worker's reply.
struct Finished {
    result: Result<Answer, ApplyError>,
    timing: Timing,
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
    job_timeout: Option<Duration>,
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
            job_timeout: config.job_timeout,
            stats: Arc::clone(stats),
        })
    }

    /// Queues `job` (waiting at most the queue wait for room) and blocks until
    /// a worker answers.
    pub(crate) fn apply(&self, job: Job, timing: &mut Timing) -> Result<Answer, ApplyError> {
        let tasks = self
            .tasks
            .as_ref()
            .ok_or(ApplyError::ShuttingDown { job })?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let abandoned = Arc::new(AtomicBool::new(false));
        let enqueued = Instant::now();
        let task = Task {
            job,
            enqueued,
            start_by: enqueued + self.queue_wait,
            abandoned: Arc::clone(&abandoned),
            reply,
        };
        // The worker that takes the task lowers the count again.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = tasks.send_timeout(task, self.queue_wait) {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            timing.queue_wait = Some(enqueued.elapsed());
            return Err(match err {
                SendTimeoutError::Timeout(_) => ApplyError::Busy {
                    job,
                    waited: enqueued.elapsed(),
                    queued: tasks.len(),
                },
                SendTimeoutError::Disconnected(_) => ApplyError::ShuttingDown { job },
            });
        }
        let finished = match self.job_timeout {
            Some(limit) => answer.recv_timeout(self.queue_wait + limit + REPLY_SLACK),
            None => answer.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match finished {
            Ok(finished) => {
                *timing = finished.timing;
                finished.result
            }
            Err(RecvTimeoutError::Timeout) => {
                abandoned.store(true, Ordering::Relaxed);
                Err(ApplyError::Timeout {
                    job,
                    elapsed: enqueued.elapsed(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(ApplyError::ShuttingDown { job }),
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
            if task.abandoned.load(Ordering::Relaxed) {
                continue;
            }
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
                    .with_flag(&task.abandoned)
                    .with_pool_flag(&self.stopping);
                run_here(task.job, &cancel, &mut timing.run)
            };
            // The caller may have stopped waiting; then nobody needs the reply.
            let _ = task.reply.send(Finished { result, timing });
        }
    }
}
