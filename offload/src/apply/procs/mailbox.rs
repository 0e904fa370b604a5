//! Mailboxes: where an `apply` caller's reply comes, so that the thread
//! that waits for an answer is the one the reply wakes, with no thread in
//! between.
//!
//! A mailbox is a channel per worker it has sent to, whose only sending end
//! that worker holds (it comes with the mailbox's first job there). So the
//! reply is the only thing that wakes the caller, and a worker that dies
//! ends the wait at once with EOF, as the pool's own channel would.
//!
//! Mailboxes are pooled, not one per thread: a caller takes one for a job
//! and gives it back with the answer. A caller only takes one once its job
//! has room in a worker's channel (the others wait in the queue, and are
//! answered through the collectors), so there are never more mailboxes than
//! jobs in the workers' channels at once, K × `status::SLOTS` at most. That
//! bounds the channels each worker keeps open, however many threads come and
//! go (a thread per connection, under `--io threads`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ipc_channel::ipc::{self, IpcReceiver};
use ipc_channel::IpcError;

use super::worker::{FromWorker, ReplyTo};
use super::Shared;

/// The free mailboxes of a pool.
#[derive(Debug, Default)]
pub(super) struct Mailboxes {
    free: Mutex<Vec<Mailbox>>,
    next_id: AtomicU64,
}

/// One caller's way to get a reply from any worker.
#[derive(Debug)]
pub(super) struct Mailbox {
    id: u64,
    /// By worker number: the receiving end of the channel that worker
    /// replies on.
    inboxes: HashMap<u64, IpcReceiver<FromWorker>>,
}

impl Mailboxes {
    /// A free mailbox, or a new one.
    pub(super) fn take(&self, shared: &Shared) -> Mailbox {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut mailbox = reused.unwrap_or_else(|| Mailbox {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inboxes: HashMap::new(),
        });
        // Workers that ended while this mailbox waited on another one (or on
        // none) are not heard of here: drop their channels once there are
        // more than workers, so that a mailbox holds at most one channel per
        // worker alive.
        if mailbox.inboxes.len() > shared.directory_len() {
            let alive = shared.alive.lock().unwrap_or_else(|p| p.into_inner());
            let numbers: Vec<u64> = alive.values().map(|w| w.number).collect();
            drop(alive);
            mailbox.inboxes.retain(|number, _| numbers.contains(number));
        }
        mailbox
    }

    pub(super) fn give_back(&self, mailbox: Mailbox) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(mailbox);
    }
}

impl Mailbox {
    /// Where worker `number` is to send this mailbox's reply: with a new
    /// channel the first time. Fails only if no channel can be made.
    pub(super) fn reply_to(&mut self, number: u64) -> Result<ReplyTo, std::io::Error> {
        let channel = match self.inboxes.entry(number) {
            Entry::Occupied(_) => None,
            Entry::Vacant(entry) => {
                let (sender, receiver) = ipc::channel()?;
                entry.insert(receiver);
                Some(sender)
            }
        };
        Ok(ReplyTo::Mailbox {
            id: self.id,
            channel,
        })
    }

    /// Waits for the reply from worker `number`.
    pub(super) fn recv(&self, number: u64) -> Result<FromWorker, IpcError> {
        match self.inboxes.get(&number) {
            Some(inbox) => inbox.recv(),
            None => Err(IpcError::Disconnected),
        }
    }

    /// Drops the channel of worker `number`: it is gone, or never got it.
    pub(super) fn forget(&mut self, number: u64) {
        self.inboxes.remove(&number);
    }
}
