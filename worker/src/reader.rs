//! The reading loop: takes jobs for exactly the slots that are free, from
//! the stream (`XREADGROUP … >`) and from workers that stopped renewing
//! their leases (`XAUTOCLAIM`), and hands them to the [`Taker`].
//!
//! A slot freed by a finishing job is read for by the thread that finished
//! it (see [`crate::take`]); the reader reads for the slots that are free
//! otherwise: at start, after a read found nothing, after a job handed back.
//! A read blocked here (`BLOCK`, at most a tick) returns as soon as an entry
//! arrives, and the next read asks for every slot then free.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use offload::broker::{
    ensure_group, is_missing_group, is_refusal, redact, Backoff, Broker, Every, COMMAND_TIMEOUT,
};
use redis::streams::{StreamAutoClaimReply, StreamPendingCountReply};
use redis::{Connection, RedisResult, Value};

use crate::cli::Config;
use crate::counts::Counts;
use crate::running::Running;
use crate::settle::entries;
use crate::stop::Stop;
use crate::take::Taker;

/// At most one log line per this period while the broker is unreachable or
/// refuses this worker.
const OUTAGE_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// What the loop works with.
pub(crate) struct Reader<'a> {
    pub(crate) config: &'a Config,
    pub(crate) broker: &'a Broker,
    pub(crate) running: &'a Running,
    pub(crate) taker: &'a Arc<Taker>,
    /// The period of reads, claims and renewals: a quarter of the lease.
    pub(crate) tick: Duration,
}

impl Reader<'_> {
    /// Reads and claims jobs until the stop is asked for.
    pub(crate) fn run(&self, stop: &Stop) {
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::default();
        let mut cursor = "0-0".to_owned();
        let mut last_claim: Option<Instant> = None;
        let mut announced = false;
        let outage = Every::new(OUTAGE_LOGGED_EVERY);
        let mut generation = self.broker.generation();
        while !stop.is_requested() {
            // Under Sentinel, a switch of primary: read from the new one.
            self.broker.drop_if_stale(&mut conn, &mut generation);
            if self.running.free() == 0 {
                self.running.wait_for_change(self.tick);
                continue;
            }
            if conn.is_none() {
                match self.broker.connect_with_group(self.tick + COMMAND_TIMEOUT) {
                    Ok(fresh) => {
                        conn = Some(fresh);
                        self.taker.counts.reader_connected();
                        backoff.reset();
                        outage.reset();
                        tracing::info!(broker = self.broker.shown(), name = %self.config.name, "reading jobs");
                        if !announced {
                            // Scripts and tests wait for this line.
                            let mut out = std::io::stdout();
                            let _ = writeln!(
                                out,
                                "sumworker {} reading {}",
                                self.config.name,
                                self.broker.shown()
                            )
                            .and_then(|()| out.flush());
                            announced = true;
                        }
                    }
                    Err(err) => {
                        self.taker.counts.broker_failed(true);
                        self.log_outage(&outage, &err);
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
                    if ensure_group(live, self.broker.keys()).is_ok() {
                        continue;
                    }
                }
                self.taker.counts.broker_failed(true);
                self.log_outage(&outage, &err);
                conn = None;
                std::thread::sleep(backoff.next_wait());
            }
        }
    }

    /// Logs that the broker failed, at most once per period: a refusal of
    /// the credentials (a password rotated under a running worker) at
    /// `error`, an outage at `warn`.
    fn log_outage(&self, every: &Every, err: &redis::RedisError) {
        let Some(held_back) = every.pass() else {
            return;
        };
        if is_refusal(err) {
            tracing::error!(held_back, "{}", self.broker.refusal(err));
        } else {
            let why = redact(&err.to_string());
            tracing::warn!(held_back, %why, broker = self.broker.shown(), "cannot reach the broker; retrying");
        }
    }

    /// Takes up to the free slots of new jobs, waiting at most a tick.
    fn read(&self, conn: &mut Connection) -> RedisResult<()> {
        let mut reserved = self.running.reserve();
        if reserved.count() == 0 {
            return Ok(());
        }
        let keys = self.broker.keys();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys.group())
            .arg(&self.config.name)
            .arg("COUNT")
            .arg(reserved.count())
            .arg("BLOCK")
            .arg(millis(self.tick))
            .arg("STREAMS")
            .arg(keys.jobs())
            .arg(">")
            .query(conn)?;
        self.taker
            .take(conn, entries(reply)?, &HashMap::new(), &mut reserved)
    }

    /// Takes over up to the free slots of jobs whose lease ran out.
    fn claim(&self, conn: &mut Connection, cursor: &mut String) -> RedisResult<()> {
        let mut reserved = self.running.reserve();
        if reserved.count() == 0 {
            return Ok(());
        }
        let keys = self.broker.keys();
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(keys.jobs())
            .arg(keys.group())
            .arg(&self.config.name)
            .arg(millis(self.config.lease))
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(reserved.count())
            .query(conn)?;
        *cursor = reply.next_stream_id;
        if reply.claimed.is_empty() {
            return Ok(());
        }
        redis::cmd("INCRBY")
            .arg(keys.redeliveries())
            .arg(reply.claimed.len())
            .exec(conn)?;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(keys.jobs())
            .arg(keys.group())
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
        Counts::add(&self.taker.counts.taken_over, reply.claimed.len());
        tracing::info!(
            jobs = reply.claimed.len(),
            "took over jobs whose lease ran out"
        );
        self.taker
            .take(conn, reply.claimed, &deliveries, &mut reserved)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
