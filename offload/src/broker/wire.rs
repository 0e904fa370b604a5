//! What a job and its reply look like in Redis.
//!
//! A job is one entry of the jobs stream with four fields, all text:
//!
//! | field | example | meaning |
//! |---|---|---|
//! | `id` | `17` | the job's number, unique per server |
//! | `job` | `sumn 25000` | the job as a client types it |
//! | `reply` | `ysum:reply:5f3a-1234` | the list the answer goes to |
//! | `deadline` | `1764626400123` | Unix time in ms after which nobody waits for it |
//!
//! A reply is one string pushed on the reply list: `<id> ok <answer>` (the
//! answer as the wire protocol writes it) or `<id> err <code> <detail>`,
//! where the code is one of [`ReplyCode`].

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use crate::error::ApplyError;
use crate::job::{Answer, Job};

/// A reply or a stream entry that cannot be read; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field of a job entry is missing.
    #[error("job entry has no {field:?} field")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
    /// A field of a job entry holds something else than expected.
    #[error("job entry field {field:?} is {value:?}: {why}")]
    Bad {
        /// The field's name.
        field: &'static str,
        /// Its value, cut to 64 characters.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A reply string does not follow `<id> ok|err …`.
    #[error("malformed reply {text:?}")]
    BadReply {
        /// The reply, cut to 64 characters.
        text: String,
    },
}

fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// One job as it travels through the jobs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMessage {
    /// The job's number, unique per server (the reply names it).
    pub id: u64,
    /// The job.
    pub job: Job,
    /// The list the reply is pushed on.
    pub reply_to: String,
    /// Unix time in ms after which nobody waits for the answer.
    pub deadline_ms: u64,
}

/// The job as text that [`Job::parse`] reads back.
fn job_text(job: &Job) -> String {
    let text = job.to_string();
    // The fault-injection job prints without an argument.
    if text.contains(' ') {
        text
    } else {
        format!("{text} 0")
    }
}

impl JobMessage {
    /// The stream entry's fields, in order, for `XADD`.
    pub fn fields(&self) -> [(&'static str, String); 4] {
        [
            ("id", self.id.to_string()),
            ("job", job_text(&self.job)),
            ("reply", self.reply_to.clone()),
            ("deadline", self.deadline_ms.to_string()),
        ]
    }

    /// Reads a stream entry's fields back.
    ///
    /// # Errors
    ///
    /// [`WireError`] naming the missing or bad field.
    pub fn from_fields(fields: &HashMap<String, Value>) -> Result<JobMessage, WireError> {
        let text = |field: &'static str| -> Result<String, WireError> {
            match fields.get(field) {
                Some(value) => {
                    redis::from_redis_value::<String>(value.clone()).map_err(|err| WireError::Bad {
                        field,
                        value: format!("{value:?}"),
                        why: err.to_string(),
                    })
                }
                None => Err(WireError::Missing { field }),
            }
        };
        let number = |field: &'static str| -> Result<u64, WireError> {
            let value = text(field)?;
            value.parse().map_err(|_| WireError::Bad {
                field,
                value: cut(&value),
                why: "not a whole number".into(),
            })
        };
        let job_field = text("job")?;
        let (name, arg) = job_field.split_once(' ').unwrap_or((&job_field, ""));
        let job = Job::parse(name, arg).map_err(|err| WireError::Bad {
            field: "job",
            value: cut(&job_field),
            why: err.to_string(),
        })?;
        Ok(JobMessage {
            id: number("id")?,
            job,
            reply_to: text("reply")?,
            deadline_ms: number("deadline")?,
        })
    }
}

/// The error codes a worker can reply with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyCode {
    /// The job ran longer than the worker's job timeout.
    Timeout,
    /// The job was delivered [`MAX_DELIVERIES`](super::MAX_DELIVERIES)
    /// times and no worker finished it, or the worker's own process pool
    /// lost the process running it.
    WorkerLost,
    /// The job panicked on the worker.
    Panicked,
    /// Anything else that went wrong on the worker (its pool is down).
    Internal,
}

impl ReplyCode {
    /// The code as written in a reply.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyCode::Timeout => "timeout",
            ReplyCode::WorkerLost => "worker-lost",
            ReplyCode::Panicked => "panicked",
            ReplyCode::Internal => "internal",
        }
    }

    fn parse(text: &str) -> Option<ReplyCode> {
        [
            ReplyCode::Timeout,
            ReplyCode::WorkerLost,
            ReplyCode::Panicked,
            ReplyCode::Internal,
        ]
        .into_iter()
        .find(|code| code.as_str() == text)
    }

    /// The code for a job's local failure on a worker, or `None` when the
    /// job should not be answered at all but handed back (the worker is
    /// stopping, or its local queue refused the job).
    pub fn of(err: &ApplyError) -> Option<ReplyCode> {
        match err {
            ApplyError::Timeout { .. } => Some(ReplyCode::Timeout),
            ApplyError::WorkerLost { .. } | ApplyError::RemoteWorkerLost { .. } => {
                Some(ReplyCode::WorkerLost)
            }
            ApplyError::JobPanicked { .. } => Some(ReplyCode::Panicked),
            ApplyError::PoolDown { .. } | ApplyError::Unavailable { .. } => {
                Some(ReplyCode::Internal)
            }
            ApplyError::Busy { .. } | ApplyError::ShuttingDown { .. } => None,
        }
    }
}

/// Writes the reply string for job `id`'s answer.
pub fn answer_reply(id: u64, answer: &Answer) -> String {
    format!("{id} ok {answer}")
}

/// Writes the reply string for job `id`'s failure.
pub fn error_reply(id: u64, code: ReplyCode, detail: &str) -> String {
    format!("{id} err {} {detail}", code.as_str())
}

/// A reply string, split but not yet matched to its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The job's number.
    pub id: u64,
    /// `ok` and the answer's text, or an error code and its detail.
    pub body: ReplyBody,
}

/// What a [`Reply`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// The answer as text.
    Answer(String),
    /// The job failed on the worker.
    Error {
        /// Why.
        code: ReplyCode,
        /// The worker's message.
        detail: String,
    },
}

impl Reply {
    /// Splits a reply string.
    ///
    /// # Errors
    ///
    /// [`WireError::BadReply`] quoting it.
    pub fn parse(text: &str) -> Result<Reply, WireError> {
        let bad = || WireError::BadReply { text: cut(text) };
        let (id, rest) = text.split_once(' ').ok_or_else(bad)?;
        let id = id.parse().map_err(|_| bad())?;
        let body = match rest.split_once(' ') {
            Some(("ok", answer)) => ReplyBody::Answer(answer.to_owned()),
            Some(("err", error)) => {
                let (code, detail) = error.split_once(' ').unwrap_or((error, ""));
                ReplyBody::Error {
                    code: ReplyCode::parse(code).ok_or_else(bad)?,
                    detail: detail.to_owned(),
                }
            }
            _ => return Err(bad()),
        };
        Ok(Reply { id, body })
    }

    /// What the reply means for `job`, which has waited `elapsed`.
    pub fn into_result(self, job: Job, elapsed: Duration) -> Result<Answer, ApplyError> {
        match self.body {
            ReplyBody::Answer(text) => parse_answer(job, &text).ok_or(ApplyError::PoolDown {
                job,
                reason: format!(
                    "a worker answered {:?}, which is no answer to it",
                    cut(&text)
                ),
            }),
            ReplyBody::Error { code, detail } => Err(match code {
                ReplyCode::Timeout => ApplyError::Timeout { job, elapsed },
                ReplyCode::WorkerLost => ApplyError::RemoteWorkerLost { job, detail },
                ReplyCode::Panicked => ApplyError::JobPanicked {
                    job,
                    message: detail,
                },
                ReplyCode::Internal => ApplyError::PoolDown {
                    job,
                    reason: format!("on a worker: {detail}"),
                },
            }),
        }
    }
}

/// Reads an answer written by [`Answer`]'s `Display` back, for `job`'s kind.
fn parse_answer(job: Job, text: &str) -> Option<Answer> {
    match job {
        Job::Sumn(_) => text.parse().ok().map(Answer::Sum),
        Job::Prime(_) => text.parse().ok().map(Answer::Prime),
        Job::Sleep(_) => (text == "ok").then_some(Answer::Slept),
        #[cfg(feature = "fault-injection")]
        Job::Panic => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> HashMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    /// A job message reads back from its own fields.
    #[test]
    fn job_messages_round_trip() {
        for job in [Job::Sumn(u64::MAX), Job::Prime(7), Job::Sleep(0)] {
            let message = JobMessage {
                id: 42,
                job,
                reply_to: "ysum:reply:x".into(),
                deadline_ms: 1_764_626_400_123,
            };
            let fields = message.fields();
            let map = entry(
                &fields
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(JobMessage::from_fields(&map), Ok(message));
        }
    }

    /// Bad entries name the field and quote the value.
    #[test]
    fn bad_entries_are_named() {
        let err = JobMessage::from_fields(&entry(&[("id", "1")])).unwrap_err();
        assert_eq!(err.to_string(), "job entry has no \"job\" field");
        let err = JobMessage::from_fields(&entry(&[
            ("id", "x"),
            ("job", "sumn 3"),
            ("reply", "r"),
            ("deadline", "1"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        let err = JobMessage::from_fields(&entry(&[("job", "fib 3")])).unwrap_err();
        assert!(err.to_string().contains("fib"), "{err}");
    }

    /// Replies read back into the results they stand for.
    #[test]
    fn replies_round_trip() {
        let elapsed = Duration::from_millis(3);
        let ok = Reply::parse(&answer_reply(7, &Answer::Sum(312_512_500))).unwrap();
        assert_eq!(ok.id, 7);
        assert_eq!(
            ok.into_result(Job::Sumn(25_000), elapsed),
            Ok(Answer::Sum(312_512_500))
        );
        let prime = Reply::parse("8 ok true").unwrap();
        assert_eq!(
            prime.into_result(Job::Prime(7), elapsed),
            Ok(Answer::Prime(true))
        );
        let lost = Reply::parse(&error_reply(9, ReplyCode::WorkerLost, "3 deliveries")).unwrap();
        assert_eq!(
            lost.into_result(Job::Sleep(1), elapsed),
            Err(ApplyError::RemoteWorkerLost {
                job: Job::Sleep(1),
                detail: "3 deliveries".into()
            })
        );
        let wrong = Reply::parse("9 ok maybe").unwrap();
        assert!(matches!(
            wrong.into_result(Job::Prime(7), elapsed),
            Err(ApplyError::PoolDown { .. })
        ));
        for bad in ["", "x ok 1", "1 maybe 2", "1 err nope x", "1"] {
            assert!(Reply::parse(bad).is_err(), "{bad:?}");
        }
    }
}
