//! What one thread saw, and, once the threads' are merged, what the run
//! saw: counts and latency histograms per job kind and per target, connect
//! times, the warmup's counts, retries and their causes, extra replies, the
//! first wrong answer, addresses never reached.
//!
//! Memory stays bounded however long the run: a histogram per job kind
//! (HdrHistogram, microseconds, three significant digits, growing only with
//! the largest value seen), never a vector of samples.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::job::{Dialect, Job, JobKind};
use crate::outcome::{Failure, Outcome};
use crate::schedule::Slot;
use crate::tally::Tally;

/// Significant digits kept by every histogram.
pub const SIGFIG: u8 = 3;

/// What one thread, or the whole run, saw.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Counts and latencies per job kind (measured requests only).
    pub kinds: BTreeMap<JobKind, KindStats>,
    /// Counts and latencies per target address (measured requests only).
    pub targets: BTreeMap<SocketAddr, KindStats>,
    /// Requests sent again (`--retries`), warmup included.
    pub retries: Retries,
    /// Replies nobody asked for, warmup included.
    pub extra: ExtraReplies,
    /// Connect times in microseconds (measured requests only).
    pub connect: Histogram<u64>,
    /// Counts of the requests made during the warmup.
    pub warmup: Tally,
    /// The first wrong answer, warmup included.
    pub first_wrong: Option<WrongAnswer>,
    /// Addresses a thread gave up on because its first connect failed,
    /// with the reason.
    pub unreachable: BTreeMap<SocketAddr, String>,
    /// When the last measured request actually started, to tell whether an
    /// open loop kept to its schedule.
    pub last_start: Option<Instant>,
}

/// Requests sent again on a new connection, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retries {
    /// Attempts beyond the first, in all.
    pub total: u64,
    /// Attempts beyond the first, by what made the previous one fail:
    /// `connect refused`, `reset`, `closed`, `ERR shutting-down`.
    pub causes: BTreeMap<String, u64>,
}

/// Replies that came without a request, seen at connections' ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraReplies {
    /// How many.
    pub count: u64,
    /// The first one: the server that sent it and the reply.
    pub first: Option<(SocketAddr, String)>,
}

/// Counts and latencies of one kind of job (or one target).
#[derive(Debug, Clone)]
pub struct KindStats {
    /// How the requests ended.
    pub tally: Tally,
    /// Microseconds from each request's due time (its scheduled start in an
    /// open loop) to its reply; requests that got no reply are not in it.
    pub latency: Histogram<u64>,
    /// Microseconds from each request's actual start to its reply: the
    /// figure that hides a stall. Filled in open loops only (in a closed
    /// loop it equals `latency`).
    pub uncorrected: Histogram<u64>,
}

/// A wrong answer, with what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongAnswer {
    /// When it arrived, to find the first across threads.
    pub at: Instant,
    /// The server that gave it.
    pub addr: SocketAddr,
    /// The request exactly as sent.
    pub request: String,
    /// The dialect it was sent in.
    pub dialect: Dialect,
    /// The reply as received.
    pub reply: String,
    /// The right answer.
    pub expected: String,
}

/// One finished request, as the worker hands it to [`Stats::record`].
#[derive(Debug)]
pub struct Finished {
    /// What was asked.
    pub job: Job,
    /// How it was written.
    pub dialect: Dialect,
    /// Where it went.
    pub addr: SocketAddr,
    /// When it was due, and whether it is measured.
    pub slot: Slot,
    /// When the thread actually started it.
    pub started: Instant,
    /// When it ended.
    pub done: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

/// An empty histogram in microseconds that grows as needed.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGFIG).expect("3 significant digits are valid");
    h.auto(true);
    h
}

/// Records `micros` in `h`, growing it as needed (auto-resizing goes up to
/// 2⁶² µs; beyond that, and only there, the value is clamped).
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    if h.record(micros).is_err() {
        h.saturating_record(micros);
    }
}

/// A duration in whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            kinds: BTreeMap::new(),
            targets: BTreeMap::new(),
            retries: Retries::default(),
            extra: ExtraReplies::default(),
            connect: histogram(),
            warmup: Tally::default(),
            first_wrong: None,
            unreachable: BTreeMap::new(),
            last_start: None,
        }
    }
}

impl Default for KindStats {
    /// No requests yet.
    fn default() -> Self {
        KindStats {
            tally: Tally::default(),
            latency: histogram(),
            uncorrected: histogram(),
        }
    }
}

impl Stats {
    /// Records one finished request; `open_loop` says whether to record its
    /// uncorrected latency too.
    pub fn record(&mut self, request: Finished, open_loop: bool) {
        if let Outcome::Wrong { reply, expected } = &request.outcome {
            if self.first_wrong.is_none() {
                self.first_wrong = Some(WrongAnswer {
                    at: request.done,
                    addr: request.addr,
                    request: request.job.request(request.dialect),
                    dialect: request.dialect,
                    reply: reply.clone(),
                    expected: expected.clone(),
                });
            }
        }
        if !request.slot.measured {
            self.warmup.add(&request.outcome);
            return;
        }
        self.last_start = self.last_start.max(Some(request.started));
        let due = request.slot.due.min(request.started);
        let corrected = micros(request.done.saturating_duration_since(due));
        let uncorrected = micros(request.done.saturating_duration_since(request.started));
        let answered = !matches!(request.outcome, Outcome::Failed(_));
        let kind = self.kinds.entry(request.job.kind()).or_default();
        let target = self.targets.entry(request.addr).or_default();
        for seen in [kind, target] {
            seen.tally.add(&request.outcome);
            if answered {
                record(&mut seen.latency, corrected);
                if open_loop {
                    record(&mut seen.uncorrected, uncorrected);
                }
            }
        }
    }

    /// Counts a measured request that was never sent because its thread's
    /// target could not be reached (`failure` says why).
    pub fn record_unsent(&mut self, job: Job, addr: SocketAddr, failure: &Failure) {
        self.kinds
            .entry(job.kind())
            .or_default()
            .tally
            .add_unsent(failure);
        self.targets
            .entry(addr)
            .or_default()
            .tally
            .add_unsent(failure);
    }

    /// Counts an attempt that failed for `cause` and is made again.
    pub fn record_retry(&mut self, cause: String) {
        self.retries.total += 1;
        *self.retries.causes.entry(cause).or_default() += 1;
    }

    /// Counts replies from `addr` that nobody asked for.
    pub fn record_extra(&mut self, addr: SocketAddr, extra: crate::wire::Extras) {
        self.extra.count += extra.count;
        if self.extra.first.is_none() {
            self.extra.first = extra.first.map(|reply| (addr, reply));
        }
    }

    /// Records a connect that succeeded, for a measured request.
    pub fn record_connect(&mut self, slot: Slot, took: Duration) {
        if slot.measured {
            record(&mut self.connect, micros(took));
        }
    }

    /// Adds another thread's stats to these.
    pub fn merge(&mut self, other: Stats) {
        for (kind, theirs) in other.kinds {
            self.kinds.entry(kind).or_default().merge(&theirs);
        }
        for (addr, theirs) in other.targets {
            self.targets.entry(addr).or_default().merge(&theirs);
        }
        self.retries.total += other.retries.total;
        for (cause, n) in other.retries.causes {
            *self.retries.causes.entry(cause).or_default() += n;
        }
        self.extra.count += other.extra.count;
        if self.extra.first.is_none() {
            self.extra.first = other.extra.first;
        }
        add(&mut self.connect, &other.connect);
        self.warmup.merge(&other.warmup);
        if let Some(theirs) = other.first_wrong {
            if self
                .first_wrong
                .as_ref()
                .is_none_or(|ours| theirs.at < ours.at)
            {
                self.first_wrong = Some(theirs);
            }
        }
        self.last_start = self.last_start.max(other.last_start);
        for (addr, reason) in other.unreachable {
            self.unreachable.entry(addr).or_insert(reason);
        }
    }

    /// The counts of every measured request, all kinds together.
    pub fn tally(&self) -> Tally {
        let mut all = Tally::default();
        for kind in self.kinds.values() {
            all.merge(&kind.tally);
        }
        all
    }

    /// The latencies of every measured request, all kinds together.
    pub fn latency(&self) -> Histogram<u64> {
        self.merged(|kind| &kind.latency)
    }

    /// The uncorrected latencies, all kinds together.
    pub fn uncorrected(&self) -> Histogram<u64> {
        self.merged(|kind| &kind.uncorrected)
    }

    fn merged(&self, pick: impl Fn(&KindStats) -> &Histogram<u64>) -> Histogram<u64> {
        let mut all = histogram();
        for kind in self.kinds.values() {
            add(&mut all, pick(kind));
        }
        all
    }
}

impl KindStats {
    /// Adds another set's counts and latencies to these.
    fn merge(&mut self, theirs: &KindStats) {
        self.tally.merge(&theirs.tally);
        add(&mut self.latency, &theirs.latency);
        add(&mut self.uncorrected, &theirs.uncorrected);
    }
}

/// Adds `from` into `into`; both grow as needed, so this cannot fail.
fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .expect("auto-resizing histograms of the same precision add");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    fn finished(
        job: Job,
        measured: bool,
        due_ms: u64,
        start_ms: u64,
        done_ms: u64,
        outcome: Outcome,
    ) -> Finished {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        Finished {
            job,
            dialect: Dialect::Line,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            slot: Slot {
                due: at(due_ms),
                measured,
            },
            started: at(start_ms),
            done: at(done_ms),
            outcome,
        }
    }

    /// Latency is measured from the due time, the uncorrected figure from
    /// the actual start; warmup and failures stay out of the histograms;
    /// merging keeps the earliest wrong answer.
    #[test]
    fn recorded_and_merged() {
        let mut a = Stats::default();
        a.record(
            finished(Job::Sumn(1), true, 0, 400, 500, Outcome::Right),
            true,
        );
        a.record(finished(Job::Sumn(1), false, 0, 0, 1, Outcome::Right), true);
        let failed = Outcome::Failed(Failure::timeout());
        a.record(finished(Job::Prime(7), true, 0, 0, 9, failed), true);
        let mut b = Stats::default();
        let wrong = Outcome::Wrong {
            reply: "42".into(),
            expected: "1".into(),
        };
        b.record(finished(Job::Sumn(1), true, 0, 0, 2, wrong), false);
        a.merge(b);

        let latency = a.latency();
        assert_eq!(latency.len(), 2);
        assert!(latency.max() >= 499_000, "{}", latency.max());
        let uncorrected = a.uncorrected();
        assert_eq!(uncorrected.len(), 1);
        assert!((99_000..=101_000).contains(&uncorrected.max()));
        let tally = a.tally();
        assert_eq!((tally.counts.sent, tally.counts.ok), (3, 1));
        assert_eq!(a.warmup.counts.sent, 1);
        assert_eq!(a.targets.len(), 1);
        let target = a.targets.values().next().expect("one target");
        assert_eq!(target.tally.counts.sent, 3);
        assert_eq!(target.latency.len(), 2);
        let wrong = a.first_wrong.expect("kept");
        assert_eq!(
            (wrong.request.as_str(), wrong.reply.as_str()),
            ("sumn 1", "42")
        );
    }
}
