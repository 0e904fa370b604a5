//! What can go wrong when a strategy starts, or when it runs a job.
//!
//! Every message names the job, the worker, the signal or the value involved,
//! so that a log line or an `ERR` reply is enough to understand what happened.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::job::Job;

/// How a worker process ended, as its parent (the fork server) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// It exited by itself with this status.
    Code(i32),
    /// A signal (by number) killed it.
    Signal(i32),
    /// Its end was not reported in time (the fork server may be gone).
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with status {code}"),
            Exit::Signal(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "killed by {}", signal.as_str()),
                Err(_) => write!(f, "killed by signal {number}"),
            },
            Exit::Unknown => f.write_str("ended for a reason not reported"),
        }
    }
}

/// Why [`Strategy::apply`](crate::Strategy::apply) returned no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No worker was free to take the job within the configured queue wait,
    /// or the queue was full.
    #[error("no worker free for {job} within {waited:?} ({queued} jobs already waiting)")]
    Busy {
        /// The job that was refused.
        job: Job,
        /// How long it waited.
        waited: Duration,
        /// How many jobs were waiting when it gave up.
        queued: usize,
    },
    /// The job ran longer than the job timeout and was stopped.
    #[error("{job} timed out after {elapsed:?}")]
    Timeout {
        /// The job that was stopped.
        job: Job,
        /// How long it had run (queue wait excluded).
        elapsed: Duration,
    },
    /// The worker process running the job died before answering.
    #[error("worker {pid} died running {job}: {exit}")]
    WorkerLost {
        /// The job that was lost.
        job: Job,
        /// The worker's process id.
        pid: u32,
        /// How the worker ended.
        exit: Exit,
    },
    /// The job panicked; only its caller sees it.
    #[error("{job} panicked: {message}")]
    JobPanicked {
        /// The job that panicked.
        job: Job,
        /// The panic's message.
        message: String,
    },
    /// The strategy is shutting down and takes no more work.
    #[error("{job} refused: the strategy is shutting down")]
    ShuttingDown {
        /// The job that was refused.
        job: Job,
    },
    /// The process pool cannot get workers (its fork server is gone).
    #[error("{job} cannot run: {reason}")]
    PoolDown {
        /// The job that could not run.
        job: Job,
        /// What is broken.
        reason: String,
    },
    /// `remote`: the broker cannot be reached, so the job cannot be handed
    /// out (or it was in flight through an outage that outlasted it).
    #[error("{job} cannot be handed out: {reason}")]
    Unavailable {
        /// The job.
        job: Job,
        /// What is unreachable, and since when or why.
        reason: String,
    },
    /// `remote`: the job was delivered to workers the most times allowed and
    /// none of them finished it (or a worker's own process pool lost it).
    #[error("{job} lost on the workers: {detail}")]
    RemoteWorkerLost {
        /// The job.
        job: Job,
        /// What the worker said.
        detail: String,
    },
}

impl ApplyError {
    /// The job this error is about.
    pub fn job(&self) -> Job {
        match self {
            ApplyError::Busy { job, .. }
            | ApplyError::Timeout { job, .. }
            | ApplyError::WorkerLost { job, .. }
            | ApplyError::JobPanicked { job, .. }
            | ApplyError::ShuttingDown { job }
            | ApplyError::PoolDown { job, .. }
            | ApplyError::Unavailable { job, .. }
            | ApplyError::RemoteWorkerLost { job, .. } => *job,
        }
    }
}

/// Why a strategy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The name after `--apply` is not a strategy.
    #[error(
        "unknown strategy {name:?} (expected inline, exclusive, threads, procs, pool or remote)"
    )]
    UnknownStrategy {
        /// The name as given.
        name: String,
    },
    /// A setting is out of range.
    #[error("{setting} must be {expected}, got {value}")]
    BadSetting {
        /// The setting's name.
        setting: &'static str,
        /// What it must be.
        expected: &'static str,
        /// The value given.
        value: String,
    },
    /// `procs` must fork its fork server before the process starts threads.
    #[error(
        "the procs strategy must be started before any other thread: this process already has \
         {threads} threads, and forking it could copy a lock held by one of them"
    )]
    Threaded {
        /// How many threads the process had.
        threads: usize,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The worker processes did not all report for work in time.
    #[error("only {started} of {wanted} worker processes started within {waited:?}")]
    WorkersMissing {
        /// How many did.
        started: usize,
        /// How many were asked for.
        wanted: usize,
        /// How long the pool waited.
        waited: Duration,
    },
}

impl StartError {
    pub(crate) fn os(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        StartError::Os {
            what,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worker loss names the pid, the job and the signal by name.
    #[test]
    fn worker_lost_message() {
        let err = ApplyError::WorkerLost {
            job: Job::Sumn(5),
            pid: 42,
            exit: Exit::Signal(9),
        };
        assert_eq!(
            err.to_string(),
            "worker 42 died running sumn 5: killed by SIGKILL"
        );
        assert_eq!(Exit::Code(3).to_string(), "exited with status 3");
    }

    /// Busy and timeout say how long was waited.
    #[test]
    fn busy_and_timeout_messages() {
        let busy = ApplyError::Busy {
            job: Job::Prime(7),
            waited: Duration::from_millis(200),
            queued: 8,
        };
        assert_eq!(
            busy.to_string(),
            "no worker free for prime 7 within 200ms (8 jobs already waiting)"
        );
        let timeout = ApplyError::Timeout {
            job: Job::Sleep(9),
            elapsed: Duration::from_millis(5),
        };
        assert_eq!(timeout.to_string(), "sleep 9 timed out after 5ms");
        assert_eq!(timeout.job(), Job::Sleep(9));
    }
}
