//! The fault schedule: which faults, on what, when and for how long, as a
//! pure function of a seed (and the run's length), printed before the run
//! so that a failing run can be replayed with the same seed.
//!
//! A schedule is a list of steps. A step applies one fault, or two or three
//! at once on different components (a combination), heals each after its
//! own time, then leaves a quiet stretch under load before the next step, in
//! which the checker looks at the broker and the throughput. Kinds are dealt
//! from a shuffled deck holding each kind once, so every kind comes up as
//! often as the others; the short profile deals exactly one deck.

use std::fmt;
use std::time::Duration;

use crate::rng::Rng;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// nft drops a worker's packets to (or from) both Redis nodes.
    PartitionWorkerBroker,
    /// nft drops a server's packets to (or from) both Redis nodes.
    PartitionServerBroker,
    /// nft drops a server's packets to (or from) HAProxy, its only client.
    PartitionServerClients,
    /// SIGSTOP of a worker, longer than its lease; SIGCONT to heal.
    PauseWorker,
    /// SIGSTOP of a server; SIGCONT to heal.
    PauseServer,
    /// `kill -9` of a worker; started again (same name) to heal.
    KillWorker,
    /// `kill -9` of a server; started again to heal.
    KillServer,
    /// `kill -9` of HAProxy; started again to heal.
    KillHaproxy,
    /// `kill -9` of the broker's primary, long enough for the sentinels to
    /// promote the replica; the node is started again (with its
    /// append-only file) to heal, and the sentinels make it a replica.
    KillPrimary,
    /// `kill -9` of the primary, its data deleted, started again at once,
    /// empty (too soon for a failover).
    RestartBrokerEmpty,
    /// `kill -9` of the primary, started again at once with its
    /// append-only file.
    RestartBrokerAof,
    /// `SENTINEL FAILOVER ysum`: a planned switch.
    Failover,
    /// A worker restarted under libfaketime with its wall clock 20 s ahead
    /// or behind; restarted with the true clock to heal.
    ClockShift,
}

/// What a fault is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    /// Worker `w<i+1>`.
    Worker(usize),
    /// Server `a<i+1>`.
    Server(usize),
    /// HAProxy.
    Haproxy,
    /// Whichever Redis node is primary at the time, or the sentinels.
    Broker,
}

/// Which packets a partition drops, on the target's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Those arriving from the peers (the target still sends).
    In,
    /// Those leaving for the peers (the target still receives).
    Out,
}

/// One fault of a step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    pub(crate) kind: Kind,
    pub(crate) target: Target,
    /// For partitions.
    pub(crate) direction: Option<Direction>,
    /// For a clock shift: seconds added to the worker's wall clock.
    pub(crate) shift_s: i32,
    /// After the step's start.
    pub(crate) after: Duration,
    /// From its application to its heal.
    pub(crate) lasts: Duration,
}

/// Faults applied together, then a quiet stretch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// From time zero of the run (the load's start).
    pub(crate) at: Duration,
    pub(crate) faults: Vec<Fault>,
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) seed: u64,
    pub(crate) steps: Vec<Step>,
    /// When the load stops.
    pub(crate) end: Duration,
    /// Load without faults after each step's last heal, kept when a step
    /// starts late.
    pub(crate) quiet: Duration,
}

/// The shape of a schedule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    /// Load without faults before the first step (the baseline).
    pub(crate) warmup: Duration,
    /// Load without faults after each step's last heal.
    pub(crate) quiet: Duration,
    /// Chance of a second fault in a step, in percent.
    pub(crate) pair_percent: u64,
    /// Chance of a third, given a second.
    pub(crate) triple_percent: u64,
    /// Deal one deck (each kind once) and stop, whatever the length.
    pub(crate) one_deck: bool,
    /// Load beyond the schedule's end, for steps that start late.
    pub(crate) reserve: Duration,
}

/// `cargo test`: each kind once, about a minute.
pub(crate) const SHORT: Profile = Profile {
    warmup: Duration::from_secs(4),
    quiet: Duration::from_millis(3000),
    pair_percent: 45,
    triple_percent: 0,
    one_deck: true,
    reserve: Duration::from_secs(5),
};

/// `scripts/nemesis`: as many decks as fit in the duration.
pub(crate) const LONG: Profile = Profile {
    warmup: Duration::from_secs(5),
    quiet: Duration::from_millis(3000),
    pair_percent: 40,
    triple_percent: 25,
    one_deck: false,
    reserve: Duration::from_secs(15),
};

/// Workers and servers in the bed.
pub(crate) const WORKERS: usize = 3;
pub(crate) const SERVERS: usize = 2;

impl Kind {
    pub(crate) const ALL: [Kind; 13] = [
        Kind::PartitionWorkerBroker,
        Kind::PartitionServerBroker,
        Kind::PartitionServerClients,
        Kind::PauseWorker,
        Kind::PauseServer,
        Kind::KillWorker,
        Kind::KillServer,
        Kind::KillHaproxy,
        Kind::KillPrimary,
        Kind::RestartBrokerEmpty,
        Kind::RestartBrokerAof,
        Kind::Failover,
        Kind::ClockShift,
    ];

    /// The kind called `name` (as [`Kind::name`] writes it).
    pub(crate) fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its name in the schedule and the summary.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::PartitionWorkerBroker => "partition-worker-broker",
            Kind::PartitionServerBroker => "partition-server-broker",
            Kind::PartitionServerClients => "partition-server-clients",
            Kind::PauseWorker => "pause-worker",
            Kind::PauseServer => "pause-server",
            Kind::KillWorker => "kill-worker",
            Kind::KillServer => "kill-server",
            Kind::KillHaproxy => "kill-haproxy",
            Kind::KillPrimary => "kill-primary",
            Kind::RestartBrokerEmpty => "restart-broker-empty",
            Kind::RestartBrokerAof => "restart-broker-aof",
            Kind::Failover => "failover",
            Kind::ClockShift => "clock-shift",
        }
    }

    /// How long it lasts, in ms (from, to). Pauses outlast the workers'
    /// 1 s lease; a killed primary stays down past the sentinels' election
    /// (≈ 2.2 s); a restarted broker comes back before the sentinels'
    /// 1 s `down-after`; a failover's window is the switch.
    fn millis(self) -> (u64, u64) {
        match self {
            Kind::PartitionWorkerBroker
            | Kind::PartitionServerBroker
            | Kind::PartitionServerClients => (2000, 4500),
            Kind::PauseWorker => (1500, 3500),
            Kind::PauseServer => (1500, 3000),
            Kind::KillWorker | Kind::KillServer => (500, 3000),
            Kind::KillHaproxy => (300, 1500),
            Kind::KillPrimary => (3000, 5000),
            Kind::RestartBrokerEmpty | Kind::RestartBrokerAof => (100, 500),
            Kind::Failover => (2500, 2500),
            Kind::ClockShift => (3000, 6000),
        }
    }

    /// Whether it takes a worker out of service for a while (for the
    /// plausibility of `timeout` and `worker-lost`).
    pub(crate) fn disrupts_worker(self) -> bool {
        matches!(
            self,
            Kind::PartitionWorkerBroker | Kind::PauseWorker | Kind::KillWorker | Kind::ClockShift
        )
    }

    /// Whether it keeps a server from HAProxy (for I/O failures at the
    /// client, when both are kept away at once).
    pub(crate) fn removes_server(self) -> bool {
        matches!(
            self,
            Kind::PartitionServerClients | Kind::PauseServer | Kind::KillServer
        )
    }

    /// Whether it takes the broker away from a server (for `unavailable`).
    pub(crate) fn disrupts_broker(self) -> bool {
        matches!(
            self,
            Kind::PartitionServerBroker
                | Kind::KillPrimary
                | Kind::RestartBrokerEmpty
                | Kind::RestartBrokerAof
        )
    }

    /// Whether it needs a replica in sync to mean what it says (a killed
    /// primary is to be failed over; a planned failover needs a replica).
    pub(crate) fn needs_replica(self) -> bool {
        matches!(self, Kind::KillPrimary | Kind::Failover)
    }

    fn is_partition(self) -> bool {
        matches!(
            self,
            Kind::PartitionWorkerBroker
                | Kind::PartitionServerBroker
                | Kind::PartitionServerClients
        )
    }
}

/// Picks a target for `kind` that no fault of the step has taken yet.
fn target_for(kind: Kind, taken: &[Target], rng: &mut Rng) -> Option<Target> {
    let free = |t: &Target| !taken.contains(t);
    let choose = |candidates: Vec<Target>, rng: &mut Rng| -> Option<Target> {
        let free: Vec<Target> = candidates.into_iter().filter(free).collect();
        (!free.is_empty()).then(|| free[rng.below(free.len() as u64) as usize])
    };
    match kind {
        Kind::PartitionWorkerBroker | Kind::PauseWorker | Kind::KillWorker | Kind::ClockShift => {
            choose((0..WORKERS).map(Target::Worker).collect(), rng)
        }
        Kind::PartitionServerBroker
        | Kind::PartitionServerClients
        | Kind::PauseServer
        | Kind::KillServer => choose((0..SERVERS).map(Target::Server).collect(), rng),
        Kind::KillHaproxy => choose(vec![Target::Haproxy], rng),
        Kind::KillPrimary | Kind::RestartBrokerEmpty | Kind::RestartBrokerAof | Kind::Failover => {
            choose(vec![Target::Broker], rng)
        }
    }
}

impl Schedule {
    /// The schedule of `seed` for a load of about `length` under `profile`.
    pub(crate) fn generate(seed: u64, length: Duration, profile: Profile) -> Schedule {
        Schedule::generate_of(seed, length, profile, &Kind::ALL)
    }

    /// [`Schedule::generate`] with only `kinds` in the deck (to replay one
    /// kind of fault many times while looking into a finding).
    pub(crate) fn generate_of(
        seed: u64,
        length: Duration,
        profile: Profile,
        kinds: &[Kind],
    ) -> Schedule {
        let mut rng = Rng::new(seed);
        let mut deck: Vec<Kind> = Vec::new();
        let mut decks = 0;
        let mut steps = Vec::new();
        let mut at = profile.warmup;
        loop {
            if deck.is_empty() {
                if profile.one_deck && decks == 1 {
                    break;
                }
                deck = kinds.to_vec();
                rng.shuffle(&mut deck);
                decks += 1;
            }
            let mut wanted = 1;
            if rng.chance(profile.pair_percent) {
                wanted = if rng.chance(profile.triple_percent) {
                    3
                } else {
                    2
                };
            }
            let mut faults: Vec<Fault> = Vec::new();
            let mut taken: Vec<Target> = Vec::new();
            // Right after a step on the broker, its replica may still be
            // syncing (the sentinels make an old primary a replica about
            // ten seconds after a failover): a fault that needs a replica
            // waits for a later step, if the deck has anything else.
            let after_broker = steps
                .last()
                .is_some_and(|s: &Step| s.faults.iter().any(|f| f.target == Target::Broker));
            let allowed = |kind: Kind, deck: &[Kind]| {
                !(after_broker && kind.needs_replica() && deck.iter().any(|k| !k.needs_replica()))
            };
            while faults.len() < wanted {
                let pick = deck.iter().enumerate().find_map(|(i, &kind)| {
                    (allowed(kind, &deck) && target_for(kind, &taken, &mut rng.clone()).is_some())
                        .then_some((i, kind))
                });
                let Some((index, kind)) = pick else { break };
                deck.remove(index);
                let target = target_for(kind, &taken, &mut rng).expect("checked above");
                taken.push(target);
                let after = if faults.is_empty() {
                    Duration::ZERO
                } else {
                    rng.millis((200, 1500))
                };
                faults.push(Fault {
                    kind,
                    target,
                    direction: kind.is_partition().then(|| {
                        if rng.chance(50) {
                            Direction::In
                        } else {
                            Direction::Out
                        }
                    }),
                    shift_s: if kind == Kind::ClockShift {
                        if rng.chance(50) {
                            20
                        } else {
                            -20
                        }
                    } else {
                        0
                    },
                    after,
                    lasts: rng.millis(kind.millis()),
                });
                if deck.is_empty() {
                    break;
                }
            }
            let span = faults
                .iter()
                .map(|f| f.after + f.lasts)
                .max()
                .unwrap_or_default();
            let next = at + span + profile.quiet;
            if !profile.one_deck && next > length {
                break;
            }
            steps.push(Step { at, faults });
            at = next;
        }
        Schedule {
            seed,
            steps,
            end: at,
            quiet: profile.quiet,
        }
    }

    /// How many faults in all.
    pub(crate) fn faults(&self) -> usize {
        self.steps.iter().map(|s| s.faults.len()).sum()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Worker(i) => write!(f, "w{}", i + 1),
            Target::Server(i) => write!(f, "a{}", i + 1),
            Target::Haproxy => f.write_str("lb"),
            Target::Broker => f.write_str("broker"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.target)?;
        match self.direction {
            Some(Direction::In) => f.write_str(" (drop incoming)")?,
            Some(Direction::Out) => f.write_str(" (drop outgoing)")?,
            None => {}
        }
        if self.shift_s != 0 {
            write!(f, " ({:+} s)", self.shift_s)?;
        }
        write!(f, " for {:.1} s", self.lasts.as_secs_f64())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nemesis schedule, seed {}: {} steps, {} faults, load from 0 to {:.1} s",
            self.seed,
            self.steps.len(),
            self.faults(),
            self.end.as_secs_f64()
        )?;
        for (n, step) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "  step {:>3} at {:>6.1} s:",
                n + 1,
                step.at.as_secs_f64()
            )?;
            for fault in &step.faults {
                writeln!(f, "      +{:.1} s  {fault}", fault.after.as_secs_f64())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed always gives the same schedule; another seed another one.
    #[test]
    fn a_pure_function_of_the_seed() {
        let a = Schedule::generate(42, Duration::from_secs(600), LONG);
        let b = Schedule::generate(42, Duration::from_secs(600), LONG);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), b.to_string());
        assert_ne!(a, Schedule::generate(43, Duration::from_secs(600), LONG));
    }

    /// The short profile applies every kind exactly once; no step touches
    /// one component twice; steps do not overlap and fit the run.
    #[test]
    fn short_covers_every_kind_once() {
        for seed in 0..50 {
            let schedule = Schedule::generate(seed, Duration::ZERO, SHORT);
            let mut kinds: Vec<Kind> = schedule
                .steps
                .iter()
                .flat_map(|s| s.faults.iter().map(|f| f.kind))
                .collect();
            kinds.sort();
            assert_eq!(kinds, Kind::ALL.to_vec(), "seed {seed}");
            let mut end = Duration::ZERO;
            for step in &schedule.steps {
                assert!(step.at >= end + SHORT.quiet || end.is_zero(), "seed {seed}");
                let mut targets: Vec<Target> = step.faults.iter().map(|f| f.target).collect();
                targets.sort();
                targets.dedup();
                assert_eq!(targets.len(), step.faults.len(), "seed {seed}: {step:?}");
                end = step.at + step.faults.iter().map(|f| f.after + f.lasts).max().unwrap();
            }
            assert!(schedule.end >= end + SHORT.quiet);
            assert!(
                schedule.end < Duration::from_secs(75),
                "seed {seed}: {schedule}"
            );
        }
    }

    /// Ten minutes hold well over a hundred faults, every kind many times.
    #[test]
    fn ten_minutes_hold_over_a_hundred_faults() {
        let schedule = Schedule::generate(1, Duration::from_secs(600), LONG);
        assert!(schedule.faults() >= 100, "{}", schedule.faults());
        assert!(schedule.end <= Duration::from_secs(600));
        for kind in Kind::ALL {
            let n = schedule
                .steps
                .iter()
                .flat_map(|s| &s.faults)
                .filter(|f| f.kind == kind)
                .count();
            assert!(n >= 6, "{}: {n}", kind.name());
        }
    }
}
