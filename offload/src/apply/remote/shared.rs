//! [`Shared`]: what the remote strategy's threads share, above all the
//! in-flight table, whose one rule is that whoever removes a job from it
//! completes it; and the broker's health, which every thread that talks to
//! the broker reports to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use redis::RedisError;

use super::fair::{Fair, Going};
use super::monitor::RemoteSnapshot;
use crate::apply::client::Client;
use crate::apply::done::Done;
use crate::apply::Timing;
use crate::broker::wire::JobMessage;
use crate::broker::{is_refusal, redact, Broker, Every};
use crate::error::ApplyError;
use crate::job::{Answer, Job};

/// At most one log line per this period for a broker that keeps refusing
/// the credentials.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// One job handed out and not yet answered.
pub(super) struct InFlight {
    /// What went into the stream (kept to hand it out again).
    pub(super) message: JobMessage,
    /// The promise to the submitter.
    pub(super) done: Done,
    /// When it was submitted.
    pub(super) submitted: Instant,
    /// When the server answers it `timeout` if no worker did (its own
    /// monotonic clock).
    pub(super) deadline: Instant,
    /// Its stream entry's id, once the broker took it.
    pub(super) entry: Option<String>,
    /// A long job, which counts against the fair-share window ([`Fair`]).
    pub(super) long: bool,
    /// Sent to the stream (or on its way): a long job waits here until
    /// then.
    pub(super) out: bool,
}

impl InFlight {
    /// Its message with the deadline stated anew on the broker's clock as
    /// it is now: for handing it out again to a broker that may have
    /// restarted, or be another machine after a failover.
    pub(super) fn message_now(&self, broker: &Broker) -> JobMessage {
        let left = self.deadline.saturating_duration_since(Instant::now());
        JobMessage {
            deadline_ms: broker.clock().now_ms().saturating_add(super::as_ms(left)),
            ..self.message.clone()
        }
    }
}

/// What goes to the outbox thread.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// `XADD` the job with this number, if it is still in flight.
    Add(u64),
    /// `XDEL` these entries: their client has gone (counted).
    Withdraw(Vec<String>),
    /// `XDEL` these entries: their jobs were answered before their ids
    /// were known (not counted).
    Delete(Vec<String>),
}

/// What the threads share.
pub(super) struct Shared {
    pub(super) broker: Broker,
    /// This server's reply list.
    pub(super) reply_list: String,
    /// Where its dispatcher moves replies as it takes them (see [`super::taken`]).
    pub(super) taken_list: String,
    /// Jobs handed out and not yet answered, by number.
    pub(super) in_flight: Mutex<HashMap<u64, InFlight>>,
    /// Whether the broker answered the last time anyone asked.
    pub(super) up: AtomicBool,
    /// Why it is down, as the `unavailable` replies say it: set by whoever
    /// saw it go.
    pub(super) down_reason: Mutex<String>,
    /// Lets a refusal of the credentials be logged once per period.
    pub(super) refusals: Every,
    /// Raised by `shutdown` and on drop.
    pub(super) stopping: AtomicBool,
    /// Replies for jobs already completed (a second worker's answer, or one
    /// after the deadline), dropped.
    pub(super) late_replies: AtomicU64,
    /// Replies dropped because their signature was missing or wrong
    /// (`--broker-secret-file`): forged, or from a worker with another key.
    pub(super) forged_replies: AtomicU64,
    /// Jobs handed out again after the broker lost them.
    pub(super) resubmitted: AtomicU64,
    /// Entries withdrawn (their client gone) before any worker took them.
    pub(super) withdrawn: AtomicU64,
    /// Entries withdrawn after a worker took them: it stops them at its
    /// next lease renewal, and their answers are dropped.
    pub(super) abandoned: AtomicU64,
    /// Fair share of the workers' slots between client addresses.
    pub(super) fair: Fair,
    /// To the outbox thread; `None` once the strategy stops.
    pub(super) outbox: Mutex<Option<Sender<Outgoing>>>,
    /// Makes the monitor read the broker now; `None` once it stops.
    pub(super) monitor: Mutex<Option<Sender<()>>>,
    /// The monitor's last reading.
    pub(super) seen: Mutex<RemoteSnapshot>,
}

/// What became of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// It completed its job.
    Completed,
    /// Its job was completed already.
    Late,
    /// Its job is in flight, but the reply failed the check; the job waits
    /// for another reply.
    Refused,
}

impl Shared {
    pub(super) fn new(
        broker: Broker,
        reply_list: String,
        taken_list: String,
        outbox: Sender<Outgoing>,
    ) -> Shared {
        Shared {
            down_reason: Mutex::new(format!(
                "the broker at {} has not answered yet",
                broker.shown()
            )),
            broker,
            reply_list,
            taken_list,
            in_flight: Mutex::new(HashMap::new()),
            up: AtomicBool::new(false),
            refusals: Every::new(REFUSALS_LOGGED_EVERY),
            stopping: AtomicBool::new(false),
            late_replies: AtomicU64::new(0),
            forged_replies: AtomicU64::new(0),
            resubmitted: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            fair: Fair::new(),
            outbox: Mutex::new(Some(outbox)),
            monitor: Mutex::new(None),
            seen: Mutex::new(RemoteSnapshot::default()),
        }
    }

    /// Sends `what` to the outbox thread (nothing once it stopped).
    pub(super) fn send(&self, what: Outgoing) {
        if let Some(outbox) = &*self.outbox.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = outbox.send(what);
        }
    }

    /// Asks the monitor to read the broker now rather than at its next turn
    /// (a nudge already waiting is enough).
    pub(super) fn nudge_monitor(&self) {
        if let Some(monitor) = &*self.monitor.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = monitor.try_send(());
        }
    }

    /// Lets the jobs `going` go to the stream (fair share made room). One
    /// that left the table meanwhile (answered at its deadline, withdrawn)
    /// gives its place back at once, which may let others go.
    pub(super) fn release(&self, mut going: Vec<Going>) {
        while !going.is_empty() {
            let mut gone = Vec::new();
            {
                let mut in_flight = self.in_flight();
                for &(id, address) in &going {
                    match in_flight.get_mut(&id) {
                        Some(job) => job.out = true,
                        None => gone.push(address),
                    }
                }
            }
            for &(id, _) in &going {
                self.send(Outgoing::Add(id));
            }
            going = gone
                .into_iter()
                .flat_map(|address| self.fair.finished(address))
                .collect();
        }
    }

    /// A job taken out of the table: its place in the fair-share window
    /// (or in its line) is given up, and the next long job may go.
    fn left(&self, job: &InFlight) {
        if !job.long {
            return;
        }
        let address = job.done.client().address();
        if job.out {
            let going = self.fair.finished(address);
            self.release(going);
        } else {
            self.fair.drop_held(job.message.id, address);
        }
    }

    /// Takes every job of `client` out of the table; the caller completes
    /// them.
    pub(super) fn take_client(&self, client: &Client) -> Vec<InFlight> {
        let taken: Vec<InFlight> = {
            let mut in_flight = self.in_flight();
            let ids: Vec<u64> = in_flight
                .iter()
                .filter(|(_, job)| job.done.client().is(client))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| in_flight.remove(id)).collect()
        };
        taken.iter().for_each(|job| self.left(job));
        taken
    }

    pub(super) fn in_flight(&self) -> MutexGuard<'_, HashMap<u64, InFlight>> {
        // Completions run outside the lock, so a poisoned table is intact.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Completes job `id` with `result` unless it was completed already;
    /// returns whether this call completed it.
    pub(super) fn complete(
        &self,
        id: u64,
        result: impl FnOnce(Job, Duration) -> Result<Answer, ApplyError>,
    ) -> bool {
        self.complete_checked(id, |_| true, result) == Delivery::Completed
    }

    /// Completes job `id` with `result` if it is in flight and `check`
    /// accepts its message (checked under the table's lock, so that no one
    /// else completes it in between).
    pub(super) fn complete_checked(
        &self,
        id: u64,
        check: impl FnOnce(&JobMessage) -> bool,
        result: impl FnOnce(Job, Duration) -> Result<Answer, ApplyError>,
    ) -> Delivery {
        let job = {
            let mut in_flight = self.in_flight();
            let Some(job) = in_flight.get(&id) else {
                return Delivery::Late;
            };
            if !check(&job.message) {
                return Delivery::Refused;
            }
            in_flight
                .remove(&id)
                .expect("looked up under the same lock")
        };
        self.left(&job);
        let elapsed = job.submitted.elapsed();
        let outcome = result(job.message.job, elapsed);
        job.done.complete(
            outcome,
            Timing {
                queue_wait: None,
                run: Some(elapsed),
            },
        );
        Delivery::Completed
    }

    /// Records that the broker failed `err` while the thread did `what`:
    /// it is down from now on (until the dispatcher reaches it again), and
    /// new jobs are told why. A refusal of the credentials is logged at
    /// `error`, at most once per period; an outage once, when it starts.
    /// Returns the reason, as the `unavailable` replies give it.
    pub(super) fn went_down(&self, err: &RedisError, what: &str) -> String {
        let reason = if is_refusal(err) {
            self.broker.refusal(err)
        } else {
            self.unreachable(&redact(&err.to_string()))
        };
        *self.down_reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.clone();
        let was_up = self.up.swap(false, Ordering::AcqRel);
        if is_refusal(err) {
            if let Some(held) = self.refusals.pass() {
                tracing::error!(held_back = held, "{what}: {reason}");
            }
        } else if was_up {
            tracing::warn!("{what}: {reason}");
        }
        reason
    }

    /// The broker answered: it is up, and the next refusal is logged.
    pub(super) fn came_up(&self) {
        self.refusals.reset();
        self.up.store(true, Ordering::Release);
    }

    /// Why the broker is down, for an `unavailable` reply.
    pub(super) fn down_reason(&self) -> String {
        self.down_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn unreachable(&self, why: &str) -> String {
        format!(
            "the broker at {} is unreachable ({why})",
            self.broker.shown()
        )
    }
}
