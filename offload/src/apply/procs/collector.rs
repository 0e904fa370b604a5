//! The collector: reads every worker's own reply socket, for the jobs whose
//! sender does not wait on a mailbox (`submit`'s, from an event loop, and
//! those that waited in the queue). It completes each job's `Done` as its
//! reply comes, and sends the worker a waiting job as soon as it has room.
//!
//! The sockets are watched by one epoll of the pool's. Who reads it is the
//! host's choice:
//!
//! - by default, one thread of the pool's, which waits on the epoll;
//! - or an event loop, which takes the reading over
//!   ([`Collector::take_over`]): it registers the epoll's descriptor in its
//!   own poll and reads on its own thread whenever that is readable. Then a
//!   reply costs no thread wake-up between the worker and the loop that
//!   writes the answer, which is what made `--io events` slower than
//!   `--io threads` under `procs`.
//!
//! A socket's EOF is how the pool hears at once that its worker is gone
//! (exited when retired, killed, or dead): every job it was still to answer
//! is then dealt with.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::dispatch::{answer, Pending};
use super::fork_server::Command;
use super::reply_socket::{Received, ReplyReceiver, MAX_REPLY};
use super::status::Fate;
use super::throttle::Throttle;
use super::worker::FromWorker;
use super::{Shared, WorkerState};
use crate::apply::Timing;
use crate::error::StartError;

/// How long the collector's own thread waits before it looks whether it is
/// still the reader.
const WAIT: Duration = Duration::from_millis(20);

/// Every worker's reply socket, and who reads them.
#[derive(Debug)]
pub(super) struct Collector {
    epoll: Epoll,
    /// The sockets watched, by worker number (the epoll's data).
    sockets: Mutex<HashMap<u64, Arc<Watched>>>,
    /// Held while reading, so that there is one reader at a time: a
    /// worker's replies are then handled in order, and its EOF after them.
    reading: Mutex<Reading>,
    /// Raised when an event loop reads instead of the collector's thread.
    taken: AtomicBool,
    /// Raised when the pool stops: the thread ends.
    closed: AtomicBool,
}

#[derive(Debug)]
struct Watched {
    worker: Arc<WorkerState>,
    socket: ReplyReceiver,
}

#[derive(Debug)]
struct Reading {
    buf: Box<[u8; MAX_REPLY]>,
    events: Vec<EpollEvent>,
    failed: Throttle,
}

impl Collector {
    pub(super) fn new() -> Result<Self, StartError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| StartError::os("could not create the pool's epoll", e))?;
        Ok(Collector {
            epoll,
            sockets: Mutex::new(HashMap::new()),
            reading: Mutex::new(Reading {
                buf: Box::new([0; MAX_REPLY]),
                events: vec![EpollEvent::empty(); 64],
                failed: Throttle::default(),
            }),
            taken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Starts watching a new worker's reply socket.
    pub(super) fn watch(
        &self,
        worker: &Arc<WorkerState>,
        socket: ReplyReceiver,
    ) -> nix::Result<()> {
        let watched = Arc::new(Watched {
            worker: Arc::clone(worker),
            socket,
        });
        // Known before the epoll can report it.
        self.sockets_mut()
            .insert(worker.number, Arc::clone(&watched));
        let event = EpollEvent::new(EpollFlags::EPOLLIN, worker.number);
        self.epoll
            .add(watched.socket.as_fd(), event)
            .inspect_err(|_| {
                self.sockets_mut().remove(&worker.number);
            })
    }

    /// Hands the reading to the caller, an event loop: the collector's thread
    /// stops, and the caller calls [`Collector::read_ready`] whenever the
    /// returned descriptor (the epoll's) is readable.
    pub(super) fn take_over(&self) -> BorrowedFd<'_> {
        self.taken.store(true, Ordering::SeqCst);
        self.epoll.0.as_fd()
    }

    /// Reads every reply there is now, and every EOF, without waiting for
    /// any (only, during a take-over, for the collector's thread to finish
    /// its own read). Returns how many sockets failed to read; each one's
    /// worker is being killed, and its EOF will follow.
    pub(super) fn read_ready(&self, shared: &Arc<Shared>) -> usize {
        let mut failures = 0;
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let Reading {
            buf,
            events,
            failed,
        } = &mut *reading;
        loop {
            let ready = match self.epoll.wait(events, EpollTimeout::ZERO) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => {
                    if failed.admit(Instant::now()) {
                        tracing::error!(%err, "the pool's epoll failed; trying again");
                    }
                    return failures + 1;
                }
            };
            for event in &events[..ready] {
                self.read_socket(shared, event.data(), buf, failed, &mut failures);
            }
            // A full batch may have left sockets unread. Each socket read
            // was read to the end (or its worker is being killed), so one
            // that gets more now is reported afresh (the caller's poll too).
            if ready < events.len() {
                return failures;
            }
        }
    }

    /// Reads one worker's socket until it is empty, or closed.
    fn read_socket(
        &self,
        shared: &Arc<Shared>,
        number: u64,
        buf: &mut [u8; MAX_REPLY],
        failed: &mut Throttle,
        failures: &mut usize,
    ) {
        let Some(watched) = self.sockets_mut().get(&number).cloned() else {
            return;
        };
        let worker = &watched.worker;
        loop {
            match watched.socket.try_recv(buf) {
                Received::Reply(reply) => shared.collected(worker, reply),
                Received::Empty => return,
                Received::Closed => {
                    let _ = self.epoll.delete(watched.socket.as_fd());
                    self.sockets_mut().remove(&number);
                    worker.gone.store(true, Ordering::Relaxed);
                    shared.worker_gone(worker);
                    return;
                }
                Received::Garbled(err) => {
                    // The worker cannot be trusted: retire and kill it; its
                    // jobs are dealt with at the EOF that follows, when its
                    // slots can no longer change.
                    tracing::error!(pid = worker.pid, %err, "unreadable reply from a worker process; killing it");
                    shared.retire(worker);
                    shared.command(Command::Kill { pid: worker.pid });
                }
                Received::Failed(err) => {
                    // The socket is of no use: as with a garbled reply, the
                    // worker goes, and its EOF (which brings an event of its
                    // own) settles its jobs.
                    if failed.admit(Instant::now()) {
                        tracing::error!(pid = worker.pid, %err, "could not read a worker process's reply socket; killing it");
                    }
                    shared.retire(worker);
                    shared.command(Command::Kill { pid: worker.pid });
                    *failures += 1;
                    return;
                }
            }
        }
    }

    /// At the pool's end, once its workers are gone: reads what they left,
    /// up to their EOFs, for at most `within`.
    pub(super) fn read_to_the_end(&self, shared: &Arc<Shared>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let _ = self.read_ready(shared);
            if self.sockets_mut().is_empty() || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Ends the collector's thread, if it still runs.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn sockets_mut(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Watched>>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the collector's own thread, which reads until an event loop takes
/// over or the pool stops.
pub(super) fn start_thread(shared: &Arc<Shared>) -> Result<JoinHandle<()>, StartError> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("offload-collector".into())
        .spawn(move || {
            let collector = &shared.collector;
            let mut one = [EpollEvent::empty()];
            while !collector.taken.load(Ordering::SeqCst)
                && !collector.closed.load(Ordering::SeqCst)
            {
                // Waits without the reading lock, so that a loop taking over
                // never waits for this thread.
                let timeout = EpollTimeout::try_from(WAIT).unwrap_or(EpollTimeout::ZERO);
                if let Ok(1) = collector.epoll.wait(&mut one, timeout) {
                    // A socket that failed stays readable until its worker's
                    // EOF: a pause, rather than spin meanwhile.
                    if collector.read_ready(&shared) > 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        })
        .map_err(|e| StartError::os("could not start the pool's collector thread", e))
}

impl Shared {
    /// Completes the job that `reply` answers.
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

    /// Once `worker` is gone: every job it was to answer is sent again
    /// (never started) or completed with what happened. The jobs it had
    /// started wait for the fork server to say how it ended, so they are
    /// dealt with on a thread of their own: the reader may be an event loop.
    fn worker_gone(self: &Arc<Self>, worker: &Arc<WorkerState>) {
        let table = worker
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let mut jobs: Vec<(u64, Pending)> = table.into_iter().collect();
        jobs.sort_unstable_by_key(|(seq, _)| *seq);
        // Stopping, every job is told so at once: nothing to wait for.
        let stopping = self.stopping.load(Ordering::Relaxed);
        let (started, settled): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(seq, pending)| {
            !stopping && worker.page.fate(pending.slot, *seq) == Fate::Started
        });
        self.settle(worker, settled);
        if started.is_empty() {
            return;
        }
        let (shared, lost) = (Arc::clone(self), Arc::clone(worker));
        let carry = Arc::new(Mutex::new(Some(started)));
        let handed = Arc::clone(&carry);
        let spawned = std::thread::Builder::new()
            .name(format!("offload-lost-{}", worker.pid))
            .spawn(move || {
                if let Some(started) = handed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    shared.settle(&lost, started);
                }
            });
        match spawned {
            Ok(mourner) => {
                let mut mourners = self.mourners.lock().unwrap_or_else(|p| p.into_inner());
                // Those done are joined now, so that the list stays short.
                let (ended, running): (Vec<_>, Vec<_>) =
                    mourners.drain(..).partition(|m| m.is_finished());
                *mourners = running;
                mourners.push(mourner);
                drop(mourners);
                for ended in ended {
                    let _ = ended.join();
                }
            }
            Err(_) => {
                // No thread to be had: wait here rather than lose the jobs.
                if let Some(started) = carry.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    self.settle(worker, started);
                }
            }
        }
    }

    /// Sends again, or completes, jobs of a worker gone.
    fn settle(&self, worker: &WorkerState, jobs: Vec<(u64, Pending)>) {
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
