//! Findings reported and not fixed yet. The checker still finds them; it
//! lists them apart, as known, so that the run fails only on something new.
//! Each entry matches its finding as narrowly as its evidence allows, and
//! names its section in docs/reliability.md ("A fault schedule on separate
//! hosts"). When the product is fixed, delete the entry: the checker then
//! fails on the finding again, which is the fix's regression test.

use crate::history::Request;
use crate::nemesis::Applied;
use crate::schedule::Kind;
use crate::timeline::{ms, DEADLINE};

/// A finding that was reported.
#[derive(Debug)]
pub(crate) struct Known {
    /// Its number in docs/reliability.md.
    pub(crate) id: &'static str,
    /// What it is, in one line.
    pub(crate) title: &'static str,
    /// Whether `request` shows it, given the faults applied.
    pub(crate) shows: fn(&Request, &[Applied]) -> bool,
}

/// The reported findings still open.
pub(crate) const KNOWN: &[Known] = &[Known {
    id: "F1",
    title: "replies popped on a broken connection are lost: a job in flight while its server \
            was cut off from the broker is answered ERR timeout at its deadline, after the heal",
    shows: lost_in_a_server_partition,
}];

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

/// The known finding `request` shows, if any.
pub(crate) fn shown_by(request: &Request, faults: &[Applied]) -> Option<&'static Known> {
    KNOWN.iter().find(|known| (known.shows)(request, faults))
}
