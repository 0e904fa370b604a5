//! A thread's kept-alive connection: up to `--pipeline` requests in
//! flight on one line-dialect connection, made again after a failure; the
//! requests not yet answered when it breaks are sent again (within
//! `--retries`) on the next one, and a connection ends with the sentinel
//! check for extra replies.

use std::collections::VecDeque;
use std::thread;
use std::time::Instant;

use crate::history::Attempt;
use crate::job::{Dialect, Job};
use crate::outcome::Failure;
use crate::schedule::Slot;
use crate::wire::{self, LineConn};

use super::{backoff, Worker};

/// A request on its way: sent on a kept-alive connection and not yet
/// answered, or waiting to be sent again.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) job: Job,
    pub(super) slot: Slot,
    /// When its first attempt started: latency counts from here.
    pub(super) started: Instant,
    /// Attempts made after the first.
    pub(super) retried: u32,
    /// When its current attempt times out.
    pub(super) deadline: Instant,
    /// Its earlier attempts, for `--history` (empty without it).
    pub(super) attempts: Vec<Attempt>,
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
    /// One connection kept alive, up to `pipeline` requests in flight.
    pub(super) fn run_kept_alive(&mut self, pipeline: usize) {
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
                    let mut attempts = request.attempts;
                    self.note_attempt(&mut attempts, &cause);
                    self.stats.record_retry(cause);
                    resend.push_back(Request {
                        retried: request.retried + 1,
                        attempts,
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
                        request.attempts,
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
            attempts: Vec::new(),
        })
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
