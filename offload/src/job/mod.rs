//! Jobs: the CPU-heavy (or waiting) work a connection hands to a strategy.
//!
//! [`Job`] is a closed enum: every kind of work the server can do is listed
//! here, parsed here and run here. Jobs and their [`Answer`]s are serde types
//! because the `procs` strategy sends them to another process.

mod cancel;
mod prime;
mod sleep;
mod sumn;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use cancel::{Cancel, Stop, YIELD_EVERY};
pub use prime::is_prime;
pub use sleep::{sleep, MAX_SLEEP_MS};
pub use sumn::sumn;
#[doc(hidden)]
pub use sumn::sumn_with_yield_every;

/// One unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Job {
    /// The sum 1 + 2 + … + n, one addition per step (the original's work).
    Sumn(u64),
    /// Whether n is prime, by trial division.
    Prime(u64),
    /// Wait this many milliseconds without using the CPU (at most
    /// [`MAX_SLEEP_MS`]).
    Sleep(u64),
    /// Panics when run: proves that a panicking job harms only its caller.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    Panic,
}

/// The result of a job that ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The answer to [`Job::Sumn`].
    Sum(u128),
    /// The answer to [`Job::Prime`].
    Prime(bool),
    /// The answer to [`Job::Sleep`].
    Slept,
}

/// The kinds of job, for statistics and for parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// [`Job::Sumn`].
    Sumn,
    /// [`Job::Prime`].
    Prime,
    /// [`Job::Sleep`].
    Sleep,
    /// The fault-injection job.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    Panic,
}

/// The most characters of a bad input an error quotes: enough to recognise
/// it, and a reply to a line of a kilobyte is not another kilobyte.
pub const QUOTE_LIMIT: usize = 64;

/// `text`, cut to [`QUOTE_LIMIT`] characters, with `…` if it was longer.
fn cut(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A job that could not be built from its name and argument; the message
/// quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The name is not a job.
    #[error("unknown job {name:?} (expected sumn, prime or sleep)")]
    UnknownKind {
        /// The name as given, cut to [`QUOTE_LIMIT`] characters.
        name: String,
    },
    /// The argument is missing or not a whole number in range.
    #[error("{kind} needs a whole number from 0 to {max}, got {arg:?}")]
    BadArgument {
        /// The job it was meant for.
        kind: JobKind,
        /// The argument as given, cut to [`QUOTE_LIMIT`] characters.
        arg: String,
        /// The largest value accepted.
        max: u64,
    },
}

impl JobKind {
    /// Every kind that a user can ask for, in a fixed order.
    pub const ALL: [JobKind; 3] = [JobKind::Sumn, JobKind::Prime, JobKind::Sleep];

    /// The lowercase name used on the wire and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Sumn => "sumn",
            JobKind::Prime => "prime",
            JobKind::Sleep => "sleep",
            #[cfg(feature = "fault-injection")]
            JobKind::Panic => "panic",
        }
    }

    /// Looks a kind up by name, ignoring ASCII case.
    ///
    /// # Errors
    ///
    /// [`JobError::UnknownKind`] quoting `name`.
    pub fn from_name(name: &str) -> Result<JobKind, JobError> {
        // The hidden kind is reachable by name only when compiled in, so a
        // release server answers `panic 1` with `unknown command`.
        #[cfg(feature = "fault-injection")]
        let mut named = JobKind::ALL.into_iter().chain([JobKind::Panic]);
        #[cfg(not(feature = "fault-injection"))]
        let mut named = JobKind::ALL.into_iter();
        named
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| JobError::UnknownKind { name: cut(name) })
    }

    /// The largest argument this kind accepts.
    pub fn max_argument(self) -> u64 {
        match self {
            JobKind::Sleep => MAX_SLEEP_MS,
            _ => u64::MAX,
        }
    }

    /// Builds the job of this kind from its decimal argument.
    ///
    /// # Errors
    ///
    /// [`JobError::BadArgument`] when `arg` is not a plain decimal number from
    /// 0 to [`JobKind::max_argument`] (no sign, no spaces, no wrap-around).
    pub fn with_argument(self, arg: &str) -> Result<Job, JobError> {
        let bad = || JobError::BadArgument {
            kind: self,
            arg: cut(arg),
            max: self.max_argument(),
        };
        if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = arg.parse().map_err(|_| bad())?;
        if n > self.max_argument() {
            return Err(bad());
        }
        Ok(match self {
            JobKind::Sumn => Job::Sumn(n),
            JobKind::Prime => Job::Prime(n),
            JobKind::Sleep => Job::Sleep(n),
            #[cfg(feature = "fault-injection")]
            JobKind::Panic => Job::Panic,
        })
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Job {
    /// Builds a job from its name (any ASCII case) and decimal argument.
    ///
    /// # Errors
    ///
    /// [`JobError`] quoting the name or the argument that is wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use offload::job::Job;
    /// assert_eq!(Job::parse("SUMN", "25000"), Ok(Job::Sumn(25_000)));
    /// assert!(Job::parse("sumn", "-1").is_err());
    /// ```
    pub fn parse(name: &str, arg: &str) -> Result<Job, JobError> {
        JobKind::from_name(name)?.with_argument(arg)
    }

    /// What kind of job this is.
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Sumn(_) => JobKind::Sumn,
            Job::Prime(_) => JobKind::Prime,
            Job::Sleep(_) => JobKind::Sleep,
            #[cfg(feature = "fault-injection")]
            Job::Panic => JobKind::Panic,
        }
    }

    /// Runs the job on the calling thread, passing a yield point to `cancel`
    /// every [`YIELD_EVERY`] iterations.
    ///
    /// # Errors
    ///
    /// The [`Stop`] reason when `cancel` stopped the job.
    pub fn run(&self, cancel: &Cancel<'_>) -> Result<Answer, Stop> {
        match *self {
            Job::Sumn(n) => sumn(n, cancel).map(Answer::Sum),
            Job::Prime(n) => is_prime(n, cancel).map(Answer::Prime),
            Job::Sleep(ms) => sleep(ms, cancel).map(|()| Answer::Slept),
            #[cfg(feature = "fault-injection")]
            Job::Panic => panic!("the fault-injection job panicked, as asked"),
        }
    }
}

impl fmt::Display for Job {
    /// The job as a user types it: `sumn 25000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Sumn(n) | Job::Prime(n) | Job::Sleep(n) => write!(f, "{} {n}", self.kind()),
            #[cfg(feature = "fault-injection")]
            Job::Panic => f.write_str("panic"),
        }
    }
}

impl fmt::Display for Answer {
    /// The answer as the wire protocol writes it: a decimal sum, `true` or
    /// `false`, `ok`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Sum(total) => write!(f, "{total}"),
            Answer::Prime(is_prime) => write!(f, "{is_prime}"),
            Answer::Slept => f.write_str("ok"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are case-insensitive and the display form parses back.
    #[test]
    fn parse_and_display_round_trip() {
        for job in [Job::Sumn(0), Job::Prime(u64::MAX), Job::Sleep(MAX_SLEEP_MS)] {
            let text = job.to_string();
            let (name, arg) = text.split_once(' ').expect("two words");
            assert_eq!(Job::parse(name, arg), Ok(job));
            assert_eq!(Job::parse(&name.to_uppercase(), arg), Ok(job));
        }
    }

    /// A long bad input is quoted by its first characters only.
    #[test]
    fn long_inputs_are_quoted_cut() {
        let long = "9".repeat(1000);
        let message = Job::parse("sumn", &long).unwrap_err().to_string();
        assert!(
            message.contains(&format!("{}…", "9".repeat(QUOTE_LIMIT))),
            "{message}"
        );
        assert!(message.len() < 200, "{} bytes: {message}", message.len());
        let name = "é".repeat(100);
        let message = Job::parse(&name, "1").unwrap_err().to_string();
        assert!(
            message.contains(&format!("{}…", "é".repeat(QUOTE_LIMIT))),
            "{message}"
        );
    }

    /// Bad arguments are refused with a message that quotes them.
    #[test]
    fn bad_arguments_quote_the_input() {
        for arg in [
            "",
            "-1",
            "+1",
            "1.5",
            "18446744073709551616",
            " 1",
            "0x10",
            "١",
        ] {
            let err = Job::parse("sumn", arg).expect_err(arg);
            assert!(err.to_string().contains(&format!("{arg:?}")), "{err}");
        }
        let err = Job::parse("sleep", "60001").expect_err("over the cap");
        assert!(err.to_string().contains("60000"), "{err}");
        let err = Job::parse("fib", "3").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown job \"fib\" (expected sumn, prime or sleep)"
        );
    }

    /// Answers print as the wire protocol wants them.
    #[test]
    fn answers_display_for_the_wire() {
        assert_eq!(
            Job::Sumn(25_000).run(&Cancel::never()).unwrap().to_string(),
            "312512500"
        );
        assert_eq!(
            Job::Prime(7).run(&Cancel::never()).unwrap().to_string(),
            "true"
        );
        assert_eq!(
            Job::Sleep(0).run(&Cancel::never()).unwrap().to_string(),
            "ok"
        );
    }
}
