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
    /// No worker took the job: the queue was full, no worker was free (with
    /// a queue wait of zero), or none took it within the queue wait. The job
    /// never runs afterwards.
    #[error("{job} refused: {reason}")]
    Busy {
        /// The job that was refused.
        job: Job,
        /// Which of the three happened.
        reason: BusyReason,
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
    /// The process pool has no fork server (it died and its replacement is
    /// starting), so the job cannot run now. Refused at once, not after the
    /// queue wait. Also the answer, should it ever happen, when a worker's
    /// reply cannot be read (the worker is then retired).
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
    /// The job's client went away before it was answered (its connection
    /// closed): it was withdrawn, or stopped at a yield point; nobody is
    /// told.
    #[error("{job} withdrawn: its client went away")]
    Cancelled {
        /// The job.
        job: Job,
    },
    /// `remote`: a worker found the job past its deadline (on the broker's
    /// clock) before it started it, and answered so at once.
    #[error("{job} expired: {detail}")]
    Expired {
        /// The job.
        job: Job,
        /// What the worker said.
        detail: String,
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

/// Why a job was refused as [`ApplyError::Busy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// The queue already held as many jobs as it may.
    QueueFull {
        /// How many jobs were waiting.
        queued: usize,
    },
    /// The queue wait is zero and no worker was free at that moment.
    NoneFree,
    /// `exclusive`, submitted from an event loop: another thread held the
    /// lock, and an event loop may not wait for it.
    Locked,
    /// `remote`: the server already had `--queue` jobs handed out and not
    /// yet answered.
    InFlightFull {
        /// How many jobs were in flight.
        in_flight: usize,
    },
    /// The client's address already had its share of the queue waiting
    /// (three quarters of it; the rest is kept for other addresses).
    AddressFull {
        /// How many of its jobs were waiting.
        queued: usize,
    },
    /// No worker took the job within the queue wait.
    Waited {
        /// The queue wait it was given.
        queue_wait: Duration,
    },
}

impl fmt::Display for BusyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BusyReason::QueueFull { queued } => {
                write!(f, "the queue is full ({queued} jobs already waiting)")
            }
            BusyReason::AddressFull { queued } => write!(
                f,
                "this client's address already has {queued} jobs waiting, its share of the \
                 queue (the rest is kept for other addresses)"
            ),
            BusyReason::InFlightFull { in_flight } => {
                write!(
                    f,
                    "{in_flight} remote jobs are already in flight (the --queue limit)"
                )
            }
            BusyReason::NoneFree => f.write_str("no worker is free now (queue wait 0)"),
            BusyReason::Locked => {
                f.write_str("another job holds the exclusive lock, and an event loop cannot wait")
            }
            BusyReason::Waited { queue_wait } => {
                write!(
                    f,
                    "no worker took it within the queue wait of {queue_wait:?}"
                )
            }
        }
    }
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
            | ApplyError::Cancelled { job }
            | ApplyError::PoolDown { job, .. }
            | ApplyError::Unavailable { job, .. }
            | ApplyError::Expired { job, .. }
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
    /// `procs` was asked for in a binary whose `main` does not call
    /// [`fork_server_main_if_requested`](crate::fork_server_main_if_requested)
    /// first, so the binary cannot serve as a fork server.
    #[error(
        "the procs strategy needs the host binary's main to call \
         offload::fork_server_main_if_requested() first; this one does not"
    )]
    HostNotPrepared,
    /// The fork server did not start, or did not report for work in time.
    #[error("the fork server did not start: {reason}")]
    ForkServer {
        /// What went wrong.
        reason: String,
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
    /// `remote`: the broker answered and refused this process's
    /// credentials or one of the commands it needs (a wrong password, an
    /// ACL user without the right): a configuration error.
    #[error("{detail}")]
    BrokerRefused {
        /// What the broker said, with its URL redacted.
        detail: String,
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

    /// Each kind of busy says what really happened, and timeout says how
    /// long the job ran.
    #[test]
    fn busy_and_timeout_messages() {
        let busy = |reason| ApplyError::Busy {
            job: Job::Prime(7),
            reason,
        };
        assert_eq!(
            busy(BusyReason::QueueFull { queued: 8 }).to_string(),
            "prime 7 refused: the queue is full (8 jobs already waiting)"
        );
        assert_eq!(
            busy(BusyReason::NoneFree).to_string(),
            "prime 7 refused: no worker is free now (queue wait 0)"
        );
        assert_eq!(
            busy(BusyReason::Waited {
                queue_wait: Duration::from_millis(200)
            })
            .to_string(),
            "prime 7 refused: no worker took it within the queue wait of 200ms"
        );
        let timeout = ApplyError::Timeout {
            job: Job::Sleep(9),
            elapsed: Duration::from_millis(5),
        };
        assert_eq!(timeout.to_string(), "sleep 9 timed out after 5ms");
        assert_eq!(timeout.job(), Job::Sleep(9));
    }
}
