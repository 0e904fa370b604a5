//! Findings reported and not fixed yet. The checker still finds them; it
//! lists them apart, as known, so that the run fails only on something new.
//! Each entry matches its finding as narrowly as its evidence allows, and
//! names its section in docs/reliability.md ("A fault schedule on separate
//! hosts"). When the product is fixed, delete the entry: the checker then
//! fails on the finding again, which is the fix's regression test.

use crate::history::Request;
use crate::nemesis::Applied;
use crate::observer::Sample;
use crate::schedule::Kind;
use crate::timeline::{ms, DEADLINE};

/// Whether a request shows a finding, given the faults applied.
type RequestShows = fn(&Request, &[Applied]) -> bool;

/// Whether a broker sample shows a finding, given when the primary it
/// names became the primary and the faults applied.
type SampleShows = fn(&Sample, f64, &[Applied]) -> bool;

/// A finding that was reported.
#[derive(Debug)]
pub(crate) struct Known {
    /// Its number in docs/reliability.md.
    pub(crate) id: &'static str,
    /// What it is, in one line.
    pub(crate) title: &'static str,
    /// Whether `request` shows it, given the faults applied.
    pub(crate) request: Option<RequestShows>,
    /// Whether a broker sample shows it, given when the primary last
    /// changed before it and the faults applied.
    pub(crate) sample: Option<SampleShows>,
}

/// The reported findings still open.
pub(crate) const KNOWN: &[Known] = &[
    Known {
        id: "F1",
        title: "replies popped on a broken connection are lost: a job in flight while its \
                server was cut off from the broker is answered ERR timeout at its deadline, \
                after the heal",
        request: Some(lost_in_a_server_partition),
        sample: None,
    },
    Known {
        id: "F2",
        title: "a node restarted with its append-only file is a primary until the sentinels \
                make it a replica, about ten seconds later; a failover meanwhile promotes it, \
                and the broker's state goes back to when it died",
        request: None,
        sample: Some(promoted_before_converted),
    },
];

/// How long after its restart a node may still be a primary the sentinels
/// have not converted yet (about ten seconds, seen), with some margin.
const NOT_CONVERTED_FOR: f64 = 15_000.0;

/// How long resurrected entries may take to be taken over, seen expired
/// and deleted after the failover that brought them back.
const RESURRECTED_FOR: f64 = 3_000.0;

/// F1: `ERR timeout` at the job's deadline, for a request in flight at some
/// moment of a partition between a server and the broker, when that
/// partition healed before the deadline.
fn lost_in_a_server_partition(request: &Request, faults: &[Applied]) -> bool {
    let at_deadline = request.done_ms - request.sent_ms >= ms(DEADLINE) - 100.0;
    let timeout = request
        .reply
        .as_deref()
        .is_some_and(|reply| reply.starts_with("ERR timeout"));
    timeout
        && at_deadline
        && faults.iter().any(|f| {
            f.fault.kind == Kind::PartitionServerBroker
                && f.refused.is_none()
                && request.sent_ms <= f.healed_ms
                && request.sent_ms + ms(DEADLINE) >= f.applied_ms
                && f.healed_ms < request.done_ms
        })
}

/// F2: a stale sample on a primary that became primary less than
/// [`RESURRECTED_FOR`] before it, when the nemesis had restarted that node
/// (killed as the primary, then started with its append-only file) less
/// than [`NOT_CONVERTED_FOR`] before the change.
fn promoted_before_converted(sample: &Sample, changed_at: f64, faults: &[Applied]) -> bool {
    let Some(primary) = sample.primary.as_deref() else {
        return false;
    };
    // Node rN listens on 10.213.47.(10 + N).
    let node = primary
        .split(':')
        .next()
        .and_then(|ip| ip.rsplit('.').next())
        .and_then(|octet| octet.parse::<u32>().ok())
        .map(|octet| format!("r{} ", octet.saturating_sub(10)));
    let Some(node) = node else { return false };
    sample.at_ms - changed_at <= RESURRECTED_FOR
        && faults.iter().any(|f| {
            matches!(f.fault.kind, Kind::KillPrimary | Kind::RestartBrokerAof)
                && f.refused.is_none()
                && f.detail.starts_with(&node)
                && f.healed_ms <= changed_at
                && changed_at - f.healed_ms <= NOT_CONVERTED_FOR
        })
}

/// The known finding `request` shows, if any.
pub(crate) fn shown_by(request: &Request, faults: &[Applied]) -> Option<&'static Known> {
    KNOWN
        .iter()
        .find(|known| known.request.is_some_and(|shows| shows(request, faults)))
}

/// The known finding a stale `sample` shows, if any; `changed_at` is when
/// the primary it names became the primary (as the samples saw it).
pub(crate) fn sample_shown_by(
    sample: &Sample,
    changed_at: f64,
    faults: &[Applied],
) -> Option<&'static Known> {
    KNOWN.iter().find(|known| {
        known
            .sample
            .is_some_and(|shows| shows(sample, changed_at, faults))
    })
}
