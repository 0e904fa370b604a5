//! [`Taker`]: turns stream entries into jobs started on the local strategy,
//! and finishes them.
//!
//! A job that finishes gives its slot back at once ([`Running::finish`]) and
//! the thread that finished it (a pool thread of the local strategy) settles
//! it on a connection of its own; in the same round trip it reads the next
//! entry for the slot it has just freed (`XREADGROUP … COUNT 1`, without
//! waiting) and starts it. So a slot goes from one job to the next in one
//! round trip on a thread that is already running, instead of waiting for
//! the settlement, a wake-up of the reader and the reader's own read: on a
//! machine whose cores are all computing, each of those waits for a time
//! slice. What it cannot settle goes to the replier thread, which retries.
//!
//! A job already delivered [`MAX_DELIVERIES`] times is answered
//! `worker-lost` instead of run again; a job whose deadline passed is
//! acknowledged without running (its server has answered it `timeout`).
//!
//! An entry in a format newer than this worker reads is left pending, as
//! if never delivered, for a worker that reads it (see [`leave`]).
//!
//! An entry is refused (acknowledged and deleted, counted, logged, never
//! answered) when it is not a job, when signing is on and its MAC is
//! missing or wrong, or when it names as its reply list a key that is not a
//! reply list of this deployment: a worker writes nowhere else, whatever an
//! entry says.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use crossbeam_channel::Sender;
use offload::apply::Client;
use offload::broker::wire::{answer_reply, error_reply, JobMessage, ReplyCode, WireError};
use offload::broker::{Broker, COMMAND_TIMEOUT, MAX_DELIVERIES};
use offload::{Answer, ApplyError, Strategy};
use redis::streams::StreamId;
use redis::{Connection, RedisResult};

use crate::counts::Counts;
use crate::replier::Unsent;
use crate::running::{Reserved, Running};
use crate::settle::{leave, settle, settle_then_read, Settle};

/// What starting and finishing jobs needs; shared by the reader and every
/// job's completion.
#[derive(Debug)]
pub(crate) struct Taker {
    /// This worker's consumer name.
    pub(crate) name: String,
    /// Where the jobs come from.
    pub(crate) broker: Broker,
    /// The jobs taken and their slots.
    pub(crate) running: Arc<Running>,
    /// To the replier: settlements this thread could not send.
    pub(crate) unsent: Sender<Unsent>,
    /// The local strategy; weak, so that it is dropped by the main thread,
    /// never by one of its own pool threads.
    pub(crate) strategy: Weak<Strategy>,
    /// What this worker counts (refused and left entries among them).
    pub(crate) counts: Arc<Counts>,
}

thread_local! {
    /// The broker connection of a thread that finishes jobs (a pool thread
    /// of the local strategy), with the generation it was opened under.
    static HERE: RefCell<(Option<Connection>, u64)> = const { RefCell::new((None, 0)) };
    /// Raised while this thread hands a job to the local strategy: a job
    /// that completes inside that call (`inline` runs it there; a refusal
    /// comes back there) must not read and start another from within it.
    static STARTING: Cell<bool> = const { Cell::new(false) };
}

impl Taker {
    /// Starts each entry in a slot of `reserved`, or settles it at once when
    /// it must not run. `deliveries` holds the delivery counts of entries
    /// taken over (a fresh read is a first delivery).
    pub(crate) fn take(
        self: &Arc<Self>,
        conn: &mut Connection,
        entries: Vec<StreamId>,
        deliveries: &HashMap<String, u64>,
        reserved: &mut Reserved<'_>,
    ) -> RedisResult<()> {
        let mut settle_now = Vec::new();
        let mut left = Vec::new();
        let newest = self.broker.format();
        for entry in entries {
            let delivered = deliveries.get(&entry.id).copied().unwrap_or(1);
            let message = match JobMessage::from_fields(&entry.map, self.broker.signer()) {
                // A newer format (a fleet being upgraded): not this
                // worker's to judge; another that reads it will take it.
                Err(WireError::Unsupported { version }) => {
                    self.counts.left.count(&entry.id, version, newest);
                    left.push((entry.id, delivered));
                    continue;
                }
                Ok(message) if message.format > newest => {
                    self.counts.left.count(&entry.id, message.format, newest);
                    left.push((entry.id, delivered));
                    continue;
                }
                Ok(message) if self.broker.keys().is_reply_list(&message.reply_to) => message,
                Ok(message) => {
                    self.counts
                        .refused
                        .count_foreign(&entry.id, &message.reply_to);
                    settle_now.push(Settle {
                        entry: entry.id,
                        reply: None,
                    });
                    continue;
                }
                Err(err) => {
                    // Nobody can be answered (or trusted): drop it, loudly.
                    self.counts.refused.count(&entry.id, &err);
                    settle_now.push(Settle {
                        entry: entry.id,
                        reply: None,
                    });
                    continue;
                }
            };
            // Judged on the broker's clock, as the server set it: this
            // machine's own clock may be off by any amount.
            let now_ms = self.broker.clock().now_ms();
            if message.deadline_ms < now_ms {
                let late_ms = now_ms - message.deadline_ms;
                Counts::add(&self.counts.expired, 1);
                tracing::info!(entry = %entry.id, job = %message.job, late_ms, "a job past its deadline: answered expired, not run");
                let detail = format!(
                    "a worker took it {late_ms} ms after its deadline (on the broker's clock), \
                     before starting it"
                );
                settle_now.push(Settle {
                    entry: entry.id,
                    reply: Some((
                        message.reply_to.clone(),
                        error_reply(&message, ReplyCode::Expired, &detail, self.broker.signer()),
                    )),
                });
            } else if delivered > MAX_DELIVERIES {
                tracing::warn!(entry = %entry.id, job = %message.job, "job lost by every worker it was given to");
                Counts::add(&self.counts.given_up, 1);
                let detail = format!(
                    "{} was given to workers {} times and none finished it",
                    message.job, MAX_DELIVERIES
                );
                settle_now.push(Settle {
                    entry: entry.id,
                    reply: Some((
                        message.reply_to.clone(),
                        error_reply(
                            &message,
                            ReplyCode::WorkerLost,
                            &detail,
                            self.broker.signer(),
                        ),
                    )),
                });
            } else {
                self.start(reserved, entry.id, message);
            }
        }
        if !left.is_empty() {
            leave(conn, self.broker.keys(), &self.name, &left)?;
        }
        if settle_now.is_empty() {
            Ok(())
        } else {
            settle(conn, self.broker.keys(), &settle_now)
        }
    }

    /// Hands one job to the local strategy in one of `reserved`'s slots.
    fn start(self: &Arc<Self>, reserved: &mut Reserved<'_>, entry: String, message: JobMessage) {
        // Gone only once the worker has stopped: the entry stays pending,
        // and another worker takes it over after the lease.
        let Some(strategy) = self.strategy.upgrade() else {
            return;
        };
        let job = message.job;
        // A client of its own: withdrawing it (its server withdrew the
        // entry) stops this job alone.
        let client = Client::new(None);
        if !self
            .running
            .start(reserved, entry.clone(), message, client.clone())
        {
            // Cannot happen: every read asks for as many entries as it
            // holds slots. Left pending rather than run beyond the slots.
            tracing::error!(entry = %entry, "read more jobs than free slots; leaving one pending");
            return;
        }
        let taker = Arc::clone(self);
        let outer = STARTING.replace(true);
        strategy.submit_for(job, &client, move |result| taker.finished(entry, result));
        STARTING.set(outer);
    }

    /// The local strategy is done with the job under `entry`: frees its
    /// slot, settles it, and (unless called from within [`Self::start`])
    /// reads and starts the next job for that slot in the same round trip.
    fn finished(self: &Arc<Self>, entry: String, result: Result<Answer, ApplyError>) {
        let read_next = !STARTING.get();
        let Some((message, mut next)) = self.running.finish(&entry, read_next) else {
            return;
        };
        // The worker's access log, one line per job (target `access`).
        match &result {
            Ok(answer) => {
                tracing::debug!(target: "access", entry = %entry, job = %message.job, %answer, "job done");
            }
            Err(err) => {
                tracing::debug!(target: "access", entry = %entry, job = %message.job, %err, "job failed");
            }
        }
        let reply = match result {
            // Its server withdrew it: nobody waits; acknowledged, no reply.
            Err(ApplyError::Cancelled { .. }) => None,
            _ => match reply_text(&message, &entry, &result, self.broker.signer()) {
                Some(text) => Some((message.reply_to.clone(), text)),
                None => {
                    self.running.remove(&entry);
                    return;
                }
            },
        };
        let job = Settle { entry, reply };
        // Taken out of the cell while in use: a job started below may
        // complete within this call (a refusal) and come here again.
        let (mut conn, mut generation) = HERE.with(|cell| {
            let mut here = cell.borrow_mut();
            (here.0.take(), here.1)
        });
        self.broker.drop_if_stale(&mut conn, &mut generation);
        if conn.is_none() {
            conn = self.broker.connect(COMMAND_TIMEOUT).ok();
        }
        let Some(live) = conn.as_mut() else {
            return self.hand_to_replier(job, message.deadline_ms);
        };
        let keys = self.broker.keys();
        let outcome = if next.count() > 0 {
            settle_then_read(
                live,
                keys,
                std::slice::from_ref(&job),
                &self.name,
                next.count(),
            )
        } else {
            settle(live, keys, std::slice::from_ref(&job)).map(|()| Ok(Vec::new()))
        };
        match outcome {
            Ok(read) => {
                self.running.remove(&job.entry);
                let taken =
                    read.and_then(|entries| self.take(live, entries, &HashMap::new(), &mut next));
                if let Err(err) = taken {
                    // The reader reads for the slot instead, and recreates
                    // the group if the broker lost it.
                    tracing::debug!(%err, "could not read the next job here");
                    conn = None;
                }
            }
            Err(err) => {
                self.counts.broker_failed(false);
                tracing::debug!(%err, "could not settle here; the replier retries");
                conn = None;
                self.hand_to_replier(job, message.deadline_ms);
            }
        }
        // The freed slot, if nothing was started in it, goes back now.
        drop(next);
        HERE.with(|cell| *cell.borrow_mut() = (conn, generation));
    }

    fn hand_to_replier(&self, job: Settle, deadline_ms: u64) {
        // The replier outlives every job.
        let _ = self.unsent.send(Unsent { job, deadline_ms });
    }
}

/// The reply to a finished job, or `None` when it is handed back instead: a
/// job the local strategy refused or cut short because this worker is
/// stopping stays pending, and another worker takes it over after the lease.
fn reply_text(
    message: &JobMessage,
    entry: &str,
    result: &Result<Answer, ApplyError>,
    signer: Option<&offload::broker::Signer>,
) -> Option<String> {
    match result {
        Ok(answer) => Some(answer_reply(message, answer, signer)),
        Err(err) => match ReplyCode::of(err) {
            Some(code) => Some(error_reply(message, code, &err.to_string(), signer)),
            None => {
                tracing::info!(entry = %entry, %err, "handing the job back");
                None
            }
        },
    }
}
