//! Findings reported and not fixed yet. The checker still finds them; it
//! lists them apart, as known, so that the run fails only on something new.
//! Each entry matches its finding as narrowly as its evidence allows, and
//! names its section in docs/reliability.md ("A fault schedule on separate
//! hosts"). When the product is fixed, delete the entry: the checker then
//! fails on the finding again, which is the fix's regression test.

use crate::history::Request;
use crate::nemesis::Applied;
use crate::observer::Sample;

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

/// The reported findings still open: none. F1 (replies lost with a broken
/// connection) and F2 (a restarted node promoted with old data) were fixed;
/// their shapes now fail the run (`checker_tests.rs`).
pub(crate) const KNOWN: &[Known] = &[];

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
