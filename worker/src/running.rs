//! [`Running`]: the jobs this worker has taken and not yet settled, one per
//! slot. The reader fills it, the replier empties it, the lease thread
//! renews what is in it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use offload::broker::wire::JobMessage;

/// The jobs taken, by stream entry id.
#[derive(Debug)]
pub(crate) struct Running {
    slots: usize,
    jobs: Mutex<HashMap<String, JobMessage>>,
    /// One message per slot freed, so the reader can wait for one.
    freed: (Sender<()>, Receiver<()>),
}

impl Running {
    /// An empty table with `slots` slots.
    pub(crate) fn new(slots: usize) -> Self {
        Running {
            slots,
            jobs: Mutex::new(HashMap::new()),
            freed: crossbeam_channel::unbounded(),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, JobMessage>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots free now.
    pub(crate) fn free(&self) -> usize {
        self.slots.saturating_sub(self.jobs().len())
    }

    /// Whether no job is running.
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs().is_empty()
    }

    /// Records a job taken under its entry id.
    pub(crate) fn insert(&self, entry: String, message: JobMessage) {
        self.jobs().insert(entry, message);
    }

    /// The job under `entry`, if still running.
    pub(crate) fn get(&self, entry: &str) -> Option<JobMessage> {
        self.jobs().get(entry).cloned()
    }

    /// Frees the slot of `entry`.
    pub(crate) fn remove(&self, entry: &str) {
        if self.jobs().remove(entry).is_some() {
            let _ = self.freed.0.send(());
        }
    }

    /// The entry ids of every running job.
    pub(crate) fn entries(&self) -> Vec<String> {
        self.jobs().keys().cloned().collect()
    }

    /// Waits at most `within` for a slot to be freed.
    pub(crate) fn wait_for_free(&self, within: Duration) {
        let _ = self.freed.1.recv_timeout(within);
        // Several may have been freed: the caller counts them itself.
        while self.freed.1.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload::Job;

    /// Slots are taken by inserts and given back by removes.
    #[test]
    fn slots_follow_the_table() {
        let running = Running::new(2);
        let message = JobMessage {
            id: 1,
            job: Job::Sleep(1),
            reply_to: "r".into(),
            deadline_ms: 0,
        };
        running.insert("1-0".into(), message.clone());
        assert_eq!(running.free(), 1);
        assert_eq!(running.get("1-0"), Some(message));
        running.remove("1-0");
        running.remove("1-0");
        assert_eq!(running.free(), 2);
        assert!(running.is_empty());
        running.wait_for_free(Duration::ZERO);
    }
}
