//! One client thread: it takes requests from its [`Schedule`], sends them
//! the way the [`Connection`] mode says, checks every answer and records it.
//!
//! With fresh connections a thread has one request at a time. With
//! `--keep-alive` it keeps one line-dialect connection and up to
//! `--pipeline` requests in flight on it; the connection is made again after
//! a failure, and the requests in flight on a failed connection fail with
//! it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Connection;
use crate::job::{Check, Dialect, Job};
use crate::mix::Picker;
use crate::outcome::{Failure, IoKind, Outcome};
use crate::schedule::{Schedule, Slot};
use crate::stats::{Finished, Stats};
use crate::wire::{self, LineConn};

/// What all threads of a run share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the first connect that succeeds: if none does, the run could
    /// not connect at all.
    pub connected_any: AtomicBool,
    /// Requests finished so far, warmup included (for the progress line).
    pub finished: AtomicU64,
}

/// One thread's state.
#[derive(Debug)]
pub struct Worker<'a> {
    /// Where its requests go.
    pub addr: SocketAddr,
    /// Fresh connections, or one kept alive.
    pub connection: Connection,
    /// How long one request may take.
    pub timeout: Duration,
    /// When to send.
    pub schedule: Schedule,
    /// What to send.
    pub picker: Picker,
    /// Shared with the other threads.
    pub shared: &'a Shared,
    /// What it saw.
    pub stats: Stats,
    /// Whether one of its connects has succeeded; a thread whose very first
    /// connect fails gives up, its address unreachable.
    pub connected_once: bool,
}

/// A request sent on a kept-alive connection and not yet answered.
#[derive(Debug)]
struct InFlight {
    job: Job,
    slot: Slot,
    started: Instant,
    deadline: Instant,
}

impl Worker<'_> {
    /// Runs the schedule to its end and returns what was seen.
    pub fn run(mut self) -> Stats {
        match self.connection {
            Connection::Fresh => self.run_fresh(),
            Connection::KeepAlive { pipeline } => self.run_kept_alive(pipeline.max(1)),
        }
        self.stats
    }

    /// A connection per request, as the original.
    fn run_fresh(&mut self) {
        loop {
            let now = Instant::now();
            let Some(due) = self.schedule.peek(now) else {
                return;
            };
            if due > now {
                thread::sleep(due - now);
            }
            let started = Instant::now();
            let slot = self.schedule.take(started).expect("peeked a request");
            let job = self.picker.next_job();
            let dialect = job.seed().map_or(Dialect::Line, |_| Dialect::Seed);
            let exchange = wire::fresh_exchange(self.addr, &job, started + self.timeout);
            let done = Instant::now();
            if let Some(took) = exchange.connect {
                self.connected(slot, took);
            }
            let give_up = self.gives_up(&exchange.reply);
            self.finish(job, dialect, slot, started, done, exchange.reply);
            if give_up {
                return;
            }
        }
    }

    /// One connection kept alive, up to `pipeline` requests in flight.
    fn run_kept_alive(&mut self, pipeline: usize) {
        let mut conn: Option<LineConn> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        loop {
            // Send every request that is due while there is room.
            let mut exhausted = false;
            while in_flight.len() < pipeline {
                let now = Instant::now();
                match self.schedule.peek(now) {
                    None => {
                        exhausted = true;
                        break;
                    }
                    Some(due) if due > now => break,
                    Some(_) => {}
                }
                let slot = self.schedule.take(now).expect("peeked a request");
                let job = self.picker.next_job();
                if conn.is_none() {
                    match wire::connect(self.addr, self.timeout) {
                        Ok(stream) => {
                            self.connected(slot, now.elapsed());
                            conn = Some(LineConn::new(stream));
                        }
                        Err(failure) => {
                            let failed = Err(failure);
                            let give_up = self.gives_up(&failed);
                            self.finish(job, Dialect::Line, slot, now, Instant::now(), failed);
                            if give_up {
                                return;
                            }
                            continue;
                        }
                    }
                }
                let open = conn.as_mut().expect("connected above");
                open.queue(&job.line());
                in_flight.push_back(InFlight {
                    job,
                    slot,
                    started: now,
                    deadline: now + self.timeout,
                });
            }
            let Some(open) = conn.as_mut() else {
                // No connection means nothing in flight.
                if exhausted {
                    return;
                }
                self.wait_for_next();
                continue;
            };
            if let Err(failure) = open.flush(Instant::now() + self.timeout) {
                self.fail_all(&mut in_flight, &failure);
                conn = None;
                continue;
            }
            let Some(head) = in_flight.front() else {
                if exhausted {
                    return;
                }
                self.wait_for_next();
                continue;
            };
            // Wait for the oldest reply, but wake up when the next request
            // is due if there is room to send it.
            let head_deadline = head.deadline;
            let mut until = head_deadline;
            if in_flight.len() < pipeline {
                if let Some(due) = self.schedule.peek(Instant::now()) {
                    until = until.min(due);
                }
            }
            match open.read_line(until) {
                Ok(Some(reply)) => {
                    let done = Instant::now();
                    let sent = in_flight.pop_front().expect("a request is in flight");
                    self.finish(
                        sent.job,
                        Dialect::Line,
                        sent.slot,
                        sent.started,
                        done,
                        Ok(reply),
                    );
                }
                Ok(None) if Instant::now() >= head_deadline => {
                    self.fail_all(&mut in_flight, &Failure::timeout());
                    conn = None;
                }
                Ok(None) => {}
                Err(failure) => {
                    self.fail_all(&mut in_flight, &failure);
                    conn = None;
                }
            }
        }
    }

    /// Sleeps until the next request is due (open loop, nothing in flight).
    fn wait_for_next(&self) {
        let now = Instant::now();
        if let Some(due) = self.schedule.peek(now) {
            thread::sleep(due.saturating_duration_since(now));
        }
    }

    /// Fails every request in flight on a connection that is given up.
    fn fail_all(&mut self, in_flight: &mut VecDeque<InFlight>, failure: &Failure) {
        let done = Instant::now();
        for sent in in_flight.drain(..) {
            let failed = Err(failure.clone());
            self.finish(
                sent.job,
                Dialect::Line,
                sent.slot,
                sent.started,
                done,
                failed,
            );
        }
    }

    /// Notes a connect that succeeded.
    fn connected(&mut self, slot: Slot, took: Duration) {
        self.connected_once = true;
        self.shared.connected_any.store(true, Ordering::Relaxed);
        self.stats.record_connect(slot, took);
    }

    /// Whether this failure means the address cannot be reached at all:
    /// the thread's first connect failed. The address and reason are noted.
    fn gives_up(&mut self, reply: &Result<String, Failure>) -> bool {
        match reply {
            Err(failure) if failure.kind == IoKind::Connect && !self.connected_once => {
                self.stats
                    .unreachable
                    .entry(self.addr)
                    .or_insert_with(|| failure.detail.clone());
                true
            }
            _ => false,
        }
    }

    /// Checks and records one finished request.
    fn finish(
        &mut self,
        job: Job,
        dialect: Dialect,
        slot: Slot,
        started: Instant,
        done: Instant,
        reply: Result<String, Failure>,
    ) {
        let outcome = match reply {
            Ok(reply) => match job.check(&reply) {
                Check::Right => Outcome::Right,
                Check::Wrong { expected } => Outcome::Wrong {
                    reply: reply.trim().to_owned(),
                    expected,
                },
                Check::Refused { code } => Outcome::Refused { code },
            },
            Err(failure) => Outcome::Failed(failure),
        };
        let finished = Finished {
            job,
            dialect,
            addr: self.addr,
            slot,
            started,
            done,
            outcome,
        };
        self.stats.record(finished, self.schedule.is_open());
        self.shared.finished.fetch_add(1, Ordering::Relaxed);
    }
}
