//! The deadline thread: answers each job at its deadline if no worker did,
//! whatever the workers are doing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::Shared;
use crate::error::ApplyError;

/// How long to sleep when no deadline is pending.
const IDLE: Duration = Duration::from_secs(3600);

pub(super) fn run(shared: &Shared, incoming: &Receiver<(Instant, u64)>) {
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    loop {
        let wait = due.peek().map_or(IDLE, |Reverse((at, _))| {
            at.saturating_duration_since(Instant::now())
        });
        match incoming.recv_timeout(wait) {
            Ok(deadline) => due.push(Reverse(deadline)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let up = shared.up.load(Ordering::Acquire);
            let completed = shared.complete(id, |job, elapsed| {
                Err(if up {
                    ApplyError::Timeout { job, elapsed }
                } else {
                    ApplyError::Unavailable {
                        job,
                        reason: shared.unreachable("still down at the job's deadline"),
                    }
                })
            });
            if completed {
                tracing::debug!(id, up, "job answered at its deadline");
            }
        }
    }
}
