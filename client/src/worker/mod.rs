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
use crate::history::{Attempt, Trail};
use crate::interrupt::{Interrupt, SLICE};
use crate::job::{Check, Dialect, Job};
use crate::mix::Picker;
use crate::outcome::{Failure, Outcome};
use crate::schedule::{Schedule, Slot};
use crate::stats::{Finished, Stats};
use crate::wire;

mod kept_alive;

use kept_alive::Request;

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
    /// Its part of `--history`, if asked for.
    pub trail: Option<Trail<'a>>,
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
            let mut attempts = Vec::new();
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
                    self.note_attempt(&mut attempts, &cause);
                    self.stats.record_retry(cause);
                    retried += 1;
                    thread::sleep(backoff(retried));
                    continue;
                }
                let give_up = self.gives_up(&exchange.reply);
                self.finish(job, dialect, slot, started, exchange.reply, attempts);
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
            let mut attempts = request.attempts;
            self.note_attempt(&mut attempts, &cause);
            self.stats.record_retry(cause);
            resend.push_back(Request {
                retried: request.retried + 1,
                attempts,
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
            request.attempts,
        );
    }

    /// Notes, for `--history`, an attempt that ended in `outcome` and is
    /// sent again.
    fn note_attempt(&self, attempts: &mut Vec<Attempt>, outcome: &str) {
        if self.trail.is_some() {
            attempts.push(Attempt::now(self.addr, outcome));
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
        attempts: Vec<Attempt>,
    ) {
        let done = Instant::now();
        if let Some(trail) = &mut self.trail {
            let line = job.request(dialect);
            trail.record(&job, &line, self.addr, (started, done), &attempts, &reply);
        }
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
