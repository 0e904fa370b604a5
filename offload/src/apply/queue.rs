//! The queue in front of a pool's workers (`threads`, and `procs` when no
//! worker process has room),
//! which keeps the queue-wait promise: a job that no worker has taken within
//! the queue wait is refused as busy at that moment, and never runs after.
//!
//! Taking a job is a claim: the job leaves the queue under its lock, and who
//! removes it owns it. Two kinds of thread remove jobs: a worker that takes
//! the front job to run it, and the queue's *timer*, which takes the front
//! job once its deadline has passed and completes it as busy. Whichever
//! comes first wins; the other never sees the job.
//!
//! Why one timer thread per queue rather than a timeout in each waiter: an
//! event loop hands jobs in with `submit` and waits for no one, so something
//! must be awake at the deadline to refuse the job on time; a thread per job
//! would cost more than the job. And because every job of a queue gets the
//! same queue wait, deadlines are in arrival order: the job at the front
//! always has the earliest one. So the queue *is* the deadline heap, and the
//! timer only ever sleeps until the front job's deadline. Arrivals never wake
//! it: with an empty queue it sleeps one queue wait, and a job that arrives
//! meanwhile has a deadline later than that wake-up.
//!
//! A worker that finds the queue empty spins briefly before it sleeps on the
//! condvar, as crossbeam's channels do: under a steady stream of small jobs
//! the next one usually arrives within microseconds, and a futex wake-up
//! costs more than the job.
//!
//! A queue wait of zero means "only if a worker is free right now": the queue
//! counts the workers waiting for a job, and a job is admitted only while
//! there are more of them than jobs already admitted. Such a job is never
//! refused later (a free worker is on its way to it), so there is no timer.
//!
//! Fair share: the jobs wait by client address ([`Client::address`]), each
//! address in arrival order, and a worker that takes a job takes it from
//! the address with the fewest jobs running now (the earliest arrival among
//! those breaks ties), so one address that sends a thousand long jobs delays
//! another address's job by at most about one job. The queue counts each
//! address's running jobs: a job counts from when a worker takes it (or a
//! flavor sends it past the queue, [`Queue::start_running`]) until its
//! promise is kept. And one address may fill at most three quarters of
//! `--queue`, so that a new address is not refused because another fills
//! it. The earliest deadline is still at the front of one of the addresses'
//! lines, which is where the timer looks.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::Client;
use super::done::Done;
use super::Timing;
use crate::error::{ApplyError, BusyReason, StartError};
use crate::job::Job;
use crate::stats::Stats;

/// A job waiting for a worker.
#[derive(Debug)]
struct Waiting {
    job: Job,
    arrived: Instant,
    /// Refused as busy if no worker took it by then; `None` with a queue
    /// wait of zero.
    deadline: Option<Instant>,
    done: Done,
}

/// A job a worker has claimed: it is the worker's to complete.
#[derive(Debug)]
pub(crate) struct Claimed {
    /// The job.
    pub(crate) job: Job,
    /// When it was handed in.
    pub(crate) arrived: Instant,
    /// The promise to report its result; it counts as running for its
    /// address until it is kept.
    pub(crate) done: Done,
}

/// One address's jobs: those waiting, in arrival order, and how many run.
#[derive(Debug, Default)]
struct Account {
    waiting: VecDeque<Waiting>,
    running: usize,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<Option<IpAddr>, Account>,
    /// Jobs waiting, over every account.
    waiting: usize,
    /// Workers blocked in [`Taker::take`] right now.
    free_workers: usize,
    closed: bool,
}

impl State {
    /// The address whose front job goes next: the fewest running, then the
    /// earliest arrival.
    fn next_address(&self) -> Option<Option<IpAddr>> {
        self.accounts
            .iter()
            .filter_map(|(address, account)| {
                let front = account.waiting.front()?;
                Some(((account.running, front.arrived), *address))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, address)| address)
    }

    /// Takes the next job by fair share and counts it as running.
    fn pop_next(&mut self) -> Option<Waiting> {
        let address = self.next_address()?;
        let account = self.accounts.get_mut(&address)?;
        let waiting = account.waiting.pop_front()?;
        account.running += 1;
        self.waiting -= 1;
        Some(waiting)
    }

    /// The address whose front job has the earliest deadline, and when.
    fn earliest_deadline(&self) -> Option<(Option<IpAddr>, Instant)> {
        self.accounts
            .iter()
            .filter_map(|(address, account)| {
                let front = account.waiting.front()?;
                Some((*address, front.deadline?))
            })
            .min_by_key(|(_, deadline)| *deadline)
    }

    /// Takes the front job of `address` without counting it as running.
    fn pop_from(&mut self, address: Option<IpAddr>) -> Option<Waiting> {
        let account = self.accounts.get_mut(&address)?;
        let waiting = account.waiting.pop_front()?;
        self.waiting -= 1;
        self.forget_if_idle(address);
        Some(waiting)
    }

    /// One job of `address` stopped running.
    fn stop_running(&mut self, address: Option<IpAddr>) {
        if let Some(account) = self.accounts.get_mut(&address) {
            account.running = account.running.saturating_sub(1);
        }
        self.forget_if_idle(address);
    }

    /// Drops an account that has nothing waiting or running.
    fn forget_if_idle(&mut self, address: Option<IpAddr>) {
        if self
            .accounts
            .get(&address)
            .is_some_and(|a| a.waiting.is_empty() && a.running == 0)
        {
            self.accounts.remove(&address);
        }
    }

    /// Every waiting job, taken out.
    fn drain(&mut self) -> Vec<Waiting> {
        let mut all: Vec<Waiting> = Vec::with_capacity(self.waiting);
        for account in self.accounts.values_mut() {
            all.extend(account.waiting.drain(..));
        }
        self.accounts.retain(|_, account| account.running > 0);
        self.waiting = 0;
        all
    }
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Wakes workers: a job arrived, or the queue closed.
    arrived: Condvar,
    /// Wakes the timer when the queue closes.
    timer: Condvar,
    capacity: usize,
    /// The most jobs one address may have waiting.
    per_address: usize,
    queue_wait: Duration,
    stats: Arc<Stats>,
}

/// A job counted as running for its address; dropping it ends the count.
#[derive(Debug)]
pub(crate) struct Running {
    /// `None` once the count was ended by [`Taker::finished`].
    inner: Option<Arc<Inner>>,
    address: Option<IpAddr>,
}

impl Running {
    /// Ends the count in `state`, already locked.
    fn end_in(mut self, state: &mut State) {
        self.inner = None;
        state.stop_running(self.address);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.lock().stop_running(self.address);
        }
    }
}

/// The queue, its timer, and the counts that keep `queued` in the stats.
#[derive(Debug)]
pub(crate) struct Queue {
    inner: Arc<Inner>,
    timer: Option<JoinHandle<()>>,
}

/// The share of the queue one address may fill: the rest is kept for
/// others (at least one place when the queue has more than one).
fn per_address(capacity: usize) -> usize {
    (capacity - capacity / 4).max(1)
}

impl Queue {
    /// An empty queue of at most `capacity` jobs that each wait at most
    /// `queue_wait`; starts its timer thread unless `queue_wait` is zero.
    pub(crate) fn start(
        capacity: usize,
        queue_wait: Duration,
        stats: &Arc<Stats>,
    ) -> Result<Self, StartError> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            timer: Condvar::new(),
            capacity,
            per_address: per_address(capacity),
            queue_wait,
            stats: Arc::clone(stats),
        });
        let timer = if queue_wait.is_zero() {
            None
        } else {
            let inner = Arc::clone(&inner);
            let handle = std::thread::Builder::new()
                .name("offload-queue-timer".into())
                .spawn(move || inner.expire())
                .map_err(|e| StartError::os("could not start the queue's timer thread", e))?;
            Some(handle)
        };
        Ok(Queue { inner, timer })
    }

    /// Admits `job`, or completes `done` at once as busy (full queue, its
    /// address's share full, or no free worker with a queue wait of zero)
    /// or shutting down (closed).
    pub(crate) fn push(&self, job: Job, done: Done) {
        self.admit(job, done, Instant::now(), Admit::New);
    }

    /// [`Queue::push`] for a job that arrived at `arrived` and has waited
    /// elsewhere since (`procs`: in the channel of a worker that died before
    /// starting it): its queue wait still counts from then, it is refused at
    /// once if that is over, and it takes its place in arrival order, so that
    /// the front job still has the earliest deadline.
    pub(crate) fn push_since(&self, job: Job, done: Done, arrived: Instant) {
        self.admit(job, done, arrived, Admit::Late);
    }

    /// Returns a job a worker took with [`Taker::try_take`] but could not
    /// place after all (`procs`: no worker process had room for it). It goes
    /// back in arrival order, full queue or not, since it was admitted
    /// already; its queue wait still counts from its arrival, and it is
    /// refused at once if that is over, or if the queue is closed.
    pub(crate) fn put_back(&self, claimed: Claimed) {
        self.admit(claimed.job, claimed.done, claimed.arrived, Admit::Again);
    }

    /// Counts a job of `client` as running, for a flavor that sends it to a
    /// worker without queueing it (`procs`, when a worker has room).
    pub(crate) fn start_running(&self, client: &Client) -> Running {
        let address = client.address();
        self.inner
            .lock()
            .accounts
            .entry(address)
            .or_default()
            .running += 1;
        Running {
            inner: Some(Arc::clone(&self.inner)),
            address,
        }
    }

    /// Queues a job that arrived at `arrived`, in arrival order, or
    /// completes it at once with why not.
    fn admit(&self, job: Job, mut done: Done, arrived: Instant, how: Admit) {
        // Waiting, so not running (a job sent again after its worker died).
        drop(done.take_running());
        let again = how == Admit::Again;
        let inner = &*self.inner;
        let address = done.client().address();
        let mut state = inner.lock();
        let waited_out = !inner.queue_wait.is_zero() && arrived.elapsed() >= inner.queue_wait;
        let of_address = state
            .accounts
            .get(&address)
            .map_or(0, |account| account.waiting.len());
        let refused = if state.closed {
            Some(ApplyError::ShuttingDown { job })
        } else if done.client().is_gone() {
            Some(ApplyError::Cancelled { job })
        } else if !again && state.waiting >= inner.capacity {
            Some(ApplyError::Busy {
                job,
                reason: BusyReason::QueueFull {
                    queued: state.waiting,
                },
            })
        } else if !again && of_address >= inner.per_address {
            Some(ApplyError::Busy {
                job,
                reason: BusyReason::AddressFull { queued: of_address },
            })
        } else if !again && inner.queue_wait.is_zero() && state.free_workers <= state.waiting {
            Some(ApplyError::Busy {
                job,
                reason: BusyReason::NoneFree,
            })
        } else if waited_out {
            Some(ApplyError::Busy {
                job,
                reason: BusyReason::Waited {
                    queue_wait: inner.queue_wait,
                },
            })
        } else {
            None
        };
        if let Some(err) = refused {
            drop(state);
            let timing = Timing {
                queue_wait: Some(arrived.elapsed()),
                run: None,
            };
            return done.complete(Err(err), timing);
        }
        let deadline = (!inner.queue_wait.is_zero()).then(|| arrived + inner.queue_wait);
        let account = state.accounts.entry(address).or_default();
        let place = account
            .waiting
            .iter()
            .rposition(|waiting| waiting.arrived <= arrived)
            .map_or(0, |before| before + 1);
        account.waiting.insert(
            place,
            Waiting {
                job,
                arrived,
                deadline,
                done,
            },
        );
        state.waiting += 1;
        inner.count(&state);
        drop(state);
        // A job that arrives now goes last, and the timer is not told: it
        // wakes by itself no later than this job's deadline (see
        // `Inner::expire`). One that arrived earlier may have become the
        // front, with a deadline the timer would sleep past.
        if how != Admit::New && place == 0 {
            inner.timer.notify_one();
        }
        inner.arrived.notify_one();
    }

    /// Whether no job waits now: a hint, stale as soon as it is read.
    pub(crate) fn looks_empty(&self) -> bool {
        self.inner
            .stats
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    }

    /// A handle for a worker to take jobs with.
    pub(crate) fn taker(&self) -> Taker {
        Taker {
            inner: Arc::clone(&self.inner),
            counted_free: std::cell::Cell::new(false),
        }
    }

    /// Takes out every job of `client` still waiting and completes it as
    /// cancelled: its client has gone.
    pub(crate) fn withdraw(&self, client: &Client) {
        let address = client.address();
        let withdrawn: Vec<Waiting> = {
            let mut state = self.inner.lock();
            let Some(account) = state.accounts.get_mut(&address) else {
                return;
            };
            let (gone, kept): (VecDeque<Waiting>, VecDeque<Waiting>) = account
                .waiting
                .drain(..)
                .partition(|waiting| waiting.done.client().is(client));
            account.waiting = kept;
            state.waiting -= gone.len();
            state.forget_if_idle(address);
            self.inner.count(&state);
            gone.into()
        };
        for waiting in withdrawn {
            let timing = Timing {
                queue_wait: Some(waiting.arrived.elapsed()),
                run: None,
            };
            let job = waiting.job;
            waiting
                .done
                .complete(Err(ApplyError::Cancelled { job }), timing);
        }
    }

    /// Removes every waiting job and completes it with `err(job)`: for a pool
    /// that cannot run them (its fork server died).
    pub(crate) fn fail_all(&self, err: impl Fn(Job) -> ApplyError) {
        let jobs: Vec<Waiting> = {
            let mut state = self.inner.lock();
            let jobs = state.drain();
            self.inner.count(&state);
            jobs
        };
        for waiting in jobs {
            let timing = Timing {
                queue_wait: Some(waiting.arrived.elapsed()),
                run: None,
            };
            waiting.done.complete(Err(err(waiting.job)), timing);
        }
    }

    /// Takes no more jobs; the jobs still waiting complete as shutting down,
    /// and workers blocked in [`Taker::take`] get `None`.
    pub(crate) fn close(&self) {
        {
            let mut state = self.inner.lock();
            state.closed = true;
        }
        self.inner.arrived.notify_all();
        self.inner.timer.notify_all();
        self.fail_all(|job| ApplyError::ShuttingDown { job });
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
    }
}

/// How a job comes to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// It arrives now.
    New,
    /// It arrived earlier and waited elsewhere ([`Queue::push_since`]).
    Late,
    /// It was admitted before and taken, but not placed
    /// ([`Queue::put_back`]): the queue's size no longer concerns it.
    Again,
}

/// One worker's handle on the queue.
#[derive(Debug)]
pub(crate) struct Taker {
    inner: Arc<Inner>,
    /// Set by [`Taker::finished`]: the worker already counts as free.
    counted_free: std::cell::Cell<bool>,
}

impl Taker {
    /// Counts this worker as free from now on, before it completes the job
    /// it has just finished (the submitter may hand in its next job as soon
    /// as it has the answer, and with a queue wait of zero that job must
    /// find this worker free), and ends that job's count among its
    /// address's running jobs (`running`): both under one lock, so that fair
    /// share costs the hot path no lock of its own.
    pub(crate) fn finished(&self, running: Option<Running>) {
        let free = !self.counted_free.replace(true);
        if !free && running.is_none() {
            return;
        }
        let mut state = self.inner.lock();
        if free {
            state.free_workers += 1;
        }
        if let Some(running) = running {
            running.end_in(&mut state);
        }
    }

    /// Claims the next job by fair share if there is one, without waiting:
    /// for a worker that has just finished a job and can start the next one
    /// at once.
    pub(crate) fn try_take(&self) -> Option<Claimed> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        let waiting = state.pop_next()?;
        inner.count(&state);
        drop(state);
        Some(self.claim(waiting))
    }

    /// Waits for the next job and claims it; `None` once the queue is closed.
    /// While it waits, the worker counts as free for a queue wait of zero.
    pub(crate) fn take(&self) -> Option<Claimed> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        if !self.counted_free.replace(false) {
            state.free_workers += 1;
        }
        let mut spins = 0;
        let claimed = loop {
            if state.closed {
                break None;
            }
            if let Some(waiting) = state.pop_next() {
                break Some(waiting);
            }
            if spins < SPINS {
                drop(state);
                backoff(spins);
                spins += 1;
                state = inner.lock();
                continue;
            }
            state = inner.arrived.wait(state).unwrap_or_else(|p| p.into_inner());
        };
        state.free_workers -= 1;
        inner.count(&state);
        drop(state);
        claimed.map(|waiting| self.claim(waiting))
    }

    /// A job just taken, counted as running for its address (by
    /// [`State::pop_next`]) until its promise is kept.
    fn claim(&self, mut waiting: Waiting) -> Claimed {
        let address = waiting.done.client().address();
        waiting.done.set_running(Running {
            inner: Some(Arc::clone(&self.inner)),
            address,
        });
        Claimed {
            job: waiting.job,
            arrived: waiting.arrived,
            done: waiting.done,
        }
    }
}

/// How many times a worker looks again before it sleeps on the condvar.
const SPINS: u32 = 10;

/// The pause before look number `spin` + 1: a few busy-wait rounds doubling
/// in length, then giving the core away.
fn backoff(spin: u32) {
    if spin < 6 {
        for _ in 0..1u32 << spin {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock (callbacks run after it is
        // released), so a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the `queued` gauge equal to the jobs waiting.
    fn count(&self, state: &State) {
        self.stats
            .queued
            .store(state.waiting, std::sync::atomic::Ordering::Relaxed);
    }

    /// The timer's life: refuse the job with the earliest deadline when it
    /// comes, until the queue closes.
    fn expire(&self) {
        let mut state = self.lock();
        loop {
            if state.closed {
                return;
            }
            let now = Instant::now();
            // A job without a deadline (queue wait zero) never reaches the
            // timer, which is not started then.
            state = match state.earliest_deadline() {
                None => {
                    self.timer
                        .wait_timeout(state, self.queue_wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                Some((_, due)) if due > now => {
                    self.timer
                        .wait_timeout(state, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                Some((address, _)) => {
                    let waiting = state.pop_from(address).expect("the front job is there");
                    self.count(&state);
                    drop(state);
                    let timing = Timing {
                        queue_wait: Some(waiting.arrived.elapsed()),
                        run: None,
                    };
                    let busy = ApplyError::Busy {
                        job: waiting.job,
                        reason: BusyReason::Waited {
                            queue_wait: self.queue_wait,
                        },
                    };
                    waiting.done.complete(Err(busy), timing);
                    self.lock()
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Answer;
    use std::sync::mpsc;

    type Results = mpsc::Receiver<(Result<Answer, ApplyError>, Instant)>;

    fn queue(capacity: usize, wait: Duration) -> (Queue, Arc<Stats>) {
        let stats = Arc::new(Stats::new());
        (Queue::start(capacity, wait, &stats).unwrap(), stats)
    }

    fn push(queue: &Queue, stats: &Arc<Stats>, job: Job) -> Results {
        let (tx, rx) = mpsc::channel();
        let done = Done::new(
            job,
            Client::anonymous(),
            stats,
            Box::new(move |result| {
                let _ = tx.send((result, Instant::now()));
            }),
        );
        queue.push(job, done);
        rx
    }

    /// A job nobody takes is refused by the timer at its deadline, and a
    /// worker that comes later never gets it.
    #[test]
    fn expires_at_the_deadline() {
        let wait = Duration::from_millis(100);
        let (queue, stats) = queue(8, wait);
        let pushed = Instant::now();
        let results = push(&queue, &stats, Job::Sumn(5));
        let (result, at) = results.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            result,
            Err(ApplyError::Busy {
                job: Job::Sumn(5),
                reason: BusyReason::Waited { queue_wait: wait }
            })
        );
        let took = at - pushed;
        assert!(took >= wait && took < wait * 5, "refused after {took:?}");
        // The queue is empty: a late worker waits instead of running it.
        queue.close();
        assert!(queue.taker().take().is_none());
    }

    /// A job that waited elsewhere keeps its arrival: it goes before the
    /// jobs that came after it, and is refused when its own queue wait ends.
    #[test]
    fn a_job_pushed_again_keeps_its_arrival() {
        let wait = Duration::from_millis(200);
        let (queue, stats) = queue(8, wait);
        let earlier = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        let later = push(&queue, &stats, Job::Sumn(2));
        let (tx, again) = std::sync::mpsc::channel();
        let done = Done::new(
            Job::Sumn(1),
            Client::anonymous(),
            &stats,
            Box::new(move |result| tx.send((result, Instant::now())).unwrap()),
        );
        queue.push_since(Job::Sumn(1), done, earlier);
        let (result, at) = again.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(result, Err(ApplyError::Busy { .. })), "{result:?}");
        let took = at - earlier;
        assert!(
            took >= wait && took < wait + wait / 2,
            "refused after {took:?}"
        );
        assert!(later.try_recv().is_err(), "the later job is still waiting");
        let (tx, stale) = std::sync::mpsc::channel();
        let done = Done::new(
            Job::Sumn(3),
            Client::anonymous(),
            &stats,
            Box::new(move |result| tx.send(result).unwrap()),
        );
        queue.push_since(Job::Sumn(3), done, earlier);
        assert!(
            matches!(stale.try_recv(), Ok(Err(ApplyError::Busy { .. }))),
            "refused at once when its wait is over"
        );
    }

    /// A worker that takes the job first owns it: the timer does not refuse
    /// it later.
    #[test]
    fn a_taken_job_is_not_expired() {
        let (queue, stats) = queue(8, Duration::from_millis(50));
        let results = push(&queue, &stats, Job::Sumn(3));
        let claimed = queue.taker().take().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            results.try_recv().is_err(),
            "the timer completed a taken job"
        );
        claimed.done.complete(Ok(Answer::Sum(6)), Timing::default());
        assert_eq!(results.recv().unwrap().0, Ok(Answer::Sum(6)));
    }

    /// With a queue wait of zero, a job is admitted only for a worker that
    /// is waiting now.
    #[test]
    fn zero_wait_needs_a_free_worker() {
        let (queue, stats) = queue(8, Duration::ZERO);
        let refused = push(&queue, &stats, Job::Sumn(1));
        assert_eq!(
            refused.recv().unwrap().0,
            Err(ApplyError::Busy {
                job: Job::Sumn(1),
                reason: BusyReason::NoneFree
            })
        );
        let taker = queue.taker();
        let worker = std::thread::spawn(move || taker.take().map(|c| c.job));
        while queue.inner.lock().free_workers == 0 {
            std::thread::yield_now();
        }
        let admitted = push(&queue, &stats, Job::Sumn(2));
        assert_eq!(worker.join().unwrap(), Some(Job::Sumn(2)));
        // The claimed job's promise was dropped unkept: shutting down.
        assert!(matches!(
            admitted.recv().unwrap().0,
            Err(ApplyError::ShuttingDown { .. })
        ));
    }

    fn push_for(queue: &Queue, stats: &Arc<Stats>, job: Job, client: &Client) -> Results {
        let (tx, rx) = mpsc::channel();
        let done = Done::new(
            job,
            client.clone(),
            stats,
            Box::new(move |result| {
                let _ = tx.send((result, Instant::now()));
            }),
        );
        queue.push(job, done);
        rx
    }

    /// A worker takes from the address with the fewest jobs running: a
    /// newcomer's job goes before the jobs that one address queued first.
    #[test]
    fn the_next_job_is_from_the_address_with_fewest_running() {
        let (queue, stats) = queue(64, Duration::from_secs(5));
        let a = Client::new(Some([127, 0, 0, 1].into()));
        let b = Client::new(Some([127, 0, 0, 2].into()));
        let _a_jobs: Vec<Results> = (1..=10)
            .map(|n| push_for(&queue, &stats, Job::Sumn(n), &a))
            .collect();
        let taker = queue.taker();
        let first = taker.try_take().expect("a job");
        assert_eq!(first.job, Job::Sumn(1));
        let _b_job = push_for(&queue, &stats, Job::Sumn(100), &b);
        // A runs one, B none: B's goes next, though A's waited longer.
        let second = taker.try_take().expect("a job");
        assert_eq!(second.job, Job::Sumn(100));
        // Now both run one: the earliest arrival, A's.
        let third = taker.try_take().expect("a job");
        assert_eq!(third.job, Job::Sumn(2));
        assert_eq!(queue.inner.lock().accounts[&a.address()].running, 2);
        // A job whose promise is kept (or dropped) stops counting.
        drop(first.done);
        assert_eq!(queue.inner.lock().accounts[&a.address()].running, 1);
        drop((second, third));
    }

    /// One address may fill three quarters of the queue; another still
    /// gets in.
    #[test]
    fn one_address_leaves_room_for_others() {
        let (queue, stats) = queue(8, Duration::from_secs(5));
        let a = Client::new(Some([127, 0, 0, 1].into()));
        let b = Client::new(Some([127, 0, 0, 2].into()));
        let pushed: Vec<Results> = (0..7)
            .map(|n| push_for(&queue, &stats, Job::Sumn(n), &a))
            .collect();
        assert!(matches!(
            pushed[6].try_recv().map(|r| r.0),
            Ok(Err(ApplyError::Busy {
                reason: BusyReason::AddressFull { queued: 6 },
                ..
            }))
        ));
        let newcomer = push_for(&queue, &stats, Job::Sumn(9), &b);
        assert!(newcomer.try_recv().is_err(), "admitted, still waiting");
    }

    /// Withdrawing a client takes its waiting jobs out (cancelled) and
    /// leaves the others; a job of a client already gone is not admitted.
    #[test]
    fn withdrawn_jobs_leave_the_queue() {
        let (queue, stats) = queue(8, Duration::from_secs(5));
        let gone = Client::new(Some([127, 0, 0, 1].into()));
        let stays = Client::new(Some([127, 0, 0, 1].into()));
        let mine = push_for(&queue, &stats, Job::Sumn(1), &gone);
        let theirs = push_for(&queue, &stats, Job::Sumn(2), &stays);
        gone.leave();
        queue.withdraw(&gone);
        assert_eq!(
            mine.try_recv().unwrap().0,
            Err(ApplyError::Cancelled { job: Job::Sumn(1) })
        );
        assert!(theirs.try_recv().is_err());
        assert_eq!(queue.taker().try_take().map(|c| c.job), Some(Job::Sumn(2)));
        let late = push_for(&queue, &stats, Job::Sumn(3), &gone);
        assert_eq!(
            late.try_recv().unwrap().0,
            Err(ApplyError::Cancelled { job: Job::Sumn(3) })
        );
    }

    /// A full queue refuses at once and says how many were waiting.
    #[test]
    fn full_queue_refuses_at_once() {
        let (queue, stats) = queue(1, Duration::from_secs(5));
        let _first = push(&queue, &stats, Job::Sumn(1));
        let second = push(&queue, &stats, Job::Sumn(2));
        assert_eq!(
            second.recv().unwrap().0,
            Err(ApplyError::Busy {
                job: Job::Sumn(2),
                reason: BusyReason::QueueFull { queued: 1 }
            })
        );
    }
}
