//! Counting outcomes: right, wrong, and errors by kind.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::outcome::{IoKind, Outcome};

/// The most distinct server error codes counted apart; further ones are
/// counted under `other`, so a server inventing codes cannot grow memory.
const MAX_CODES: usize = 32;

/// How many requests ended each way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests that ended, one way or another.
    pub sent: u64,
    /// Right answers.
    pub ok: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Requests that got no answer: refused by the server or failed.
    pub errors: u64,
    /// Of the errors, requests never sent because their thread's target
    /// could not be reached: they count in `sent` (as accounted for), not in
    /// the throughput.
    pub unsent: u64,
}

/// Errors by kind: I/O failures by [`IoKind`], server refusals by code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// I/O failures.
    pub io: BTreeMap<IoKind, u64>,
    /// `ERR <code>` replies, by code.
    pub server: BTreeMap<String, u64>,
}

/// The counts of a set of requests, with their errors by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// The totals.
    pub counts: Counts,
    /// The errors by kind; they add up to `counts.errors`.
    pub errors: ErrorCounts,
}

impl Tally {
    /// Counts one request.
    pub fn add(&mut self, outcome: &Outcome) {
        self.counts.sent += 1;
        match outcome {
            Outcome::Right => self.counts.ok += 1,
            Outcome::Wrong { .. } => self.counts.wrong += 1,
            Outcome::Refused { code } => {
                self.counts.errors += 1;
                let code = if self.errors.server.len() < MAX_CODES
                    || self.errors.server.contains_key(code)
                {
                    code.clone()
                } else {
                    "other".to_owned()
                };
                *self.errors.server.entry(code).or_default() += 1;
            }
            Outcome::Failed(failure) => {
                self.counts.errors += 1;
                *self.errors.io.entry(failure.kind).or_default() += 1;
            }
        }
    }

    /// Counts a request never sent, failed as `failure` says.
    pub fn add_unsent(&mut self, failure: &crate::outcome::Failure) {
        self.add(&Outcome::Failed(failure.clone()));
        self.counts.unsent += 1;
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.counts.sent += other.counts.sent;
        self.counts.unsent += other.counts.unsent;
        self.counts.ok += other.counts.ok;
        self.counts.wrong += other.counts.wrong;
        self.counts.errors += other.counts.errors;
        for (&kind, &n) in &other.errors.io {
            *self.errors.io.entry(kind).or_default() += n;
        }
        for (code, &n) in &other.errors.server {
            *self.errors.server.entry(code.clone()).or_default() += n;
        }
    }

    /// Whether every request was answered right.
    pub fn all_right(&self) -> bool {
        self.counts.ok == self.counts.sent
    }
}

impl fmt::Display for ErrorCounts {
    /// `3 connect, 2 ERR busy`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .io
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .chain(
                self.server
                    .iter()
                    .map(|(code, n)| format!("{n} ERR {code}")),
            )
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    /// Outcomes are counted by kind, merged, and add up.
    #[test]
    fn counts_add_up() {
        let mut a = Tally::default();
        a.add(&Outcome::Right);
        a.add(&Outcome::Wrong {
            reply: "42".into(),
            expected: "1".into(),
        });
        a.add(&Outcome::Refused {
            code: "busy".into(),
        });
        let mut b = Tally::default();
        b.add(&Outcome::Failed(Failure::timeout()));
        b.add(&Outcome::Refused {
            code: "busy".into(),
        });
        a.merge(&b);
        let c = &a.counts;
        assert_eq!((c.sent, c.ok, c.wrong, c.errors), (5, 1, 1, 3));
        assert_eq!(c.ok + c.wrong + c.errors, c.sent);
        assert_eq!(a.errors.to_string(), "1 timeout, 2 ERR busy");
        assert!(!a.all_right());
        assert_eq!(ErrorCounts::default().to_string(), "none");
    }

    /// A server inventing codes cannot grow the tally without bound.
    #[test]
    fn codes_bounded() {
        let mut tally = Tally::default();
        for i in 0..100 {
            tally.add(&Outcome::Refused {
                code: format!("code{i}"),
            });
        }
        assert_eq!(tally.errors.server.len(), MAX_CODES + 1);
        assert_eq!(tally.errors.server["other"], 100 - MAX_CODES as u64);
    }
}
