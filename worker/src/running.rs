//! [`Running`]: the jobs this worker has taken and not yet settled, and the
//! slots they hold.
//!
//! A slot is held by a job from the moment it is read until the local
//! strategy has its answer, and by a read in flight ([`Reserved`]): a read
//! asks for as many entries as it holds slots, so nothing is read that no
//! slot can start at once. A finished job gives its slot back at once, before
//! its reply is settled in Redis (that is I/O, not the slot's work), so the
//! next job can be read while the reply is on its way; it stays in the table
//! (settling) until the broker has taken its reply, so its lease is renewed
//! and a graceful stop waits for it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use offload::apply::Client;
use offload::broker::wire::JobMessage;

/// The jobs taken, by stream entry id, and the slots.
#[derive(Debug)]
pub(crate) struct Running {
    slots: usize,
    state: Mutex<State>,
    /// One message per change that may free a slot or empty the table, so
    /// the reader (and a graceful stop) can wait for one.
    changed: (Sender<()>, Receiver<()>),
}

#[derive(Debug, Default)]
struct State {
    /// Jobs handed to the local strategy and not finished: one slot each,
    /// with the client the local strategy knows each by (to withdraw it).
    started: HashMap<String, (JobMessage, Client)>,
    /// Finished jobs whose reply the broker has not yet taken: no slot.
    settling: HashMap<String, JobMessage>,
    /// Slots held by reads in flight.
    reserved: usize,
    /// Raised once the worker stops taking jobs: no slot is reserved after.
    closed: bool,
    /// The most slots held at once (started + reserved), logged when the
    /// worker stops.
    most_held: usize,
}

impl State {
    fn held(&self) -> usize {
        self.started.len() + self.reserved
    }
}

/// Slots held for one read; those not used by [`Running::start`] are given
/// back when it is dropped.
#[derive(Debug)]
pub(crate) struct Reserved<'a> {
    running: &'a Running,
    left: usize,
}

impl Reserved<'_> {
    /// Slots still held: the most entries the read may ask for.
    pub(crate) fn count(&self) -> usize {
        self.left
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            let mut state = self.running.state();
            state.reserved -= self.left;
            drop(state);
            self.running.signal();
        }
    }
}

impl Running {
    /// An empty table with `slots` slots.
    pub(crate) fn new(slots: usize) -> Self {
        Running {
            slots,
            state: Mutex::new(State::default()),
            changed: crossbeam_channel::unbounded(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self) {
        let _ = self.changed.0.send(());
    }

    /// The slots: jobs run at once, at most.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Slots running a job now (not counting jobs answered and settling,
    /// nor slots held by a read waiting for entries).
    pub(crate) fn busy(&self) -> usize {
        self.state().started.len()
    }

    /// Slots free now (neither running a job nor held by a read).
    pub(crate) fn free(&self) -> usize {
        self.slots.saturating_sub(self.state().held())
    }

    /// Holds every free slot for a read (none once closed).
    pub(crate) fn reserve(&self) -> Reserved<'_> {
        let mut state = self.state();
        let left = if state.closed {
            0
        } else {
            self.slots.saturating_sub(state.held())
        };
        state.reserved += left;
        state.most_held = state.most_held.max(state.held());
        Reserved {
            running: self,
            left,
        }
    }

    /// Records a job read under `entry`, in one of `reserved`'s slots.
    /// Returns false (and records nothing) when `reserved` holds none left.
    pub(crate) fn start(
        &self,
        reserved: &mut Reserved<'_>,
        entry: String,
        message: JobMessage,
        client: Client,
    ) -> bool {
        if reserved.left == 0 {
            return false;
        }
        let mut state = self.state();
        reserved.left -= 1;
        state.reserved -= 1;
        state.started.insert(entry, (message, client));
        state.most_held = state.most_held.max(state.held());
        true
    }

    /// The job under `entry` has its answer: its slot is free from now on,
    /// and it waits in the table for its reply to be settled. With
    /// `read_next`, the freed slot is held at once for the caller's read of
    /// the next job (unless the table is closed). `None` if `entry` was not
    /// started.
    pub(crate) fn finish(
        &self,
        entry: &str,
        read_next: bool,
    ) -> Option<(JobMessage, Reserved<'_>)> {
        let mut state = self.state();
        let (message, _) = state.started.remove(entry)?;
        state.settling.insert(entry.to_owned(), message.clone());
        let left = usize::from(read_next && !state.closed);
        state.reserved += left;
        drop(state);
        if left == 0 {
            self.signal();
        }
        Some((
            message,
            Reserved {
                running: self,
                left,
            },
        ))
    }

    /// Removes a job from the table: its reply was settled, or it is handed
    /// back (left pending, for another worker after the lease).
    pub(crate) fn remove(&self, entry: &str) {
        let mut state = self.state();
        let removed =
            state.settling.remove(entry).is_some() || state.started.remove(entry).is_some();
        drop(state);
        if removed {
            self.signal();
        }
    }

    /// Stops reserving slots: for a worker that stops taking jobs.
    pub(crate) fn close(&self) {
        self.state().closed = true;
    }

    /// Whether no job is running or settling and no read holds a slot.
    pub(crate) fn is_empty(&self) -> bool {
        let state = self.state();
        state.started.is_empty() && state.settling.is_empty() && state.reserved == 0
    }

    /// The entry ids of every job taken and not settled, whose leases the
    /// lease thread renews.
    pub(crate) fn entries(&self) -> Vec<String> {
        let state = self.state();
        state
            .started
            .keys()
            .chain(state.settling.keys())
            .cloned()
            .collect()
    }

    /// The client of the job running under `entry`, to withdraw it.
    pub(crate) fn client_of(&self, entry: &str) -> Option<Client> {
        self.state()
            .started
            .get(entry)
            .map(|(_, client)| client.clone())
    }

    /// Whether `entry` is still in the table.
    pub(crate) fn contains(&self, entry: &str) -> bool {
        let state = self.state();
        state.started.contains_key(entry) || state.settling.contains_key(entry)
    }

    /// The most slots held at once so far; never more than the slots.
    pub(crate) fn most_held(&self) -> usize {
        self.state().most_held
    }

    /// Waits at most `within` for a change (a slot freed, a job settled).
    pub(crate) fn wait_for_change(&self, within: Duration) {
        let _ = self.changed.1.recv_timeout(within);
        // Several may have happened: the caller looks at the table itself.
        while self.changed.1.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload::Job;

    fn message(id: u64) -> JobMessage {
        JobMessage::new(id, Job::Sleep(1), "r".into(), 0)
    }

    /// Slots are held by reads and started jobs, and freed when a job has
    /// its answer, before it is settled.
    #[test]
    fn slots_follow_the_table() {
        let running = Running::new(2);
        let mut read = running.reserve();
        assert_eq!((read.count(), running.free()), (2, 0));
        assert!(running.start(&mut read, "1-0".into(), message(1), Client::anonymous()));
        drop(read);
        assert_eq!(running.free(), 1);
        let (taken, next) = running.finish("1-0", false).expect("started");
        assert_eq!((taken, next.count()), (message(1), 0));
        drop(next);
        // Answered, not settled: its slot is free, its lease still renewed.
        assert_eq!(running.free(), 2);
        assert_eq!(running.entries(), vec!["1-0".to_owned()]);
        assert!(!running.is_empty());
        running.remove("1-0");
        running.remove("1-0");
        assert!(running.is_empty());
        assert!(running.finish("1-0", true).is_none());
        running.wait_for_change(Duration::ZERO);
    }

    /// A finishing job's slot goes to its own thread's read, not to the
    /// reader's; a read holding no slot starts nothing; a closed table
    /// reserves nothing.
    #[test]
    fn the_freed_slot_is_the_finishers() {
        let running = Running::new(1);
        let mut read = running.reserve();
        assert!(running.start(&mut read, "1-0".into(), message(1), Client::anonymous()));
        assert!(!running.start(&mut read, "2-0".into(), message(2), Client::anonymous()));
        drop(read);
        let (_, mut next) = running.finish("1-0", true).expect("started");
        assert_eq!(next.count(), 1);
        assert_eq!(running.reserve().count(), 0, "the reader must find none");
        assert!(running.start(&mut next, "2-0".into(), message(2), Client::anonymous()));
        drop(next);
        running.close();
        let (_, next) = running.finish("2-0", true).expect("started");
        assert_eq!((next.count(), running.reserve().count()), (0, 0));
    }

    /// Many threads reading, starting and finishing tiny jobs at once, as
    /// the reader and the pool threads do: the slots held (jobs started and
    /// reads in flight) never exceed the slots, so no read asks for more
    /// entries than there are free slots.
    #[test]
    fn reads_never_hold_more_than_the_slots() {
        let running = Running::new(3);
        let next_id = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..6 {
                let (running, next_id) = (&running, &next_id);
                scope.spawn(move || {
                    for round in 0..2_000 {
                        // Half the threads read like the reader (every free
                        // slot), half like a pool thread (its own slot).
                        let mut read = running.reserve();
                        let mut mine = Vec::new();
                        while read.count() > 0 {
                            let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            assert!(running.start(
                                &mut read,
                                format!("{id}-0"),
                                message(id),
                                Client::anonymous()
                            ));
                            mine.push(format!("{id}-0"));
                            if (thread + round) % 2 == 0 {
                                break;
                            }
                        }
                        drop(read);
                        for entry in mine {
                            let (_, mut next) =
                                running.finish(&entry, round % 3 == 0).expect("started");
                            if next.count() == 1 {
                                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let again = format!("{id}-0");
                                assert!(running.start(
                                    &mut next,
                                    again.clone(),
                                    message(id),
                                    Client::anonymous()
                                ));
                                drop(next);
                                let _ = running.finish(&again, false);
                                running.remove(&again);
                            }
                            running.remove(&entry);
                        }
                        assert!(running.free() <= 3);
                    }
                });
            }
        });
        assert!(running.is_empty());
        assert!(running.most_held() <= 3, "{}", running.most_held());
        assert_eq!(running.free(), 3);
    }
}
