//! The requests the client can send, how each is written on the wire, and
//! how each answer is checked.
//!
//! A [`Job`] is written `sumn:25000`, `prime:1000003`, `sleep:100` or
//! `ping` on the command line. Every answer is verified by the client on its
//! own: `sumn` by the closed formula n(n+1)/2, `prime` by
//! [`crate::prime::is_prime`], `sleep` must answer `ok` and `ping` `pong`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The longest `sleep` the protocol allows, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// The largest n the seed dialect carries: it reads at most 16 digits.
pub const MAX_SEED_N: u64 = 9_999_999_999_999_999;

/// One request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// The sum 1 + 2 + … + n.
    Sumn(u64),
    /// Whether n is prime.
    Prime(u64),
    /// Wait this many milliseconds.
    Sleep(u64),
    /// `ping`: answered by the server's connection thread, never queued.
    Ping,
}

/// The kinds of job, for the figures reported per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// [`Job::Sumn`].
    Sumn,
    /// [`Job::Prime`].
    Prime,
    /// [`Job::Sleep`].
    Sleep,
    /// [`Job::Ping`].
    Ping,
}

/// The two dialects of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// The original's: a bare decimal n, answered by the bare sum, then
    /// the server closes. Only `sumn` can be sent this way.
    Seed,
    /// One request line, one reply line.
    Line,
}

/// What an answer says about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The answer is right.
    Right,
    /// The answer is wrong; `expected` is what it should have been.
    Wrong {
        /// The right answer.
        expected: String,
    },
    /// The server refused with `ERR <code> <detail>`.
    Refused {
        /// The code, such as `busy`, `timeout` or `worker-lost`.
        code: String,
    },
}

/// A job spec that could not be read; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    /// The name before the colon is not a job.
    #[error("unknown job {spec:?} (expected sumn:N, prime:N, sleep:MS or ping)")]
    UnknownKind {
        /// The spec as given.
        spec: String,
    },
    /// `sumn`, `prime` or `sleep` without `:N`.
    #[error("job {spec:?} needs a number, as in {kind}:{example}")]
    MissingArgument {
        /// The spec as given.
        spec: String,
        /// The job named.
        kind: JobKind,
        /// A valid number for the example.
        example: u64,
    },
    /// `ping` takes no argument.
    #[error("job {spec:?} takes no argument: write ping")]
    UnexpectedArgument {
        /// The spec as given.
        spec: String,
    },
    /// The number is not a whole number in range.
    #[error("job {spec:?} needs a whole number from 0 to {max}")]
    BadArgument {
        /// The spec as given.
        spec: String,
        /// The largest number allowed.
        max: u64,
    },
}

impl Job {
    /// The kind of this job.
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Sumn(_) => JobKind::Sumn,
            Job::Prime(_) => JobKind::Prime,
            Job::Sleep(_) => JobKind::Sleep,
            Job::Ping => JobKind::Ping,
        }
    }

    /// The request in the line dialect, without its `\n`: `sumn 25000`.
    pub fn line(&self) -> String {
        match self {
            Job::Sumn(n) => format!("sumn {n}"),
            Job::Prime(n) => format!("prime {n}"),
            Job::Sleep(ms) => format!("sleep {ms}"),
            Job::Ping => "ping".to_owned(),
        }
    }

    /// The request in the seed dialect (a bare decimal n), if the seed
    /// dialect can carry this job: only `sumn` can, and only up to
    /// [`MAX_SEED_N`] (16 digits).
    pub fn seed(&self) -> Option<String> {
        match *self {
            Job::Sumn(n) if n <= MAX_SEED_N => Some(n.to_string()),
            _ => None,
        }
    }

    /// The request exactly as sent in `dialect`, without a line's `\n`.
    pub fn request(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Seed => self.seed().unwrap_or_else(|| self.line()),
            Dialect::Line => self.line(),
        }
    }

    /// The right answer, as the server writes it.
    pub fn expected(&self) -> String {
        match *self {
            Job::Sumn(n) => (u128::from(n) * (u128::from(n) + 1) / 2).to_string(),
            Job::Prime(n) => crate::prime::is_prime(n).to_string(),
            Job::Sleep(_) => "ok".to_owned(),
            Job::Ping => "pong".to_owned(),
        }
    }

    /// Checks a reply (its terminator already removed; surrounding
    /// whitespace is ignored).
    ///
    /// # Examples
    ///
    /// ```
    /// use client::job::{Check, Job};
    /// assert_eq!(Job::Sumn(25000).check("312512500"), Check::Right);
    /// assert_eq!(Job::Ping.check("ERR busy too many connections"),
    ///            Check::Refused { code: "busy".into() });
    /// ```
    pub fn check(&self, reply: &str) -> Check {
        let reply = reply.trim();
        if let Some(rest) = reply.strip_prefix("ERR") {
            if rest.is_empty() || rest.starts_with(' ') {
                let code = rest.split_whitespace().next().unwrap_or("unknown");
                return Check::Refused {
                    code: code.to_owned(),
                };
            }
        }
        let expected = self.expected();
        if reply == expected {
            Check::Right
        } else {
            Check::Wrong { expected }
        }
    }
}

impl fmt::Display for Job {
    /// The job as written on the command line: `sumn:25000`, `ping`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Sumn(n) => write!(f, "sumn:{n}"),
            Job::Prime(n) => write!(f, "prime:{n}"),
            Job::Sleep(ms) => write!(f, "sleep:{ms}"),
            Job::Ping => f.write_str("ping"),
        }
    }
}

impl FromStr for Job {
    type Err = JobSpecError;

    /// Reads `sumn:N`, `prime:N`, `sleep:MS` or `ping` (names in any case).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match spec.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (spec, None),
        };
        let kind = match name.to_ascii_lowercase().as_str() {
            "sumn" => JobKind::Sumn,
            "prime" => JobKind::Prime,
            "sleep" => JobKind::Sleep,
            "ping" => JobKind::Ping,
            _ => {
                return Err(JobSpecError::UnknownKind {
                    spec: spec.to_owned(),
                })
            }
        };
        let number = |max: u64, example: u64| -> Result<u64, JobSpecError> {
            let arg = arg.ok_or_else(|| JobSpecError::MissingArgument {
                spec: spec.to_owned(),
                kind,
                example,
            })?;
            let bad = || JobSpecError::BadArgument {
                spec: spec.to_owned(),
                max,
            };
            if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            arg.parse().ok().filter(|&n| n <= max).ok_or_else(bad)
        };
        match kind {
            JobKind::Sumn => Ok(Job::Sumn(number(u64::MAX, 25_000)?)),
            JobKind::Prime => Ok(Job::Prime(number(u64::MAX, 1_000_003)?)),
            JobKind::Sleep => Ok(Job::Sleep(number(MAX_SLEEP_MS, 100)?)),
            JobKind::Ping if arg.is_some() => Err(JobSpecError::UnexpectedArgument {
                spec: spec.to_owned(),
            }),
            JobKind::Ping => Ok(Job::Ping),
        }
    }
}

impl fmt::Display for JobKind {
    /// The lowercase name: `sumn`, `prime`, `sleep`, `ping`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Sumn => "sumn",
            JobKind::Prime => "prime",
            JobKind::Sleep => "sleep",
            JobKind::Ping => "ping",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every job spec reads back as written; names are case-insensitive.
    #[test]
    fn specs_parse() {
        assert_eq!("sumn:25000".parse(), Ok(Job::Sumn(25_000)));
        assert_eq!("PRIME:1000003".parse(), Ok(Job::Prime(1_000_003)));
        assert_eq!("sleep:60000".parse(), Ok(Job::Sleep(60_000)));
        assert_eq!("ping".parse(), Ok(Job::Ping));
        assert_eq!("sumn:18446744073709551615".parse(), Ok(Job::Sumn(u64::MAX)));
        for job in [Job::Sumn(7), Job::Prime(9), Job::Sleep(5), Job::Ping] {
            assert_eq!(job.to_string().parse(), Ok(job));
        }
    }

    /// Bad specs are refused, and the message quotes the spec.
    #[test]
    fn bad_specs_quoted() {
        for bad in [
            "fib:3",
            "sumn",
            "sumn:",
            "sumn:-1",
            "sumn:+1",
            "sumn:1.5",
            "sumn:18446744073709551616",
            "sleep:60001",
            "ping:1",
            "",
        ] {
            let err = bad.parse::<Job>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// Requests are written as the protocol says; only sumn has a seed form.
    #[test]
    fn wire_forms() {
        assert_eq!(Job::Sumn(25_000).line(), "sumn 25000");
        assert_eq!(Job::Sumn(25_000).seed().as_deref(), Some("25000"));
        assert_eq!(
            Job::Sumn(MAX_SEED_N).seed().as_deref(),
            Some("9999999999999999")
        );
        assert_eq!(Job::Sumn(MAX_SEED_N + 1).seed(), None, "17 digits");
        assert_eq!(Job::Prime(7).line(), "prime 7");
        assert_eq!(Job::Prime(7).seed(), None);
        assert_eq!(Job::Sleep(10).line(), "sleep 10");
        assert_eq!(Job::Ping.line(), "ping");
    }

    /// Answers are checked against the formula and the client's own prime
    /// test; `ERR` replies yield their code.
    #[test]
    fn answers_checked() {
        assert_eq!(Job::Sumn(25_000).check("312512500\n"), Check::Right);
        assert_eq!(
            Job::Sumn(u64::MAX).check("170141183460469231722463931679029329920"),
            Check::Right
        );
        assert_eq!(
            Job::Sumn(25_000).check("42"),
            Check::Wrong {
                expected: "312512500".into()
            }
        );
        assert_eq!(Job::Prime(1_000_003).check("true"), Check::Right);
        assert_eq!(Job::Prime(1_000_001).check("false"), Check::Right);
        assert_eq!(Job::Sleep(1).check("ok"), Check::Right);
        assert_eq!(Job::Ping.check("pong"), Check::Right);
        assert!(matches!(Job::Ping.check("pongo"), Check::Wrong { .. }));
        assert!(matches!(Job::Ping.check("ERRATIC"), Check::Wrong { .. }));
        assert_eq!(
            Job::Sumn(1).check("ERR worker-lost worker 4242 died"),
            Check::Refused {
                code: "worker-lost".into()
            }
        );
        assert_eq!(
            Job::Sumn(1).check("ERR"),
            Check::Refused {
                code: "unknown".into()
            }
        );
    }
}
