//! `remote`: jobs handed to `sumworker` processes, on this machine or
//! others, through a Redis stream and its consumer group.
//!
//! [`Remote::submit`] registers the job's [`Done`] under a number in the
//! in-flight table and queues the number for the outbox thread, which
//! `XADD`s it to the jobs stream. Three more threads finish the story:
//!
//! - [`dispatcher`]: takes this server's replies ([`taken`]: moved, never
//!   popped, so that none is lost with a broken connection) and completes each job
//!   the first time an answer for it arrives (later ones are counted as
//!   late and dropped); it also owns the broker's health: it reconnects
//!   with capped backoff and, when the broker came back without its data,
//!   hands every job in flight out again.
//! - [`deadlines`]: completes each job at its deadline if nothing else did,
//!   as `timeout` (or `unavailable` when the broker is down then).
//! - [`monitor`]: reads the stream, the pending list and the consumers
//!   every half second, for `stats`.
//!
//! Whoever removes a job from the in-flight table ([`shared`]) completes it, so each job
//! is completed exactly once. The semantics are in `docs/distributed.md`.

mod deadlines;
mod dispatcher;
mod fair;
mod monitor;
mod outbox;
mod shared;
mod taken;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use redis::Connection;

use super::done::{Caller, Done};
use super::{StrategyConfig, Timing};
use crate::broker::wire::JobMessage;
use crate::broker::{Broker, BrokerConfig, Probe, Role};
use crate::error::{ApplyError, BusyReason, StartError};
use crate::job::Job;
use shared::{InFlight, Outgoing, Shared};

pub use monitor::{RemoteSnapshot, WorkerSeen};

/// How long `start` waits for the first connection to the broker, so that
/// the first requests do not find it "unavailable" only because the server
/// has just started.
const FIRST_CONNECTION: Duration = Duration::from_secs(2);

/// Most idle connections kept for blocking callers.
const POOLED: usize = 64;

/// The strategy's handle: the channels into its threads.
pub(crate) struct Remote {
    shared: Arc<Shared>,
    /// Deadlines for the deadline thread.
    deadlines: Option<Sender<(Instant, u64)>>,
    /// Connections for blocking callers' `XADD`s, reused, each with the
    /// generation it was opened under (a stale one is dropped).
    connections: Mutex<Vec<(Connection, u64)>>,
    threads: Vec<JoinHandle<()>>,
    /// Most jobs in flight at once; more are `busy`.
    capacity: usize,
    /// From submission to deadline: the queue wait plus the job timeout.
    lifetime: Duration,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("broker", &self.shared.broker.shown())
            .field("reply_list", &self.shared.reply_list)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Starts the four threads and waits up to [`FIRST_CONNECTION`] for the
    /// broker (a broker that is down is not an error: jobs get
    /// `unavailable` until it is back).
    ///
    /// A broker that answers but refuses the credentials or a command it
    /// needs is a configuration error: [`StartError::BrokerRefused`].
    pub(crate) fn start(
        config: &StrategyConfig,
        broker: &BrokerConfig,
    ) -> Result<Remote, StartError> {
        let broker = Broker::new(broker)?;
        let job_timeout = config.job_timeout.ok_or(StartError::BadSetting {
            setting: "job timeout",
            expected: "set for remote (the deadline travels with the job)",
            value: "none".into(),
        })?;
        let name = server_name();
        let reply_list = broker.keys().reply_list(&name);
        let taken_list = broker.keys().taken_list(&name);
        let (outbox, outbox_rx) = crossbeam_channel::unbounded();
        match broker.probe(Role::Server {
            reply_list: &reply_list,
            taken_list: &taken_list,
        }) {
            Ok(()) => {}
            Err(Probe::Refused(detail)) => return Err(StartError::BrokerRefused { detail }),
            Err(Probe::Unreachable(why)) => {
                tracing::warn!(broker = broker.shown(), %why, "the broker is not reachable yet; jobs get ERR unavailable until it is");
            }
        }
        let shared = Arc::new(Shared::new(broker, reply_list, taken_list, outbox));
        let (deadlines, deadlines_rx) = crossbeam_channel::unbounded();
        // Dropped to stop the monitor; a message (from `Shared::nudge`)
        // makes it read the broker now.
        let (stop_monitor, stop_monitor_rx) = crossbeam_channel::bounded(1);
        *shared.monitor.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop_monitor);
        let mut remote = Remote {
            shared: Arc::clone(&shared),
            deadlines: Some(deadlines),
            connections: Mutex::new(Vec::new()),
            threads: Vec::new(),
            capacity: config.queue,
            lifetime: config.queue_wait + job_timeout,
            next_id: AtomicU64::new(1),
        };
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| StartError::os("could not start a remote thread", e))
        };
        let s = Arc::clone(&shared);
        remote.threads.push(spawn(
            "remote-outbox",
            Box::new(move || outbox::run(&s, &outbox_rx)),
        )?);
        let s = Arc::clone(&shared);
        remote.threads.push(spawn(
            "remote-dispatch",
            Box::new(move || dispatcher::run(&s)),
        )?);
        let s = Arc::clone(&shared);
        remote.threads.push(spawn(
            "remote-deadlines",
            Box::new(move || deadlines::run(&s, &deadlines_rx)),
        )?);
        let s = Arc::clone(&shared);
        remote.threads.push(spawn(
            "remote-monitor",
            Box::new(move || monitor::run(&s, &stop_monitor_rx)),
        )?);
        let started = Instant::now();
        while !shared.up.load(Ordering::Acquire) && started.elapsed() < FIRST_CONNECTION {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(remote)
    }

    /// Hands `job` out; see the module documentation. A long job waits
    /// for its turn by fair share ([`fair`]); a short one from a blocking
    /// caller (a connection thread, which waits for the answer anyway) is
    /// `XADD`ed by that thread, saving the hand-off to the outbox thread; an
    /// event loop never waits for the broker.
    pub(crate) fn submit(&self, job: Job, caller: Caller, done: Done) {
        let shared = &self.shared;
        let Some(deadlines) = &self.deadlines else {
            return done.complete(Err(ApplyError::ShuttingDown { job }), Timing::default());
        };
        if shared.stopping.load(Ordering::Acquire) {
            return done.complete(Err(ApplyError::ShuttingDown { job }), Timing::default());
        }
        if !shared.up.load(Ordering::Acquire) {
            let reason = shared.down_reason();
            return done.complete(
                Err(ApplyError::Unavailable { job, reason }),
                Timing::default(),
            );
        }
        let submitted = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // The deadline travels on the broker's clock, the one every worker
        // judges it on, whatever their own clocks say.
        let message = JobMessage::new(
            id,
            job,
            shared.reply_list.clone(),
            shared
                .broker
                .clock()
                .now_ms()
                .saturating_add(as_ms(self.lifetime)),
        )
        .in_format(shared.broker.format());
        let address = done.client().address();
        let long = shared.fair.is_long(job);
        {
            let mut in_flight = shared.in_flight();
            // One address may fill three quarters of the table, so that a
            // new one is not refused because another filled it.
            let of_address = in_flight
                .values()
                .filter(|job| job.done.client().address() == address)
                .count();
            let reason = if in_flight.len() >= self.capacity {
                Some(BusyReason::InFlightFull {
                    in_flight: in_flight.len(),
                })
            } else if of_address >= (self.capacity - self.capacity / 4).max(1) {
                Some(BusyReason::AddressFull { queued: of_address })
            } else {
                None
            };
            if let Some(reason) = reason {
                drop(in_flight);
                let busy = ApplyError::Busy { job, reason };
                return done.complete(Err(busy), Timing::default());
            }
            in_flight.insert(
                id,
                InFlight {
                    message,
                    done,
                    submitted,
                    deadline: submitted + self.lifetime,
                    entry: None,
                    long,
                    out: !long,
                },
            );
        }
        // The deadline thread outlives the sender, so this cannot fail.
        let _ = deadlines.send((submitted + self.lifetime, id));
        if long {
            let going = shared.fair.hold(id, address);
            if going.is_empty() {
                // Held: a worker that arrived since the last look may have
                // room for it.
                shared.nudge_monitor();
            }
            return shared.release(going);
        }
        match caller {
            Caller::Blocking => self.add_here(id),
            Caller::NonBlocking => shared.send(Outgoing::Add(id)),
        }
    }

    /// `client` has gone: its jobs are answered `cancelled` now (a worker's
    /// later answer is dropped as late); those in the stream are deleted
    /// there by the outbox thread, so that no worker that reads the stream
    /// later runs them, and a worker that already runs one stops it at its
    /// next lease renewal. Long jobs still waiting here never go.
    pub(crate) fn withdraw(&self, client: &super::client::Client) {
        let shared = &self.shared;
        let taken = shared.take_client(client);
        let entries: Vec<String> = taken.iter().filter_map(|job| job.entry.clone()).collect();
        for job in taken {
            let waited = job.submitted.elapsed();
            let kind = job.message.job;
            job.done.complete(
                Err(ApplyError::Cancelled { job: kind }),
                Timing {
                    queue_wait: None,
                    run: Some(waited),
                },
            );
        }
        if !entries.is_empty() {
            shared.send(Outgoing::Withdraw(entries));
        }
    }

    /// `XADD`s job `id` on a connection from the pool (opening one if none
    /// is free); on failure the job is new, so it is `unavailable` at once.
    fn add_here(&self, id: u64) {
        let shared = &self.shared;
        let Some(message) = shared.in_flight().get(&id).map(|job| job.message.clone()) else {
            return;
        };
        let messages = std::slice::from_ref(&message);
        let generation = shared.broker.generation();
        let pooled = {
            let mut pool = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            // Opened before the primary changed: all of them go.
            if pool.last().is_some_and(|(_, opened)| *opened != generation) {
                pool.clear();
            }
            pool.pop().map(|(conn, _)| conn)
        };
        // A pooled connection may have died with a broker restart since it
        // was last used: then every pooled one has, so they all go, and the
        // job gets one more try on a fresh connection before it fails.
        let added = match pooled {
            Some(mut conn) => match outbox::add(&mut conn, &shared.broker, messages) {
                Ok(entries) => Ok((conn, entries)),
                Err(_) => {
                    self.connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                    outbox::add_fresh(&shared.broker, messages)
                }
            },
            None => outbox::add_fresh(&shared.broker, messages),
        };
        match added {
            Ok((conn, entries)) => {
                outbox::note_entries(shared, messages, entries);
                let mut pool = self.connections.lock().unwrap_or_else(|p| p.into_inner());
                if pool.len() < POOLED {
                    pool.push((conn, generation));
                }
            }
            Err(err) => {
                let reason = shared.went_down(&err, "could not hand a job to the broker");
                shared.complete(id, |job, _| Err(ApplyError::Unavailable { job, reason }));
            }
        }
    }

    /// New jobs are refused, and every job in flight is answered
    /// `shutting-down` now (a worker's later answer is dropped).
    pub(crate) fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let all: Vec<InFlight> = self
            .shared
            .in_flight()
            .drain()
            .map(|(_, job)| job)
            .collect();
        for job in all {
            let job_id = job.message.job;
            job.done.complete(
                Err(ApplyError::ShuttingDown { job: job_id }),
                Timing::default(),
            );
        }
    }

    /// A reader of [`snapshot_of`] this strategy that another thread may
    /// keep (the metrics endpoint), even past the strategy.
    pub(crate) fn view(&self) -> RemoteView {
        let shared = Arc::clone(&self.shared);
        RemoteView(Arc::new(move || snapshot_of(&shared)))
    }
}

/// The broker's side as last read, with this server's own counters.
fn snapshot_of(shared: &Shared) -> RemoteSnapshot {
    let mut seen = shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    seen.broker = shared.broker.shown().to_owned();
    seen.primary = shared.broker.primary();
    seen.failovers = shared.broker.failovers();
    seen.connected = shared.up.load(Ordering::Acquire);
    seen.in_flight = shared.in_flight().len();
    seen.late_replies = shared.late_replies.load(Ordering::Relaxed);
    seen.forged_replies = shared.forged_replies.load(Ordering::Relaxed);
    seen.resubmitted = shared.resubmitted.load(Ordering::Relaxed);
    seen.clock_offset_ms = shared.broker.clock().offset_ms();
    seen.withdrawn = shared.withdrawn.load(Ordering::Relaxed);
    seen.abandoned = shared.abandoned.load(Ordering::Relaxed);
    seen.held = shared.fair.held();
    seen
}

/// Reads a `remote` strategy's [`RemoteSnapshot`] from any thread.
#[derive(Clone)]
pub(crate) struct RemoteView(Arc<dyn Fn() -> RemoteSnapshot + Send + Sync>);

impl RemoteView {
    /// The broker's side now (as the monitor last read it).
    pub(crate) fn snapshot(&self) -> RemoteSnapshot {
        (self.0)()
    }
}

impl std::fmt::Debug for RemoteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteView")
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        *self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.deadlines = None;
        *self
            .shared
            .monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // Jobs still in flight are dropped with the table: each `Done`
        // reports `shutting-down` as it goes.
    }
}

/// `duration` in whole milliseconds, saturating.
pub(super) fn as_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A name for this server's reply list, unique among servers sharing a
/// broker: the host, the pid and the start time.
fn server_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use crate::{ApplyError, Job, Strategy, StrategyConfig, StrategyKind};
    use std::time::{Duration, Instant};

    fn config(broker: Option<&str>) -> StrategyConfig {
        StrategyConfig {
            broker: broker.map(crate::broker::BrokerConfig::new),
            ..StrategyConfig::new(StrategyKind::Remote)
        }
    }

    /// With no broker listening, the strategy still starts, and every job is
    /// refused `Unavailable` at once, naming the broker.
    #[test]
    fn unreachable_broker_is_unavailable_at_once() {
        // Port 1 on loopback: nothing listens there, connections are refused.
        let strategy =
            Strategy::start(&config(Some("redis://:hunter2@127.0.0.1:1"))).expect("starts");
        for _ in 0..3 {
            let started = Instant::now();
            let result = strategy.apply(Job::Sumn(10));
            assert!(started.elapsed() < Duration::from_millis(100));
            match result {
                Err(ApplyError::Unavailable { reason, .. }) => {
                    assert!(reason.contains("redis://:***@127.0.0.1:1"), "{reason}");
                    assert!(!reason.contains("hunter2"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        let remote = strategy.stats().remote.expect("remote stats");
        assert!(!remote.connected);
        assert_eq!(remote.broker, "redis://:***@127.0.0.1:1");
    }

    /// `remote` without a broker, or without a job timeout, does not start.
    #[test]
    fn needs_a_broker_and_a_deadline() {
        let err = Strategy::start(&config(None)).unwrap_err().to_string();
        assert!(err.contains("broker"), "{err}");
        let no_timeout = StrategyConfig {
            job_timeout: None,
            ..config(Some("redis://127.0.0.1:1"))
        };
        let err = Strategy::start(&no_timeout).unwrap_err().to_string();
        assert!(err.contains("job timeout"), "{err}");
        let err = Strategy::start(&config(Some("mysql://x")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"mysql://x\""), "{err}");
    }
}
