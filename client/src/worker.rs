//! One client thread: it takes requests from its [`Schedule`], sends them
//! the way the [`Connection`] mode says, checks every answer and records it.
//!
//! With fresh connections a thread has one request at a time. With
//! `--keep-alive` it keeps one line-dialect connection and up to
//! `--pipeline` requests in flight on it; the connection is made again after
//! a failure. A request whose connection failed before any byte of its reply
//! arrived (refused, reset, closed) or that was answered `ERR
//! shutting-down` is sent again on a new connection, up to `--retries`
//! times, after a short backoff; its latency counts from its first attempt.
//! Every other failure fails the request.
//!
//! Every planned request is accounted for: a thread whose very first
//! connect fails gives its target up and counts each request it still had
//! to make as failed the same way.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Connection;
use crate::interrupt::{Interrupt, SLICE};
use crate::job::{Check, Dialect, Job};
use crate::mix::Picker;
use crate::outcome::{Failure, Outcome};
use crate::schedule::{Schedule, Slot};
use crate::stats::{Finished, Stats};
use crate::wire::{self, LineConn};

/// The wait before the first retry; it doubles with each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// The longest wait before a retry.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The error code that makes a request worth sending again: the server
/// refused it because it is going away, before starting it.
pub const SHUTTING_DOWN: &str = "shutting-down";

/// What all threads of a run share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the first connect that succeeds: if none does, the run could
    /// not connect at all.
    pub connected_any: AtomicBool,
    /// Measured requests finished so far (for the progress bar).
    pub finished: AtomicU64,
}

/// One thread's state.
#[derive(Debug)]
pub struct Worker<'a> {
    /// Where its requests go.
    pub addr: SocketAddr,
    /// Fresh connections, or one kept alive.
    pub connection: Connection,
    /// How long one attempt of a request may take.
    pub timeout: Duration,
    /// How many times a request may be sent again.
    pub retries: u32,
    /// Ends each kept-alive connection (see [`crate::Mix::sentinel`]).
    pub sentinel: Job,
    /// When to send.
    pub schedule: Schedule,
    /// What to send.
    pub picker: Picker,
    /// Shared with the other threads.
    pub shared: &'a Shared,
    /// Raised by Ctrl-C.
    pub interrupt: &'a Interrupt,
    /// What it saw.
    pub stats: Stats,
    /// Whether one of its connects has succeeded; a thread whose very first
    /// connect fails gives up, its address unreachable.
    pub connected_once: bool,
}

/// A request on its way: sent on a kept-alive connection and not yet
/// answered, or waiting to be sent again.
#[derive(Debug)]
struct Request {
    job: Job,
    slot: Slot,
    /// When its first attempt started: latency counts from here.
    started: Instant,
    /// Attempts made after the first.
    retried: u32,
    /// When its current attempt times out.
    deadline: Instant,
}

/// Why a kept-alive connection is dropped.
enum Broken {
    /// It failed: the requests in flight fail or are sent again.
    Failed(Failure),
    /// The server said it is shutting down and every request on it has its
    /// reply: it ends quietly.
    Drained,
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
        while let Some(slot) = self.next_slot() {
            let job = self.picker.next_job();
            let dialect = job.seed().map_or(Dialect::Line, |_| Dialect::Seed);
            let started = Instant::now();
            let mut retried = 0;
            loop {
                let exchange = wire::fresh_exchange(
                    self.addr,
                    &job,
                    Instant::now() + self.timeout,
                    self.interrupt,
                );
                if let Some(took) = exchange.connect {
                    self.connected(slot, took);
                }
                self.stats.record_extra(self.addr, exchange.extra);
                if let Some(cause) = self.retry_cause(&job, &exchange.reply, retried) {
                    self.stats.record_retry(cause);
                    retried += 1;
                    thread::sleep(backoff(retried));
                    continue;
                }
                let give_up = self.gives_up(&exchange.reply);
                self.finish(job, dialect, slot, started, exchange.reply);
                if let Some(failure) = give_up {
                    self.abandon(&failure);
                    return;
                }
                break;
            }
        }
    }

    /// The next request's slot once it is due, or `None` when the schedule
    /// is done or the run interrupted.
    fn next_slot(&mut self) -> Option<Slot> {
        loop {
            if self.interrupt.raised() {
                return None;
            }
            let now = Instant::now();
            let due = self.schedule.peek(now)?;
            if due <= now {
                return self.schedule.take(now);
            }
            thread::sleep((due - now).min(SLICE));
        }
    }

    /// One connection kept alive, up to `pipeline` requests in flight.
    fn run_kept_alive(&mut self, pipeline: usize) {
        let mut conn: Option<LineConn> = None;
        // The server answered `ERR shutting-down` on this connection: send
        // nothing more on it, and drop it once its requests are answered.
        let mut draining = false;
        let mut in_flight: VecDeque<Request> = VecDeque::new();
        let mut resend: VecDeque<Request> = VecDeque::new();
        loop {
            // Send what is to be sent again, then every request that is due,
            // while there is room.
            let mut exhausted = false;
            while in_flight.len() < pipeline && !draining {
                let now = Instant::now();
                let mut request = match resend.pop_front() {
                    Some(request) => request,
                    None => match self.due_request(now) {
                        Due::Now(request) => request,
                        Due::Later => break,
                        Due::Done => {
                            exhausted = true;
                            break;
                        }
                    },
                };
                if conn.is_none() {
                    if request.retried > 0 {
                        thread::sleep(backoff(request.retried));
                    }
                    let began = Instant::now();
                    match wire::connect(self.addr, self.timeout) {
                        Ok(stream) => {
                            self.connected(request.slot, began.elapsed());
                            conn = Some(LineConn::new(stream));
                        }
                        Err(failure) => {
                            let give_up = if failure.retryable() && request.retried < self.retries {
                                None
                            } else {
                                self.gives_up(&Err(failure.clone()))
                            };
                            self.fail(request, failure, &mut resend);
                            if let Some(failure) = give_up {
                                self.abandon(&failure);
                                return;
                            }
                            continue;
                        }
                    }
                }
                let open = conn.as_mut().expect("connected above");
                open.queue(&request.job.line());
                request.deadline = Instant::now() + self.timeout;
                in_flight.push_back(request);
            }
            let Some(open) = conn.as_mut() else {
                // No connection means nothing in flight.
                if exhausted && resend.is_empty() {
                    return;
                }
                if resend.is_empty() {
                    self.wait_for_next();
                }
                continue;
            };
            let broken = match open.flush(Instant::now() + self.timeout) {
                Err(failure) => Some(Broken::Failed(failure)),
                Ok(()) => {
                    self.read_reply(open, &mut in_flight, &mut resend, pipeline, &mut draining)
                }
            };
            match broken {
                Some(Broken::Failed(failure)) => {
                    let partial = conn.as_ref().is_some_and(LineConn::reply_started);
                    self.fail_all(&mut in_flight, &failure, partial, &mut resend);
                    conn = None;
                    draining = false;
                }
                Some(Broken::Drained) => {
                    conn = None;
                    draining = false;
                }
                None if in_flight.is_empty() && exhausted && resend.is_empty() => {
                    if let Some(open) = conn.take() {
                        if !self.interrupt.raised() {
                            let deadline = Instant::now() + self.timeout;
                            let extra = open.end(&self.sentinel, deadline, self.interrupt);
                            self.stats.record_extra(self.addr, extra);
                        }
                    }
                    return;
                }
                None => {}
            }
        }
    }

    /// Waits for the oldest reply on a kept-alive connection (waking up when
    /// the next request is due, if there is room to send it) and records it.
    fn read_reply(
        &mut self,
        open: &mut LineConn,
        in_flight: &mut VecDeque<Request>,
        resend: &mut VecDeque<Request>,
        pipeline: usize,
        draining: &mut bool,
    ) -> Option<Broken> {
        let Some(head) = in_flight.front() else {
            if *draining {
                return Some(Broken::Drained);
            }
            if !resend.is_empty() {
                return None;
            }
            self.wait_for_next();
            return None;
        };
        let head_deadline = head.deadline;
        let mut until = head_deadline;
        if in_flight.len() < pipeline && !*draining {
            if let Some(due) = self.schedule.peek(Instant::now()) {
                until = until.min(due);
            }
        }
        match open.read_line(until, self.interrupt) {
            Ok(Some(reply)) => {
                let request = in_flight.pop_front().expect("a request is in flight");
                let reply = Ok(reply);
                if let Some(cause) = self.retry_cause(&request.job, &reply, request.retried) {
                    self.stats.record_retry(cause);
                    resend.push_back(Request {
                        retried: request.retried + 1,
                        ..request
                    });
                    *draining = true;
                } else {
                    self.finish(
                        request.job,
                        Dialect::Line,
                        request.slot,
                        request.started,
                        reply,
                    );
                }
                None
            }
            Ok(None) if Instant::now() >= head_deadline => Some(Broken::Failed(Failure::timeout())),
            Ok(None) => None,
            Err(failure) => Some(Broken::Failed(failure)),
        }
    }

    /// The next new request of a kept-alive connection.
    fn due_request(&mut self, now: Instant) -> Due {
        if self.interrupt.raised() {
            return Due::Done;
        }
        match self.schedule.peek(now) {
            None => return Due::Done,
            Some(due) if due > now => return Due::Later,
            Some(_) => {}
        }
        let slot = self.schedule.take(now).expect("peeked a request");
        Due::Now(Request {
            job: self.picker.next_job(),
            slot,
            started: now,
            retried: 0,
            deadline: now + self.timeout,
        })
    }

    /// Sleeps until the next request is due, a slice at a time (open loop,
    /// nothing in flight).
    fn wait_for_next(&self) {
        let now = Instant::now();
        if let Some(due) = self.schedule.peek(now) {
            thread::sleep(due.saturating_duration_since(now).min(SLICE));
        }
    }

    /// Why `reply` is worth sending again, if it is and retries are left:
    /// the cause as reported.
    fn retry_cause(
        &self,
        job: &Job,
        reply: &Result<String, Failure>,
        retried: u32,
    ) -> Option<String> {
        if retried >= self.retries || self.interrupt.raised() {
            return None;
        }
        match reply {
            Err(failure) if failure.retryable() => Some(failure.kind.to_string()),
            Ok(text) => match job.check(text) {
                Check::Refused { code } if code == SHUTTING_DOWN => Some(format!("ERR {code}")),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// A request whose attempt failed: sent again if it may be, failed
    /// otherwise.
    fn fail(&mut self, request: Request, failure: Failure, resend: &mut VecDeque<Request>) {
        let failed = Err(failure);
        if let Some(cause) = self.retry_cause(&request.job, &failed, request.retried) {
            self.stats.record_retry(cause);
            resend.push_back(Request {
                retried: request.retried + 1,
                ..request
            });
            return;
        }
        self.finish(
            request.job,
            Dialect::Line,
            request.slot,
            request.started,
            failed,
        );
    }

    /// The requests in flight on a connection that broke, oldest first:
    /// the oldest may have part of its reply (`partial`); the others have
    /// none, so they may all be sent again.
    fn fail_all(
        &mut self,
        in_flight: &mut VecDeque<Request>,
        failure: &Failure,
        partial: bool,
        resend: &mut VecDeque<Request>,
    ) {
        for (index, request) in in_flight.drain(..).enumerate().collect::<Vec<_>>() {
            let failure = failure.clone().after_reply_started(index == 0 && partial);
            self.fail(request, failure, resend);
        }
    }

    /// Notes a connect that succeeded.
    fn connected(&mut self, slot: Slot, took: Duration) {
        self.connected_once = true;
        self.shared.connected_any.store(true, Ordering::Relaxed);
        self.stats.record_connect(slot, took);
    }

    /// Whether this failure means the address cannot be reached at all:
    /// the thread's first connect failed. The address and reason are noted,
    /// and the failure returned to count the requests left.
    fn gives_up(&mut self, reply: &Result<String, Failure>) -> Option<Failure> {
        match reply {
            Err(failure) if failure.is_connect() && !self.connected_once => {
                self.stats
                    .unreachable
                    .entry(self.addr)
                    .or_insert_with(|| failure.detail.clone());
                Some(failure.clone())
            }
            _ => None,
        }
    }

    /// Counts every measured request this thread still had to make as
    /// failed with `failure`: its target is unreachable.
    fn abandon(&mut self, failure: &Failure) {
        let left = self.schedule.remaining_measured().unwrap_or(0);
        for _ in 0..left {
            let job = self.picker.next_job();
            self.stats.record_unsent(job, self.addr, failure);
            self.shared.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks and records one finished request.
    fn finish(
        &mut self,
        job: Job,
        dialect: Dialect,
        slot: Slot,
        started: Instant,
        reply: Result<String, Failure>,
    ) {
        let done = Instant::now();
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
        if slot.measured {
            self.shared.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The next new request of a kept-alive connection, if any.
enum Due {
    /// Due now: here it is.
    Now(Request),
    /// Due later.
    Later,
    /// The schedule is done, or the run interrupted.
    Done,
}

/// The wait before retry number `retried` (from 1): 20 ms, doubling, at most
/// [`MAX_BACKOFF`]. It gives a restarting server or a balancer's health
/// check a moment, without slowing a run that has no failures.
pub fn backoff(retried: u32) -> Duration {
    let doublings = retried.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backoff doubles from 20 ms up to its ceiling.
    #[test]
    fn backoff_doubles() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(1), ms(20));
        assert_eq!(backoff(2), ms(40));
        assert_eq!(backoff(5), ms(320));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
