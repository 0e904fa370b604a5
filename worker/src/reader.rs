//! The reading loop: takes jobs for exactly the slots that are free, from
//! the stream (`XREADGROUP … >`) and from workers that stopped renewing
//! their leases (`XAUTOCLAIM`), and hands each to the local strategy.
//!
//! A job already delivered [`MAX_DELIVERIES`] times is answered
//! `worker-lost` instead of run again; a job whose deadline passed is
//! acknowledged without running (its server has answered it `timeout`).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use offload::broker::wire::{error_reply, JobMessage, ReplyCode};
use offload::broker::{
    ensure_group, is_missing_group, keys, unix_ms_now, Backoff, Broker, COMMAND_TIMEOUT,
    MAX_DELIVERIES,
};
use offload::Strategy;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{Connection, RedisResult};

use crate::cli::Config;
use crate::replier::{self, Finished};
use crate::running::Running;
use crate::settle::{settle, Settle};

/// What the loop works with.
pub(crate) struct Reader<'a> {
    pub(crate) config: &'a Config,
    pub(crate) broker: &'a Broker,
    pub(crate) strategy: &'a Strategy,
    pub(crate) running: &'a Arc<Running>,
    pub(crate) finished: Sender<Finished>,
    /// The period of reads, claims and renewals: a quarter of the lease.
    pub(crate) tick: Duration,
}

impl Reader<'_> {
    /// Reads and claims jobs until `stopping` is raised.
    pub(crate) fn run(&self, stopping: &AtomicBool) {
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::default();
        let mut cursor = "0-0".to_owned();
        let mut last_claim: Option<Instant> = None;
        let mut announced = false;
        while !stopping.load(Ordering::Acquire) {
            if self.running.free() == 0 {
                self.running.wait_for_free(self.tick);
                continue;
            }
            if conn.is_none() {
                match self.broker.connect_with_group(self.tick + COMMAND_TIMEOUT) {
                    Ok(fresh) => {
                        conn = Some(fresh);
                        backoff.reset();
                        tracing::info!(broker = self.broker.url(), name = %self.config.name, "reading jobs");
                        if !announced {
                            // Scripts and tests wait for this line.
                            let mut out = std::io::stdout();
                            let _ = writeln!(
                                out,
                                "sumworker {} reading {}",
                                self.config.name,
                                self.broker.url()
                            )
                            .and_then(|()| out.flush());
                            announced = true;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "cannot reach the broker");
                        std::thread::sleep(backoff.next_wait());
                        continue;
                    }
                }
            }
            let Some(live) = conn.as_mut() else { continue };
            let claim_due = last_claim.is_none_or(|at| at.elapsed() >= self.tick);
            let step = if claim_due {
                last_claim = Some(Instant::now());
                self.claim(live, &mut cursor)
            } else {
                Ok(())
            }
            .and_then(|()| self.read(live));
            if let Err(err) = step {
                if is_missing_group(&err) {
                    tracing::warn!("the broker lost the group; creating it again");
                    if ensure_group(live).is_ok() {
                        continue;
                    }
                }
                tracing::warn!(%err, "lost the broker; reconnecting");
                conn = None;
                std::thread::sleep(backoff.next_wait());
            }
        }
    }

    /// Takes up to the free slots of new jobs, waiting at most a tick.
    fn read(&self, conn: &mut Connection) -> RedisResult<()> {
        let free = self.running.free();
        if free == 0 {
            return Ok(());
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(&self.config.name)
            .arg("COUNT")
            .arg(free)
            .arg("BLOCK")
            .arg(millis(self.tick))
            .arg("STREAMS")
            .arg(keys::JOBS)
            .arg(">")
            .query(conn)?;
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        self.take(conn, entries, &HashMap::new())
    }

    /// Takes over up to the free slots of jobs whose lease ran out.
    fn claim(&self, conn: &mut Connection, cursor: &mut String) -> RedisResult<()> {
        let free = self.running.free();
        if free == 0 {
            return Ok(());
        }
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(keys::JOBS)
            .arg(keys::GROUP)
            .arg(&self.config.name)
            .arg(millis(self.config.lease))
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(free)
            .query(conn)?;
        *cursor = reply.next_stream_id;
        if reply.claimed.is_empty() {
            return Ok(());
        }
        redis::cmd("INCRBY")
            .arg(keys::REDELIVERIES)
            .arg(reply.claimed.len())
            .exec(conn)?;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(keys::JOBS)
            .arg(keys::GROUP)
            .arg("-")
            .arg("+")
            .arg(self.config.strategy.workers * 4 + reply.claimed.len())
            .arg(&self.config.name)
            .query(conn)?;
        let deliveries: HashMap<String, u64> = pending
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered as u64))
            .collect();
        tracing::info!(
            jobs = reply.claimed.len(),
            "took over jobs whose lease ran out"
        );
        self.take(conn, reply.claimed, &deliveries)
    }

    /// Starts each entry, or settles it at once when it must not run.
    fn take(
        &self,
        conn: &mut Connection,
        entries: Vec<StreamId>,
        deliveries: &HashMap<String, u64>,
    ) -> RedisResult<()> {
        let mut settle_now = Vec::new();
        for entry in entries {
            let message = match JobMessage::from_fields(&entry.map) {
                Ok(message) => message,
                Err(err) => {
                    // Nobody can be answered: drop it, loudly.
                    tracing::error!(entry = %entry.id, %err, "dropping an entry that is not a job");
                    settle_now.push(Settle {
                        entry: entry.id,
                        reply: None,
                    });
                    continue;
                }
            };
            let delivered = deliveries.get(&entry.id).copied().unwrap_or(1);
            if message.deadline_ms < unix_ms_now() {
                tracing::debug!(entry = %entry.id, "skipping a job past its deadline");
                settle_now.push(Settle {
                    entry: entry.id,
                    reply: None,
                });
            } else if delivered > MAX_DELIVERIES {
                tracing::warn!(entry = %entry.id, job = %message.job, "job lost by every worker it was given to");
                let detail = format!(
                    "{} was given to workers {} times and none finished it",
                    message.job, MAX_DELIVERIES
                );
                settle_now.push(Settle {
                    entry: entry.id,
                    reply: Some((
                        message.reply_to.clone(),
                        error_reply(message.id, ReplyCode::WorkerLost, &detail),
                    )),
                });
            } else {
                self.start(entry.id, message);
            }
        }
        if settle_now.is_empty() {
            Ok(())
        } else {
            settle(conn, &settle_now)
        }
    }

    /// Hands one job to the local strategy; its result goes to the replier.
    fn start(&self, entry: String, message: JobMessage) {
        let job = message.job;
        self.running.insert(entry.clone(), message);
        let finished = self.finished.clone();
        let broker = self.broker.clone();
        let running = Arc::clone(self.running);
        self.strategy.submit(job, move |result| {
            let done = Finished { entry, result };
            if let Some(unsettled) = replier::settle_here(&broker, &running, done) {
                // The replier outlives every job, and retries.
                let _ = finished.send(unsettled);
            }
        });
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
