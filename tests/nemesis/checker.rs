//! The checker: judges a run from what the client recorded, what the
//! nemesis did and what the observer read on the broker. It trusts none of
//! the client's own verdicts: each answer is checked again here.
//!
//! - **Exactly one reply per request**: the history holds one line per
//!   request the client counted, `(thread, seq)` unique and without gaps;
//!   no reply came unasked (the client's `extra_replies`); no reply is the
//!   answer to the thread's previous request (a reply sent twice shifts
//!   every later one on its connection: the load's consecutive requests
//!   always have different answers); a request without any reply within the
//!   client's timeout is *lost*.
//! - **Every `ok` answer is right**: `sumn n` = n(n+1)/2 in `u128`, `prime
//!   n` by a deterministic Miller–Rabin, `sleep` → `ok`.
//! - **Every error is documented and plausible** for the faults active
//!   while the request was in flight (its first send to its end), each
//!   fault counting from its application to its heal plus a grace
//!   ([`crate::timeline`]): `unavailable` while the broker is away from a
//!   server (a partition between them, a killed or restarted primary);
//!   `timeout` while every worker is out at once; `worker-lost` across three
//!   worker faults; an I/O failure at the client (after its retries) while
//!   HAProxy is down or both servers are away from it. A planned failover,
//!   a worker's clock, a single worker or server fault excuse nothing.
//! - **After each step's last heal**, from [`RECOVERY`] on until the next
//!   step: no entry in the stream or the pending list older than
//!   [`STALE`], and ok answers back to half the baseline's rate within
//!   [`RECOVERY`].
//! - **No leak**, and nothing the nemesis noted as a failure (a process
//!   that exited by itself, a broker not whole, a load not verified).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{ClientReport, Request};
use crate::known::{self, Known};
use crate::nemesis::{Applied, Note};
use crate::observer::Sample;
pub(crate) use crate::prime::is_prime;
use crate::schedule::{Kind, Target, SERVERS, WORKERS};
use crate::timeline::{
    ms, BACK_SHARE, BROKER_GRACE, FRONT_GRACE, RECOVERY, STALE, WINDOW, WORKER_GRACE,
};

/// The error codes of `docs/protocol.md`.
pub(crate) const DOCUMENTED: [&str; 10] = [
    "bad-request",
    "too-long",
    "busy",
    "timeout",
    "worker-lost",
    "shutting-down",
    "pool-down",
    "unavailable",
    "cancelled",
    "internal",
];

/// The client's I/O failures that HAProxy being away explains.
const FRONT_FAILURES: [&str; 6] = [
    "closed",
    "reset",
    "connect refused",
    "connect",
    "read",
    "write",
];

/// How many examples a finding keeps.
const EXAMPLES: usize = 5;

/// Everything a run left.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    pub(crate) requests: Vec<Request>,
    pub(crate) report: ClientReport,
    pub(crate) faults: Vec<Applied>,
    pub(crate) notes: Vec<Note>,
    /// When each step's last heal happened.
    pub(crate) step_ends: Vec<f64>,
    pub(crate) samples: Vec<Sample>,
    /// Processes, namespaces or links left behind.
    pub(crate) leaks: Vec<String>,
    /// When the load ended (the client's last answer).
    pub(crate) load_end_ms: f64,
}

/// One kind of failure of the run, with its count and first examples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) what: String,
    pub(crate) count: usize,
    pub(crate) examples: Vec<String>,
    /// The reported finding it is ([`crate::known`]), if it is one: listed,
    /// but not failing the run.
    pub(crate) known: Option<&'static str>,
}

/// The checker's verdict.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) findings: Vec<Finding>,
    pub(crate) figures: Figures,
}

/// The figures of a run.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub(crate) requests: usize,
    pub(crate) ok: usize,
    pub(crate) wrong: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: usize,
    /// Errors by code (`ERR unavailable`) and I/O failures by kind.
    pub(crate) errors: BTreeMap<String, usize>,
    pub(crate) implausible: usize,
    /// Faults applied, and refused, by kind.
    pub(crate) faults: BTreeMap<&'static str, (usize, usize)>,
    /// By kind: the longest gap between two ok answers around each fault,
    /// in ms.
    pub(crate) unavailability: BTreeMap<&'static str, Vec<f64>>,
    /// After each step's last heal: ms until throughput was back (`None`:
    /// not within the time allowed).
    pub(crate) recovery: Vec<Option<f64>>,
    /// Baseline ok answers per [`WINDOW`].
    pub(crate) baseline: f64,
    /// The oldest entry seen in a quiet stretch, in ms.
    pub(crate) oldest_quiet_entry_ms: u64,
    /// The broker at the end: stream length and pending entries.
    pub(crate) final_broker: Option<(u64, u64)>,
    pub(crate) leaks: usize,
}

impl Verdict {
    /// True when nothing was found but known findings.
    pub(crate) fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.known.is_some())
    }

    /// The findings that fail the run.
    pub(crate) fn new_findings(&self) -> usize {
        self.findings.iter().filter(|f| f.known.is_none()).count()
    }
}

/// Closed intervals on the timeline, in ms.
type Spans = Vec<(f64, f64)>;

/// The windows in which each kind of trouble is plausible.
struct Windows {
    broker: Spans,
    front: Spans,
    all_workers: Spans,
    /// Each worker fault's window (for `worker-lost`).
    worker_faults: Spans,
}

impl Windows {
    fn of(faults: &[Applied]) -> Windows {
        let live: Vec<&Applied> = faults.iter().filter(|f| f.refused.is_none()).collect();
        let span =
            |f: &Applied, grace: std::time::Duration| (f.applied_ms, f.healed_ms + ms(grace));
        let broker = live
            .iter()
            .filter(|f| f.fault.kind.disrupts_broker())
            .map(|f| span(f, BROKER_GRACE))
            .collect();
        let mut front: Spans = live
            .iter()
            .filter(|f| f.fault.kind == Kind::KillHaproxy)
            .map(|f| span(f, FRONT_GRACE))
            .collect();
        let per_server: Vec<Spans> = (0..SERVERS)
            .map(|i| {
                live.iter()
                    .filter(|f| {
                        f.fault.kind.removes_server() && f.fault.target == Target::Server(i)
                    })
                    .map(|f| span(f, FRONT_GRACE))
                    .collect()
            })
            .collect();
        front.extend(intersect_all(&per_server));
        let worker_faults: Spans = live
            .iter()
            .filter(|f| f.fault.kind.disrupts_worker())
            .map(|f| span(f, WORKER_GRACE))
            .collect();
        let per_worker: Vec<Spans> = (0..WORKERS)
            .map(|i| {
                live.iter()
                    .filter(|f| {
                        f.fault.kind.disrupts_worker() && f.fault.target == Target::Worker(i)
                    })
                    .map(|f| span(f, WORKER_GRACE))
                    .collect()
            })
            .collect();
        Windows {
            broker,
            front,
            all_workers: intersect_all(&per_worker),
            worker_faults,
        }
    }
}

/// Whether `[a, b]` meets any span.
fn meets(spans: &Spans, (a, b): (f64, f64)) -> bool {
    spans.iter().any(|&(c, d)| a <= d && c <= b)
}

/// The times covered by every one of `sets` at once.
fn intersect_all(sets: &[Spans]) -> Spans {
    let mut common: Option<Spans> = None;
    for set in sets {
        common = Some(match common {
            None => set.clone(),
            Some(prev) => {
                let mut out = Vec::new();
                for &(a, b) in &prev {
                    for &(c, d) in set {
                        let (lo, hi) = (a.max(c), b.min(d));
                        if lo <= hi {
                            out.push((lo, hi));
                        }
                    }
                }
                out
            }
        });
    }
    common.unwrap_or_default()
}

/// Collects findings by what they are.
#[derive(Default)]
struct Findings(BTreeMap<String, Finding>);

impl Findings {
    fn add(&mut self, what: impl Into<String>, example: impl FnOnce() -> String) {
        self.add_as(None, what, example);
    }

    /// Adds a finding that is `known`'s, if it is one of them.
    fn add_as(
        &mut self,
        known: Option<&'static Known>,
        what: impl Into<String>,
        example: impl FnOnce() -> String,
    ) {
        let what = match known {
            Some(k) => format!("{} ({}): {}", k.id, k.title, what.into()),
            None => what.into(),
        };
        let entry = self.0.entry(what.clone()).or_insert_with(|| Finding {
            what,
            count: 0,
            examples: Vec::new(),
            known: known.map(|k| k.id),
        });
        entry.count += 1;
        if entry.examples.len() < EXAMPLES {
            entry.examples.push(example());
        }
    }
}

/// Judges a run.
pub(crate) fn check(evidence: &Evidence) -> Verdict {
    let mut findings = Findings::default();
    let mut figures = Figures {
        requests: evidence.requests.len(),
        leaks: evidence.leaks.len(),
        ..Figures::default()
    };
    let windows = Windows::of(&evidence.faults);
    exactly_once(evidence, &mut findings);
    judge_answers(evidence, &windows, &mut findings, &mut figures);
    after_heals(evidence, &mut findings, &mut figures);
    for note in evidence.notes.iter().filter(|n| n.failure) {
        findings.add("the nemesis saw a failure", || {
            format!("at {:.1} s: {}", note.at_ms / 1000.0, note.text)
        });
    }
    for leak in &evidence.leaks {
        findings.add("left behind", || leak.clone());
    }
    for applied in &evidence.faults {
        let entry = figures.faults.entry(applied.fault.kind.name()).or_default();
        if applied.refused.is_some() {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    unavailability(evidence, &mut figures);
    Verdict {
        findings: findings.0.into_values().collect(),
        figures,
    }
}

/// One record per counted request, `(thread, seq)` unique and gapless; no
/// reply unasked.
fn exactly_once(evidence: &Evidence, findings: &mut Findings) {
    let recorded = evidence.requests.len() as u64;
    if recorded != evidence.report.requests {
        findings.add("requests without exactly one record", || {
            format!(
                "the client counted {} requests, its history holds {recorded}",
                evidence.report.requests
            )
        });
    }
    let mut seqs: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for r in &evidence.requests {
        seqs.entry(r.thread).or_default().push(r.seq);
    }
    for (thread, mut seq) in seqs {
        seq.sort_unstable();
        if seq.iter().enumerate().any(|(i, &s)| s != i as u64) {
            findings.add("requests without exactly one record", || {
                format!("thread {thread}'s sequence numbers are not 0, 1, 2, …")
            });
        }
    }
    if evidence.report.extra_replies > 0 {
        for _ in 0..evidence.report.extra_replies {
            findings.add("duplicated reply", || {
                "the client saw a reply no request asked for at a connection's end".to_owned()
            });
        }
    }
}

/// The right answer to a request line, by the checker's own reckoning.
pub(crate) fn expected(request: &str) -> Option<String> {
    let mut words = request.split_whitespace();
    let (command, arg) = (words.next()?, words.next());
    let n = || arg?.parse::<u64>().ok();
    Some(match command {
        "sumn" => {
            let n = u128::from(n()?);
            (n * (n + 1) / 2).to_string()
        }
        "prime" => is_prime(n()?).to_string(),
        "sleep" => "ok".to_owned(),
        "ping" => "pong".to_owned(),
        _ => return None,
    })
}

/// Every answer right, every error documented and plausible.
fn judge_answers(
    evidence: &Evidence,
    windows: &Windows,
    findings: &mut Findings,
    figures: &mut Figures,
) {
    let mut by_thread: BTreeMap<u64, Vec<&Request>> = BTreeMap::new();
    for r in &evidence.requests {
        by_thread.entry(r.thread).or_default().push(r);
    }
    for requests in by_thread.values_mut() {
        requests.sort_by_key(|r| r.seq);
        let mut previous: Option<String> = None;
        for r in requests.iter() {
            let right = expected(&r.request);
            let life = (r.sent_ms, r.done_ms);
            let shown = || {
                format!(
                    "thread {} seq {}: {:?} sent at {:.3} s, ended at {:.3} s, attempts {:?}, reply {:?}, failure {:?}",
                    r.thread,
                    r.seq,
                    r.request,
                    r.sent_ms / 1000.0,
                    r.done_ms / 1000.0,
                    r.attempts,
                    r.reply,
                    r.failure
                )
            };
            match (&r.reply, &r.failure) {
                (Some(reply), _) if reply.starts_with("ERR") => {
                    let code = reply.split_whitespace().nth(1).unwrap_or("").to_owned();
                    *figures.errors.entry(format!("ERR {code}")).or_default() += 1;
                    if !DOCUMENTED.contains(&code.as_str()) {
                        findings.add(format!("undocumented error ERR {code}"), shown);
                    } else if !plausible_code(&code, life, windows) {
                        let known = known::shown_by(r, &evidence.faults);
                        if known.is_none() {
                            figures.implausible += 1;
                        }
                        findings.add_as(
                            known,
                            format!("ERR {code} while no fault explains it"),
                            shown,
                        );
                    }
                }
                (Some(reply), _) => {
                    if right.as_deref() == Some(reply.as_str()) {
                        figures.ok += 1;
                    } else if previous.is_some() && previous == Some(reply.clone()) {
                        figures.duplicated += 1;
                        findings.add("duplicated reply", || {
                            format!("{} (the answer to the thread's previous request)", shown())
                        });
                    } else {
                        figures.wrong += 1;
                        findings.add("wrong answer", || {
                            format!("{} (expected {:?})", shown(), right)
                        });
                    }
                }
                (None, Some(failure)) if failure == "timeout" => {
                    figures.lost += 1;
                    findings.add("lost reply (none within the client's timeout)", shown);
                }
                (None, Some(failure)) => {
                    *figures.errors.entry(failure.clone()).or_default() += 1;
                    if !(FRONT_FAILURES.contains(&failure.as_str()) && meets(&windows.front, life))
                    {
                        figures.implausible += 1;
                        findings.add(
                            format!("client failure '{failure}' while no fault explains it"),
                            shown,
                        );
                    }
                }
                (None, None) => findings.add("a record with neither reply nor failure", shown),
            }
            previous = right;
        }
    }
}

/// Whether an `ERR code` over a request's life is explained by the faults.
fn plausible_code(code: &str, life: (f64, f64), windows: &Windows) -> bool {
    match code {
        "unavailable" => meets(&windows.broker, life),
        "timeout" => meets(&windows.all_workers, life),
        "worker-lost" => {
            windows
                .worker_faults
                .iter()
                .filter(|&&span| meets(&vec![span], life))
                .count()
                >= 3
        }
        _ => false,
    }
}

/// Stale entries and the throughput after each step's last heal.
fn after_heals(evidence: &Evidence, findings: &mut Findings, figures: &mut Figures) {
    let oks: Vec<f64> = {
        let mut t: Vec<f64> = evidence
            .requests
            .iter()
            .filter(|r| matches!((&r.reply, expected(&r.request)), (Some(a), Some(b)) if *a == b))
            .map(|r| r.done_ms)
            .collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let count = |from: f64, to: f64| {
        let lo = oks.partition_point(|&t| t < from);
        let hi = oks.partition_point(|&t| t < to);
        hi - lo
    };
    // The baseline: from 1 s in (connections made) to just before the first
    // fault.
    let first_fault = evidence
        .faults
        .iter()
        .map(|f| f.applied_ms)
        .fold(evidence.load_end_ms, f64::min);
    let (from, to) = (1000.0, first_fault - 500.0);
    figures.baseline = if to > from {
        count(from, to) as f64 * ms(WINDOW) / (to - from)
    } else {
        0.0
    };
    let starts: Vec<f64> = {
        let mut steps: Vec<(usize, f64)> = evidence
            .faults
            .iter()
            .map(|f| (f.step, f.applied_ms))
            .collect();
        steps.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        steps.dedup_by_key(|s| s.0);
        steps.into_iter().map(|s| s.1).collect()
    };
    for (i, &end) in evidence.step_ends.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(evidence.load_end_ms);
        // Throughput.
        let mut back = None;
        let mut t = end;
        while t <= end + ms(RECOVERY) && t + ms(WINDOW) <= next.max(end + ms(RECOVERY)) {
            if count(t, t + ms(WINDOW)) as f64 >= BACK_SHARE * figures.baseline {
                back = Some(t - end);
                break;
            }
            t += 50.0;
        }
        figures.recovery.push(back);
        // Requests still held, after the time allowed, by a known finding.
        let held = |at: f64| {
            evidence.requests.iter().find_map(|r| {
                (r.sent_ms < at && r.done_ms > at)
                    .then(|| known::shown_by(r, &evidence.faults))
                    .flatten()
            })
        };
        if back.is_none() {
            let known = held(end + ms(RECOVERY));
            findings.add_as(known, "throughput not back in time after a heal", || {
                format!(
                    "step {}: healed at {:.1} s; ok answers per {} ms from then on: {:?} \
                     (baseline {:.1})",
                    i + 1,
                    end / 1000.0,
                    WINDOW.as_millis(),
                    (0..6)
                        .map(|k| count(
                            end + k as f64 * ms(WINDOW),
                            end + (k + 1) as f64 * ms(WINDOW)
                        ))
                        .collect::<Vec<_>>(),
                    figures.baseline
                )
            });
        }
        quiet_broker(
            evidence,
            (end + ms(RECOVERY), next),
            i + 1,
            findings,
            figures,
        );
    }
    let end = evidence.load_end_ms;
    quiet_broker(
        evidence,
        (end + ms(RECOVERY), f64::INFINITY),
        0,
        findings,
        figures,
    );
    figures.final_broker = evidence
        .samples
        .iter()
        .rev()
        .find(|s| s.reachable)
        .map(|s| (s.stream, s.pending));
}

/// The broker's samples in a quiet stretch: readable, nothing stale.
fn quiet_broker(
    evidence: &Evidence,
    (from, to): (f64, f64),
    step: usize,
    findings: &mut Findings,
    figures: &mut Figures,
) {
    let quiet: Vec<(usize, &Sample)> = evidence
        .samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.at_ms >= from && s.at_ms <= to)
        .collect();
    let after = if step == 0 {
        "the load's end".to_owned()
    } else {
        format!("step {step}'s last heal")
    };
    if !quiet.is_empty() && quiet.iter().all(|(_, s)| !s.reachable) {
        findings.add("the broker unreadable after a heal", || {
            format!(
                "no sample from {:.1} s to {:.1} s after {after} could read the primary ({:?})",
                from / 1000.0,
                to.min(1e12) / 1000.0,
                quiet.first().and_then(|(_, s)| s.primary.clone())
            )
        });
    }
    for &(index, s) in quiet.iter().filter(|(_, s)| s.reachable) {
        let oldest = s.oldest_entry_ms.max(s.oldest_pending_ms).unwrap_or(0);
        figures.oldest_quiet_entry_ms = figures.oldest_quiet_entry_ms.max(oldest);
        if oldest > STALE.as_millis() as u64 {
            let known = known::sample_shown_by(
                s,
                primary_since(&evidence.samples, index),
                &evidence.faults,
            );
            findings.add_as(known, "a stale entry after a heal", || {
                format!(
                    "at {:.1} s, after {after}: stream {} (oldest {:?} ms), pending {} \
                     (oldest {:?} ms) on {:?}",
                    s.at_ms / 1000.0,
                    s.stream,
                    s.oldest_entry_ms,
                    s.pending,
                    s.oldest_pending_ms,
                    s.primary
                )
            });
        }
    }
}

/// When the primary that `samples[index]` names became the primary, as the
/// samples before it saw (the first sample if it never changed).
fn primary_since(samples: &[Sample], index: usize) -> f64 {
    let primary = &samples[index].primary;
    samples[..index]
        .iter()
        .rev()
        .find(|s| s.primary.is_some() && s.primary != *primary)
        .map_or(samples[0].at_ms, |changed| changed.at_ms)
}

/// For each fault, the longest gap between two ok answers that meets its
/// window (application to heal plus 2 s).
fn unavailability(evidence: &Evidence, figures: &mut Figures) {
    let mut oks: Vec<f64> = evidence
        .requests
        .iter()
        .filter(|r| matches!((&r.reply, expected(&r.request)), (Some(a), Some(b)) if *a == b))
        .map(|r| r.done_ms)
        .collect();
    oks.sort_by(f64::total_cmp);
    for f in evidence.faults.iter().filter(|f| f.refused.is_none()) {
        let (from, to) = (f.applied_ms, f.healed_ms + 2000.0);
        let widest = oks
            .windows(2)
            .filter(|w| w[1] >= from && w[0] <= to)
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max);
        figures
            .unavailability
            .entry(f.fault.kind.name())
            .or_default()
            .push(widest);
    }
}

/// The median and the largest of `values`.
pub(crate) fn median_max(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    (v[v.len() / 2], v[v.len() - 1])
}

impl Verdict {
    /// The summary, for people.
    pub(crate) fn render(&self) -> String {
        let f = &self.figures;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "faults applied by kind (refused by the engines in parentheses):"
        );
        for (kind, (applied, refused)) in &f.faults {
            let refused = if *refused > 0 {
                format!(" ({refused})")
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {kind:<26} {applied}{refused}");
        }
        let total: usize = f.faults.values().map(|(a, _)| a).sum();
        let _ = writeln!(out, "  {:<26} {total}", "all");
        let _ = writeln!(
            out,
            "requests {}: ok {}, wrong {}, lost {}, duplicated {}, errors {} ({} implausible)",
            f.requests,
            f.ok,
            f.wrong,
            f.lost,
            f.duplicated,
            f.errors.values().sum::<usize>(),
            f.implausible
        );
        for (kind, n) in &f.errors {
            let _ = writeln!(out, "  {kind:<26} {n}");
        }
        let _ = writeln!(
            out,
            "unavailability (longest gap between ok answers, from a fault to 2 s after its heal), ms:"
        );
        for (kind, gaps) in &f.unavailability {
            let (median, worst) = median_max(gaps);
            let _ = writeln!(
                out,
                "  {kind:<26} median {median:>7.0}  worst {worst:>7.0}  ({} faults)",
                gaps.len()
            );
        }
        let back: Vec<f64> = f.recovery.iter().flatten().copied().collect();
        let (median, worst) = median_max(&back);
        let _ = writeln!(
            out,
            "throughput back after each step's last heal: median {median:.0} ms, worst {worst:.0} ms, \
             {} of {} steps late (baseline {:.1} ok per {} ms)",
            f.recovery.iter().filter(|r| r.is_none()).count(),
            f.recovery.len(),
            f.baseline,
            WINDOW.as_millis()
        );
        let _ = writeln!(
            out,
            "oldest entry in a quiet stretch: {} ms (stale above {} ms); broker at the end \
             (stream, pending): {:?}",
            f.oldest_quiet_entry_ms,
            STALE.as_millis(),
            f.final_broker
        );
        let _ = writeln!(out, "left behind: {}", f.leaks);
        if self.new_findings() == 0 {
            let _ = writeln!(out, "new findings: none");
        }
        for finding in &self.findings {
            let label = if finding.known.is_some() {
                "KNOWN (reported, not fixed yet)"
            } else {
                "FINDING"
            };
            let _ = writeln!(out, "{label}: {} ({} times)", finding.what, finding.count);
            for example in &finding.examples {
                let _ = writeln!(out, "    {example}");
            }
        }
        out
    }
}
