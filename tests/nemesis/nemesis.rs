//! The nemesis: walks the schedule on the run's timeline, applying each
//! fault and healing it after its time, and writes down when each really
//! happened and to what (which node was the primary it killed), for the
//! checker.
//!
//! Before each step it makes sure the fault lands on a whole system under
//! load: every process that should run does (one that exited by itself is
//! a finding, and is started again), the broker's replication is whole
//! (bounded wait), and a server's count of `ok` answers went up within the
//! last moment (the load is verified). Every wait and anything odd becomes
//! a note; notes marked as failures fail the run.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::netns::{Bed, Rule};
use crate::schedule::{Fault, Kind, Schedule, Target};
use crate::timeline::{ms, Clock};

/// How long to wait, before a step, for the broker to be whole (after a
/// failover the sentinels make the old primary a replica about ten seconds
/// later).
const WHOLE_WITHIN: Duration = Duration::from_secs(15);

/// How long to wait, before a step, for the load to show.
const LOAD_WITHIN: Duration = Duration::from_secs(3);

/// A fault as it was applied.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// Its step, from 1.
    pub(crate) step: usize,
    pub(crate) fault: Fault,
    /// When it was applied and healed, on the timeline.
    pub(crate) applied_ms: f64,
    pub(crate) healed_ms: f64,
    /// What it was applied to, as found then (the primary's node).
    pub(crate) detail: String,
    /// Why it could not be applied, if it could not (a failover the
    /// sentinels refused); such a fault counts for nothing.
    pub(crate) refused: Option<String>,
}

/// Something the nemesis saw.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    pub(crate) at_ms: f64,
    pub(crate) text: String,
    /// Whether it fails the run.
    pub(crate) failure: bool,
}

/// What the nemesis did and saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) faults: Vec<Applied>,
    pub(crate) notes: Vec<Note>,
    /// When each step's last heal happened.
    pub(crate) step_ends: Vec<f64>,
}

/// A fault in force, with what heals it.
enum Active {
    Rule(Rule),
    Paused(Target),
    Killed(Target),
    KilledNode(usize),
    Nothing,
    Shifted(usize),
}

/// Runs `schedule` against `cluster` on `bed`; steps that would start after
/// `stop_by` are skipped (noted). A step never starts sooner than the
/// schedule's quiet stretch after the last heal of the one before, even
/// when that one started late: the checker judges the recovery from each
/// step in that stretch, and a step that follows a late one at once would
/// leave none (seed 2028 once: a failover 3.5 s late, the next step 0.2 s
/// after its heal, its recovery then judged under the next step's faults).
pub(crate) fn run(
    schedule: &Schedule,
    cluster: &mut Cluster<'_>,
    bed: &Bed,
    clock: Clock,
    stop_by: Duration,
) -> Log {
    let mut log = Log::default();
    for (n, step) in schedule.steps.iter().enumerate() {
        let quiet_until = log
            .step_ends
            .last()
            .map_or(0.0, |&end| end + ms(schedule.quiet));
        let due = ms(step.at).max(quiet_until);
        sleep_until(
            clock,
            Duration::from_secs_f64((due / 1000.0 - 1.5).max(0.0)),
        );
        let on_broker = step.faults.iter().any(|f| f.kind.needs_replica());
        prepare(cluster, clock, &mut log, on_broker);
        let start = clock.now_ms().max(due);
        let span = step
            .faults
            .iter()
            .map(|f| f.after + f.lasts)
            .max()
            .unwrap_or_default();
        if start + ms(span) > ms(stop_by) {
            log.notes.push(Note {
                at_ms: clock.now_ms(),
                text: format!("step {} skipped: it would end after the load", n + 1),
                failure: false,
            });
            continue;
        }
        if start > ms(step.at) + 1000.0 {
            log.notes.push(Note {
                at_ms: start,
                text: format!(
                    "step {} starts {:.1} s late (waited for the system to be whole, or for \
                     the quiet stretch after a late step)",
                    n + 1,
                    (start - ms(step.at)) / 1000.0
                ),
                failure: false,
            });
        }
        // (time after the step's start, fault index, apply?)
        let mut events: Vec<(Duration, usize, bool)> = Vec::new();
        for (i, fault) in step.faults.iter().enumerate() {
            events.push((fault.after, i, true));
            events.push((fault.after + fault.lasts, i, false));
        }
        events.sort_by_key(|&(at, i, apply)| (at, !apply, i));
        let mut active: Vec<Option<Active>> = step.faults.iter().map(|_| None).collect();
        // Where each fault's record is in the log.
        let mut records: Vec<usize> = vec![0; step.faults.len()];
        for (at, i, apply) in events {
            let when = start + ms(at);
            sleep_until(clock, Duration::from_secs_f64(when.max(0.0) / 1000.0));
            let fault = &step.faults[i];
            if apply {
                let now = clock.now_ms();
                let (state, detail, refused) = match self::apply(fault, cluster, bed) {
                    Ok((state, detail)) => (Some(state), detail, None),
                    Err(why) => (None, String::new(), Some(why)),
                };
                active[i] = state;
                records[i] = log.faults.len();
                log.faults.push(Applied {
                    step: n + 1,
                    fault: fault.clone(),
                    applied_ms: now,
                    healed_ms: now,
                    detail,
                    refused,
                });
            } else {
                if let Some(state) = active[i].take() {
                    heal(state, cluster, bed);
                }
                log.faults[records[i]].healed_ms = clock.now_ms();
            }
        }
        log.step_ends.push(clock.now_ms());
    }
    log
}

/// Makes sure the system is whole and loaded before a step: with
/// `on_broker` (the step kills the primary or fails over), a replica in
/// sync is needed too, else the sentinels agreeing on a primary is enough.
/// Not being whole in time is noted, not a failure: how soon Redis Sentinel
/// reconfigures a node is Redis' business.
fn prepare(cluster: &mut Cluster<'_>, clock: Clock, log: &mut Log, on_broker: bool) {
    for daemon in cluster.daemons() {
        if let Some(status) = daemon.exited() {
            log.notes.push(Note {
                at_ms: clock.now_ms(),
                text: format!(
                    "{} exited by itself ({status}), started again; its log ends:\n{}",
                    daemon.name,
                    daemon.log_tail(1500)
                ),
                failure: true,
            });
            daemon.start();
        }
    }
    let whole = |cluster: &Cluster<'_>| {
        if on_broker {
            cluster.broker_whole()
        } else {
            cluster.primary().is_some()
        }
    };
    let began = clock.now_ms();
    let mut ready = whole(cluster);
    while !ready && clock.now_ms() - began < ms(WHOLE_WITHIN) {
        std::thread::sleep(Duration::from_millis(100));
        ready = whole(cluster);
    }
    if !ready {
        log.notes.push(Note {
            at_ms: clock.now_ms(),
            text: format!(
                "the broker was not whole (a primary the sentinels agree on{}) within \
                 {WHOLE_WITHIN:?}",
                if on_broker {
                    ", with a replica in sync"
                } else {
                    ""
                }
            ),
            failure: false,
        });
    }
    let before = cluster.ok_counts();
    let began = clock.now_ms();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = cluster.ok_counts();
        let rose = before
            .iter()
            .zip(&now)
            .any(|(b, n)| matches!((b, n), (Some(b), Some(n)) if n > b));
        if rose {
            return;
        }
        if clock.now_ms() - began > ms(LOAD_WITHIN) {
            log.notes.push(Note {
                at_ms: clock.now_ms(),
                text: format!(
                    "no server answered a job within {LOAD_WITHIN:?} before a step (ok counts \
                     {before:?} then {now:?}): the load is not verified"
                ),
                failure: true,
            });
            return;
        }
    }
}

fn sleep_until(clock: Clock, at: Duration) {
    let until = clock.instant(at);
    let now = std::time::Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

/// Applies `fault`; what heals it, and what it was applied to.
fn apply(fault: &Fault, cluster: &mut Cluster<'_>, bed: &Bed) -> Result<(Active, String), String> {
    let broker_nodes = [cluster.node_addr(0), cluster.node_addr(1)];
    let direction = fault.direction.unwrap_or(crate::schedule::Direction::In);
    let host = fault.target.to_string();
    Ok(match (fault.kind, fault.target) {
        (Kind::PartitionWorkerBroker | Kind::PartitionServerBroker, _) => (
            Active::Rule(bed.partition(&host, direction, &broker_nodes)),
            format!("{host} from r1 and r2"),
        ),
        (Kind::PartitionServerClients, _) => (
            Active::Rule(bed.partition(&host, direction, &[bed.host("lb").addr])),
            format!("{host} from lb"),
        ),
        (Kind::PauseWorker, Target::Worker(i)) => {
            cluster.workers[i].pause();
            (Active::Paused(fault.target), host)
        }
        (Kind::PauseServer, Target::Server(i)) => {
            cluster.servers[i].pause();
            (Active::Paused(fault.target), host)
        }
        (Kind::KillWorker, Target::Worker(i)) => {
            cluster.workers[i].kill();
            (Active::Killed(fault.target), host)
        }
        (Kind::KillServer, Target::Server(i)) => {
            cluster.servers[i].kill();
            (Active::Killed(fault.target), host)
        }
        (Kind::KillHaproxy, _) => {
            cluster.haproxy.kill();
            (Active::Killed(Target::Haproxy), host)
        }
        (Kind::KillPrimary | Kind::RestartBrokerEmpty | Kind::RestartBrokerAof, _) => {
            let node = cluster
                .primary()
                .ok_or("the sentinels named no primary they agree on")?;
            cluster.nodes[node].kill();
            if fault.kind == Kind::RestartBrokerEmpty {
                cluster.wipe_node(node);
            }
            (
                Active::KilledNode(node),
                format!("r{} (the primary)", node + 1),
            )
        }
        (Kind::Failover, _) => {
            let before = cluster.primary();
            // The sentinels refuse while a replica is still syncing: try for
            // a second.
            let mut result = cluster.failover();
            for _ in 0..10 {
                if result.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                result = cluster.failover();
            }
            result?;
            let from = before.map_or("?".to_owned(), |n| format!("r{}", n + 1));
            (Active::Nothing, format!("from {from}"))
        }
        (Kind::ClockShift, Target::Worker(i)) => {
            cluster.workers[i].terminate(Duration::from_secs(3));
            let argv = cluster.worker_argv(i, fault.shift_s);
            cluster.workers[i].set_argv(argv);
            cluster.workers[i].start();
            (Active::Shifted(i), format!("{host} {:+} s", fault.shift_s))
        }
        (kind, target) => return Err(format!("{} cannot apply to {target}", kind.name())),
    })
}

/// Heals a fault.
fn heal(active: Active, cluster: &mut Cluster<'_>, bed: &Bed) {
    match active {
        Active::Rule(rule) => bed.heal(rule),
        Active::Paused(Target::Worker(i)) => cluster.workers[i].resume(),
        Active::Paused(Target::Server(i)) => cluster.servers[i].resume(),
        Active::Killed(Target::Worker(i)) => cluster.workers[i].start(),
        Active::Killed(Target::Server(i)) => cluster.servers[i].start(),
        Active::Killed(Target::Haproxy) => cluster.haproxy.start(),
        Active::KilledNode(node) => cluster.restart_node(node),
        Active::Shifted(i) => {
            cluster.workers[i].terminate(Duration::from_secs(3));
            let argv = cluster.worker_argv(i, 0);
            cluster.workers[i].set_argv(argv);
            cluster.workers[i].start();
        }
        Active::Paused(_) | Active::Killed(_) | Active::Nothing => {}
    }
}
