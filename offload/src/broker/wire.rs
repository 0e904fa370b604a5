//! What a job and its reply look like in Redis, in format [`FORMAT`].
//!
//! A job is one entry of the jobs stream with these fields, all text:
//!
//! | field | example | meaning |
//! |---|---|---|
//! | `v` | `2` | the format; an entry without it is format 1 |
//! | `id` | `17` | the job's number, unique per server |
//! | `job` | `sumn 25000` | the job as a client types it |
//! | `reply` | `ysum:reply:5f3a-1234` | the list the answer goes to |
//! | `deadline` | `1764626400123` | Unix time in ms after which nobody waits for it |
//! | `mac` | 64 hex digits | with `--broker-secret-file` only: HMAC-SHA256 of `id`, `job`, `reply`, `deadline` ([`Signer`]) |
//!
//! A reply is one string pushed on the reply list: `v2 <mac> <id> ok
//! <answer>` (the answer as the wire protocol writes it) or `v2 <mac> <id>
//! err <code> <detail>`, where the code is one of [`ReplyCode`] and the MAC
//! (`-` when nothing is signed) covers the reply list, the id, the job and
//! everything after the id. A format 1 job (written by a server before
//! format 2) is answered in format 1: `<id> ok <answer>`, unsigned.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use super::sign::{Signed, Signer};
use crate::error::ApplyError;
use crate::job::{Answer, Job};

/// The format this build writes.
pub const FORMAT: u32 = 2;

/// The oldest format this build reads: format 1 had neither `v` nor `mac`.
pub const OLDEST_FORMAT: u32 = 1;

/// A reply or a stream entry that cannot be read or trusted; the message
/// quotes it (never a key).
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
    /// A reply string does not follow `v2 <mac> <id> ok|err …`.
    #[error("malformed reply {text:?}")]
    BadReply {
        /// The reply, cut to 64 characters.
        text: String,
    },
    /// An entry in a format this build does not speak.
    #[error("job entry is in format {version}; this build speaks {OLDEST_FORMAT} to {FORMAT}")]
    Unsupported {
        /// The entry's format.
        version: u32,
    },
    /// Signing is on and the entry or reply carries no MAC.
    #[error("not signed, and --broker-secret-file asks for a signature")]
    Unsigned,
    /// Signing is on and the MAC is not one of the keys'.
    #[error("its signature does not match (forged, or signed with another key)")]
    BadMac,
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
    /// The format it was written in, which its reply follows.
    pub format: u32,
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
    /// A job in this build's format.
    pub fn new(id: u64, job: Job, reply_to: String, deadline_ms: u64) -> Self {
        JobMessage {
            id,
            job,
            reply_to,
            deadline_ms,
            format: FORMAT,
        }
    }

    /// The same job in `format` (one this build speaks, as
    /// [`Broker::new`](super::Broker::new) checks).
    #[must_use]
    pub fn in_format(self, format: u32) -> Self {
        JobMessage { format, ..self }
    }

    /// The stream entry's fields, in order, for `XADD`; signed when a
    /// signer is given.
    pub fn fields(&self, signer: Option<&Signer>) -> Vec<(&'static str, String)> {
        let id = self.id.to_string();
        let job = job_text(&self.job);
        let deadline = self.deadline_ms.to_string();
        let mac = signer.map(|signer| {
            signer.sign(
                Signed::Job,
                &[
                    id.as_bytes(),
                    job.as_bytes(),
                    self.reply_to.as_bytes(),
                    deadline.as_bytes(),
                ],
            )
        });
        // Format 1, written for workers that predate format 2, is exactly
        // what they read: neither `v` nor `mac`.
        if self.format < 2 {
            return vec![
                ("id", id),
                ("job", job),
                ("reply", self.reply_to.clone()),
                ("deadline", deadline),
            ];
        }
        let mut fields = vec![
            ("v", self.format.to_string()),
            ("id", id),
            ("job", job),
            ("reply", self.reply_to.clone()),
            ("deadline", deadline),
        ];
        fields.extend(mac.map(|mac| ("mac", mac)));
        fields
    }

    /// Reads a stream entry's fields back; with a signer, only an entry
    /// whose MAC it accepts.
    ///
    /// # Errors
    ///
    /// [`WireError`]: a format not spoken here, a missing or bad field, a
    /// missing or wrong MAC.
    pub fn from_fields(
        fields: &HashMap<String, Value>,
        signer: Option<&Signer>,
    ) -> Result<JobMessage, WireError> {
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
        let number = |field: &'static str, value: &str| -> Result<u64, WireError> {
            value.parse().map_err(|_| WireError::Bad {
                field,
                value: cut(value),
                why: "not a whole number".into(),
            })
        };
        let format = match fields.contains_key("v") {
            true => {
                let v = text("v")?;
                u32::try_from(number("v", &v)?).map_err(|_| WireError::Bad {
                    field: "v",
                    value: cut(&v),
                    why: "not a format".into(),
                })?
            }
            false => 1,
        };
        if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
            return Err(WireError::Unsupported { version: format });
        }
        let (id_text, job_field, reply_to, deadline_text) =
            (text("id")?, text("job")?, text("reply")?, text("deadline")?);
        if let Some(signer) = signer {
            let mac = match text("mac") {
                Err(WireError::Missing { .. }) => return Err(WireError::Unsigned),
                other => other?,
            };
            let signed = [
                id_text.as_bytes(),
                job_field.as_bytes(),
                reply_to.as_bytes(),
                deadline_text.as_bytes(),
            ];
            if !signer.verify(Signed::Job, &signed, &mac) {
                return Err(WireError::BadMac);
            }
        }
        let (name, arg) = job_field.split_once(' ').unwrap_or((&job_field, ""));
        let job = Job::parse(name, arg).map_err(|err| WireError::Bad {
            field: "job",
            value: cut(&job_field),
            why: err.to_string(),
        })?;
        Ok(JobMessage {
            id: number("id", &id_text)?,
            job,
            reply_to,
            deadline_ms: number("deadline", &deadline_text)?,
            format,
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
    /// The worker found the job past its deadline before it started it.
    Expired,
}

impl ReplyCode {
    /// The code as written in a reply.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyCode::Timeout => "timeout",
            ReplyCode::WorkerLost => "worker-lost",
            ReplyCode::Panicked => "panicked",
            ReplyCode::Internal => "internal",
            ReplyCode::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<ReplyCode> {
        [
            ReplyCode::Timeout,
            ReplyCode::WorkerLost,
            ReplyCode::Panicked,
            ReplyCode::Internal,
            ReplyCode::Expired,
        ]
        .into_iter()
        .find(|code| code.as_str() == text)
    }

    /// The code for a job's local failure on a worker, or `None` when the
    /// job should not be answered at all but handed back (the worker is
    /// stopping, or its local queue refused the job).
    pub fn of(err: &ApplyError) -> Option<ReplyCode> {
        match err {
            ApplyError::Timeout { .. } | ApplyError::Expired { .. } => Some(ReplyCode::Timeout),
            ApplyError::WorkerLost { .. } | ApplyError::RemoteWorkerLost { .. } => {
                Some(ReplyCode::WorkerLost)
            }
            ApplyError::JobPanicked { .. } => Some(ReplyCode::Panicked),
            ApplyError::PoolDown { .. } | ApplyError::Unavailable { .. } => {
                Some(ReplyCode::Internal)
            }
            ApplyError::Busy { .. }
            | ApplyError::ShuttingDown { .. }
            | ApplyError::Cancelled { .. } => None,
        }
    }
}

/// The reply string to `message` with its answer, in its format; signed
/// when a signer is given (format 2).
pub fn answer_reply(message: &JobMessage, answer: &Answer, signer: Option<&Signer>) -> String {
    reply_text(message, &format!("ok {answer}"), signer)
}

/// The reply string to `message` with a failure, in its format; signed when
/// a signer is given (format 2).
pub fn error_reply(
    message: &JobMessage,
    code: ReplyCode,
    detail: &str,
    signer: Option<&Signer>,
) -> String {
    reply_text(message, &format!("err {} {detail}", code.as_str()), signer)
}

fn reply_text(message: &JobMessage, outcome: &str, signer: Option<&Signer>) -> String {
    let id = message.id;
    if message.format < 2 {
        return format!("{id} {outcome}");
    }
    let mac = signer.map_or_else(
        || "-".to_owned(),
        |signer| {
            let job = job_text(&message.job);
            let id = id.to_string();
            signer.sign(Signed::Reply, &reply_fields(message, &id, &job, outcome))
        },
    );
    format!("v2 {mac} {id} {outcome}")
}

/// What a reply's MAC covers: the reply list and the job (which the server
/// knows, so a reply cannot be moved to another job or server), the id and
/// the outcome as written.
fn reply_fields<'a>(
    message: &'a JobMessage,
    id: &'a str,
    job: &'a str,
    outcome: &'a str,
) -> [&'a [u8]; 4] {
    [
        message.reply_to.as_bytes(),
        id.as_bytes(),
        job.as_bytes(),
        outcome.as_bytes(),
    ]
}

/// A reply string, split but not yet matched to its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The job's number.
    pub id: u64,
    /// `ok` and the answer's text, or an error code and its detail.
    pub body: ReplyBody,
    /// The MAC, if the reply carries one.
    mac: Option<String>,
    /// The id and outcome as written, which the MAC covers.
    id_text: String,
    outcome: String,
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
    /// Splits a reply string, format 2 or 1.
    ///
    /// # Errors
    ///
    /// [`WireError::BadReply`] quoting it.
    pub fn parse(text: &str) -> Result<Reply, WireError> {
        let bad = || WireError::BadReply { text: cut(text) };
        let (mac, rest) = match text.strip_prefix("v2 ") {
            Some(signed) => {
                let (mac, rest) = signed.split_once(' ').ok_or_else(bad)?;
                ((mac != "-").then(|| mac.to_owned()), rest)
            }
            None => (None, text),
        };
        let (id_text, outcome) = rest.split_once(' ').ok_or_else(bad)?;
        let id = id_text.parse().map_err(|_| bad())?;
        let body = match outcome.split_once(' ') {
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
        Ok(Reply {
            id,
            body,
            mac,
            id_text: id_text.to_owned(),
            outcome: outcome.to_owned(),
        })
    }

    /// Whether the reply may be trusted as the answer to `message`: always
    /// without a signer; with one, only when it carries a MAC the signer
    /// accepts over `message`'s reply list and job.
    ///
    /// # Errors
    ///
    /// [`WireError::Unsigned`] or [`WireError::BadMac`].
    pub fn check(&self, message: &JobMessage, signer: Option<&Signer>) -> Result<(), WireError> {
        let Some(signer) = signer else {
            return Ok(());
        };
        let mac = self.mac.as_deref().ok_or(WireError::Unsigned)?;
        let job = job_text(&message.job);
        let fields = reply_fields(message, &self.id_text, &job, &self.outcome);
        if signer.verify(Signed::Reply, &fields, mac) {
            Ok(())
        } else {
            Err(WireError::BadMac)
        }
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
                ReplyCode::Expired => ApplyError::Expired { job, detail },
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
    use crate::broker::Secret;

    fn entry(fields: &[(&str, &str)]) -> HashMap<String, Value> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    fn as_entry(fields: &[(&'static str, String)]) -> HashMap<String, Value> {
        entry(
            &fields
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
    }

    fn signer(key: &str) -> Signer {
        Signer::new(&[Secret::new(key)]).expect("a valid key")
    }

    fn message(id: u64, job: Job) -> JobMessage {
        JobMessage::new(id, job, "ysum:reply:x".into(), 1_764_626_400_123)
    }

    /// A job message reads back from its own fields, signed or not.
    #[test]
    fn job_messages_round_trip() {
        let key = signer("0123456789abcdef");
        for job in [Job::Sumn(u64::MAX), Job::Prime(7), Job::Sleep(0)] {
            let message = message(42, job);
            let plain = as_entry(&message.fields(None));
            assert_eq!(JobMessage::from_fields(&plain, None), Ok(message.clone()));
            let signed = as_entry(&message.fields(Some(&key)));
            assert_eq!(
                JobMessage::from_fields(&signed, Some(&key)),
                Ok(message.clone())
            );
            // A signed entry is still read where nothing is checked.
            assert_eq!(JobMessage::from_fields(&signed, None), Ok(message));
        }
    }

    /// With a signer, an unsigned entry, another key's entry and an entry
    /// changed after signing are refused.
    #[test]
    fn forged_jobs_are_refused() {
        let key = signer("0123456789abcdef");
        let message = message(1, Job::Sumn(3));
        let unsigned = as_entry(&message.fields(None));
        assert_eq!(
            JobMessage::from_fields(&unsigned, Some(&key)),
            Err(WireError::Unsigned)
        );
        let other = as_entry(&message.fields(Some(&signer("another-key-0123"))));
        assert_eq!(
            JobMessage::from_fields(&other, Some(&key)),
            Err(WireError::BadMac)
        );
        for (field, value) in [
            ("reply", "ysum:jobs"),
            ("job", "sumn 4"),
            ("deadline", "99999999999999"),
            ("id", "2"),
        ] {
            let mut changed = message.fields(Some(&key));
            changed.iter_mut().find(|(k, _)| *k == field).unwrap().1 = value.into();
            assert_eq!(
                JobMessage::from_fields(&as_entry(&changed), Some(&key)),
                Err(WireError::BadMac),
                "{field}"
            );
        }
    }

    /// Entries without `v` are format 1; unknown formats are named.
    #[test]
    fn formats() {
        let old = entry(&[
            ("id", "1"),
            ("job", "sumn 3"),
            ("reply", "r"),
            ("deadline", "1"),
        ]);
        assert_eq!(JobMessage::from_fields(&old, None).unwrap().format, 1);
        // Written in format 1 (for workers that predate format 2), a job is
        // what those workers read: no `v`, no `mac`; and it reads back.
        let written = message(5, Job::Sumn(9)).in_format(1);
        let fields = written.fields(None);
        assert!(
            fields.iter().all(|(k, _)| *k != "v" && *k != "mac"),
            "{fields:?}"
        );
        assert_eq!(
            JobMessage::from_fields(&as_entry(&fields), None),
            Ok(written)
        );
        let future = entry(&[("v", "3"), ("id", "1")]);
        assert_eq!(
            JobMessage::from_fields(&future, None),
            Err(WireError::Unsupported { version: 3 })
        );
    }

    /// Bad entries name the field and quote the value.
    #[test]
    fn bad_entries_are_named() {
        let err = JobMessage::from_fields(&entry(&[("id", "1")]), None).unwrap_err();
        assert_eq!(err.to_string(), "job entry has no \"job\" field");
        let err = JobMessage::from_fields(
            &entry(&[
                ("id", "x"),
                ("job", "sumn 3"),
                ("reply", "r"),
                ("deadline", "1"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        let err = JobMessage::from_fields(
            &entry(&[
                ("id", "1"),
                ("job", "fib 3"),
                ("reply", "r"),
                ("deadline", "1"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fib"), "{err}");
    }

    /// Replies read back into the results they stand for, in both formats.
    #[test]
    fn replies_round_trip() {
        let elapsed = Duration::from_millis(3);
        let sumn = message(7, Job::Sumn(25_000));
        let ok = Reply::parse(&answer_reply(&sumn, &Answer::Sum(312_512_500), None)).unwrap();
        assert_eq!(ok.id, 7);
        assert_eq!(
            ok.into_result(Job::Sumn(25_000), elapsed),
            Ok(Answer::Sum(312_512_500))
        );
        let old = JobMessage {
            format: 1,
            ..message(8, Job::Prime(7))
        };
        let text = answer_reply(
            &old,
            &Answer::Prime(true),
            Some(&signer("0123456789abcdef")),
        );
        assert_eq!(text, "8 ok true");
        let prime = Reply::parse(&text).unwrap();
        assert_eq!(
            prime.into_result(Job::Prime(7), elapsed),
            Ok(Answer::Prime(true))
        );
        let sleep = message(9, Job::Sleep(1));
        let lost = Reply::parse(&error_reply(
            &sleep,
            ReplyCode::WorkerLost,
            "3 deliveries",
            None,
        ))
        .unwrap();
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
        for bad in [
            "",
            "x ok 1",
            "1 maybe 2",
            "1 err nope x",
            "1",
            "v2 - x ok 1",
            "v2 abc",
        ] {
            assert!(Reply::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// A signed reply checks only against its own job and server; a forged
    /// or unsigned one is refused where signing is on.
    #[test]
    fn forged_replies_are_refused() {
        let key = signer("0123456789abcdef");
        let job = message(4, Job::Sumn(4_000_000_000));
        let real = Reply::parse(&answer_reply(&job, &Answer::Sum(8), Some(&key))).unwrap();
        assert_eq!(real.check(&job, Some(&key)), Ok(()));
        assert_eq!(real.check(&job, None), Ok(()));
        let elsewhere = JobMessage {
            reply_to: "ysum:reply:other".into(),
            ..job.clone()
        };
        assert_eq!(real.check(&elsewhere, Some(&key)), Err(WireError::BadMac));
        let other_job = message(4, Job::Sumn(3));
        assert_eq!(real.check(&other_job, Some(&key)), Err(WireError::BadMac));
        let forged = Reply::parse("4 ok 42").unwrap();
        assert_eq!(forged.check(&job, Some(&key)), Err(WireError::Unsigned));
        let unsigned = Reply::parse(&answer_reply(&job, &Answer::Sum(8), None)).unwrap();
        assert_eq!(unsigned.check(&job, Some(&key)), Err(WireError::Unsigned));
        let mac = real.mac.clone().unwrap();
        let changed = Reply::parse(&format!("v2 {mac} 4 ok 42")).unwrap();
        assert_eq!(changed.check(&job, Some(&key)), Err(WireError::BadMac));
    }
}
