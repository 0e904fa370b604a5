//! A worker's status page: a few words of memory shared by the pool and one
//! worker process, through which they agree, without a message, on what the
//! worker holds.
//!
//! - The **load word** says how many jobs sit in the worker's channel
//!   (queued or running), their predicted time, and whether one of them
//!   must run alone. A thread that sends a job first reserves room here
//!   with a compare-and-swap; the worker gives the room back the moment a
//!   job ends, before its reply is even sent. So a worker is free again as
//!   soon as it has answered, not once its caller has woken up, and the
//!   next job can already be waiting in its channel: the worker never
//!   sleeps between jobs while there is work.
//! - One **slot** per job in the channel, naming the job by its sequence
//!   number and saying whether it is queued, running (with its deadline),
//!   or killed for running past it. The worker marks a job running when it
//!   takes it; the watchdog claims a running job past its deadline; whichever
//!   moves the slot first decides, as with any compare-and-swap. When a
//!   worker dies, the slot tells the job's caller what became of it: still
//!   queued (never started, so it is sent again to another worker), running
//!   (lost with the worker), or killed (timed out).
//!
//! Deadlines are nanoseconds of `CLOCK_MONOTONIC`, which every process on
//! the machine reads alike.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use ipc_channel::ipc::IpcSharedMemory;

/// Jobs a worker's channel may hold at once: the running one and the ones
/// queued behind it.
pub(crate) const SLOTS: usize = 8;

/// Word 0 is the load word; then a state and a deadline per slot.
const WORDS: usize = 1 + 2 * SLOTS;

/// The load word: job count in the low byte, ALONE in bit 8, predicted
/// nanoseconds from bit 16.
const COUNT_MASK: u64 = 0xff;
const ALONE: u64 = 1 << 8;
const NANOS_SHIFT: u32 = 16;

/// A slot's state: free, or a sequence number shifted left by two with one
/// of these tags.
const FREE: u64 = 0;
const QUEUED: u64 = 1;
const RUNNING: u64 = 2;
const KILLED: u64 = 3;

/// What one job adds to a worker's load word while it is in the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Load(u64);

impl Load {
    /// A job predicted to take `nanos`, which may share the channel with
    /// other small jobs.
    pub(crate) fn small(nanos: u64) -> Load {
        Load(1 | (nanos.min(u64::MAX >> NANOS_SHIFT) << NANOS_SHIFT))
    }

    /// A job that must find the worker idle and that nothing may queue
    /// behind: a heavy one, or one whose time cannot be predicted.
    pub(crate) fn alone() -> Load {
        Load(1 | ALONE)
    }

    /// Whether a worker already holding `held` may take this job too, with
    /// at most `bound_ns` of predicted work in its channel.
    fn fits(self, held: u64, bound_ns: u64) -> bool {
        let count = held & COUNT_MASK;
        if count == 0 {
            return true;
        }
        let nanos = (held >> NANOS_SHIFT).saturating_add(self.0 >> NANOS_SHIFT);
        (held | self.0) & ALONE == 0 && (count as usize) < SLOTS && nanos <= bound_ns
    }
}

/// What became of a job whose worker died before it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Still queued: it never started, and may run elsewhere.
    NeverStarted,
    /// Killed by the watchdog for running past its deadline.
    Killed,
    /// It had started (running, or done with its reply lost).
    Started,
}

/// The mapping of one worker's page. It is only ever read and written
/// through atomics, by this process and the worker.
#[derive(Debug)]
pub(crate) struct StatusPage {
    /// Keeps the mapping alive; never dereferenced as bytes.
    _memory: IpcSharedMemory,
    words: NonNull<AtomicU64>,
}

// SAFETY: the page is only accessed through atomic operations on `words`,
// which point into a mapping that lives as long as `_memory`.
unsafe impl Send for StatusPage {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for StatusPage {}

impl StatusPage {
    /// Fresh shared memory for a new worker's page, all zero: idle, every
    /// slot free.
    pub(crate) fn create() -> IpcSharedMemory {
        IpcSharedMemory::from_byte(0, WORDS * 8)
    }

    /// Maps a page made by [`StatusPage::create`]; `None` if it is too small
    /// or misaligned (not one of ours).
    pub(crate) fn open(mut memory: IpcSharedMemory) -> Option<StatusPage> {
        // SAFETY: the bytes are never used as a slice: the pointer is only
        // used for atomic accesses, which tolerate the other process's.
        let bytes = unsafe { memory.deref_mut() };
        if bytes.len() < WORDS * 8 || bytes.as_ptr().align_offset(8) != 0 {
            return None;
        }
        let words = NonNull::new(bytes.as_mut_ptr().cast::<AtomicU64>())?;
        Some(StatusPage {
            _memory: memory,
            words,
        })
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < WORDS);
        // SAFETY: in bounds (checked above and in `open`), aligned, and
        // mapped as long as `self`; `AtomicU64` allows shared mutation.
        unsafe { &*self.words.as_ptr().add(index) }
    }

    fn load_word(&self) -> &AtomicU64 {
        self.word(0)
    }

    fn state(&self, slot: usize) -> &AtomicU64 {
        self.word(1 + slot)
    }

    fn deadline(&self, slot: usize) -> &AtomicU64 {
        self.word(1 + SLOTS + slot)
    }

    /// Whether the worker holds any job, queued or running.
    pub(crate) fn busy(&self) -> bool {
        self.load_word().load(Ordering::Acquire) & COUNT_MASK != 0
    }

    /// How many jobs the worker holds, queued or running.
    pub(crate) fn held(&self) -> usize {
        (self.load_word().load(Ordering::Acquire) & COUNT_MASK) as usize
    }

    /// Whether the worker has started a job that has not ended.
    pub(crate) fn running(&self) -> bool {
        (0..SLOTS).any(|slot| self.state(slot).load(Ordering::Acquire) & 3 == RUNNING)
    }

    /// Reserves room for a job of `load`: on an idle worker only if
    /// `idle_only`, else also behind small jobs up to `bound_ns` of
    /// predicted work in all. True if reserved.
    pub(crate) fn reserve(&self, load: Load, idle_only: bool, bound_ns: u64) -> bool {
        self.load_word()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let fits = if idle_only {
                    held & COUNT_MASK == 0
                } else {
                    load.fits(held, bound_ns)
                };
                fits.then_some(held + load.0)
            })
            .is_ok()
    }

    /// Whether [`StatusPage::reserve`] would find room for `load` now.
    pub(crate) fn has_room(&self, load: Load, bound_ns: u64) -> bool {
        load.fits(self.load_word().load(Ordering::Acquire), bound_ns)
    }

    /// Gives back room reserved for a job that was never sent, or that the
    /// worker has ended.
    pub(crate) fn release(&self, load: Load) {
        self.load_word().fetch_sub(load.0, Ordering::AcqRel);
    }

    /// After a reservation: marks a free slot as holding job `seq`, queued,
    /// and returns it. A reservation guarantees a free slot: the worker
    /// frees a job's slot before it releases the job's room.
    pub(crate) fn occupy(&self, seq: u64) -> usize {
        loop {
            for slot in 0..SLOTS {
                let state = self.state(slot);
                if state
                    .compare_exchange(FREE, queued(seq), Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return slot;
                }
            }
            // Only if the worker's release raced ahead of its slot's
            // freeing, which its order of stores rules out; keep looking.
            std::hint::spin_loop();
        }
    }

    /// Frees a slot whose job was never sent.
    pub(crate) fn vacate(&self, slot: usize, seq: u64) {
        let _ = self.state(slot).compare_exchange(
            queued(seq),
            FREE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The worker's side: job `seq` in `slot` starts now, to run until
    /// `deadline_ns` (0: none). False if the slot does not hold it queued.
    pub(crate) fn start(&self, slot: usize, seq: u64, deadline_ns: u64) -> bool {
        if slot >= SLOTS {
            return false;
        }
        self.deadline(slot).store(deadline_ns, Ordering::Release);
        self.state(slot)
            .compare_exchange(
                queued(seq),
                running(seq),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The worker's side: job `seq` ended; frees its slot, then its room.
    /// False if the watchdog claimed it first: the worker is being killed,
    /// and must not answer.
    pub(crate) fn finish(&self, slot: usize, seq: u64, load: Load) -> bool {
        let ended = self
            .state(slot)
            .compare_exchange(running(seq), FREE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ended {
            self.release(load);
        }
        ended
    }

    /// The watchdog's side: claims the running job if it is past its
    /// deadline at `now_ns`. `Ok(true)` if claimed (kill the worker),
    /// `Ok(false)` if nothing runs with a deadline, `Err(at)` with the
    /// deadline still to come.
    pub(crate) fn claim_overdue(&self, now_ns: u64) -> Result<bool, u64> {
        let mut next = None;
        for slot in 0..SLOTS {
            let state = self.state(slot).load(Ordering::Acquire);
            if state & 3 != RUNNING {
                continue;
            }
            let at = self.deadline(slot).load(Ordering::Acquire);
            if at == 0 {
                continue;
            }
            if at > now_ns {
                next = Some(next.map_or(at, |n: u64| n.min(at)));
                continue;
            }
            // The deadline read may belong to a later job in the slot, whose
            // deadline is later still: the swap on the state decides.
            if self
                .state(slot)
                .compare_exchange(
                    state,
                    killed(state >> 2),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Ok(true);
            }
        }
        next.map_or(Ok(false), Err)
    }

    /// What became of job `seq` in `slot`, asked once its worker is gone.
    pub(crate) fn fate(&self, slot: usize, seq: u64) -> Fate {
        let state = self.state(slot).load(Ordering::Acquire);
        if state == queued(seq) {
            Fate::NeverStarted
        } else if state == killed(seq) {
            Fate::Killed
        } else {
            Fate::Started
        }
    }
}

fn queued(seq: u64) -> u64 {
    seq << 2 | QUEUED
}

fn running(seq: u64) -> u64 {
    seq << 2 | RUNNING
}

fn killed(seq: u64) -> u64 {
    seq << 2 | KILLED
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock deadlines are kept in.
pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> StatusPage {
        StatusPage::open(StatusPage::create()).expect("a fresh page opens")
    }

    /// An idle worker takes anything; small jobs queue behind small ones up
    /// to the bound and the slot count; nothing queues behind a job that
    /// runs alone, and such a job waits for an idle worker.
    #[test]
    fn room_follows_the_rules() {
        let page = page();
        let bound = 100_000;
        assert!(page.reserve(Load::alone(), false, bound));
        assert!(
            !page.reserve(Load::small(10), false, bound),
            "behind a heavy job"
        );
        page.release(Load::alone());
        assert!(!page.busy());

        assert!(page.reserve(Load::small(60_000), false, bound));
        assert!(
            !page.reserve(Load::small(50_000), false, bound),
            "over the bound"
        );
        assert!(
            !page.reserve(Load::alone(), false, bound),
            "a heavy job needs it idle"
        );
        assert!(!page.reserve(Load::small(1), true, bound), "not idle");
        for _ in 1..SLOTS {
            assert!(page.reserve(Load::small(1), false, bound));
        }
        assert!(
            !page.reserve(Load::small(1), false, bound),
            "every slot taken"
        );
    }

    /// A slot goes queued, running, free; a release follows the freeing.
    #[test]
    fn a_job_goes_through_its_slot() {
        let page = page();
        let load = Load::small(5);
        assert!(page.reserve(load, true, 0));
        let slot = page.occupy(7);
        assert_eq!(page.fate(slot, 7), Fate::NeverStarted);
        assert!(!page.start(slot, 8, 0), "not its job");
        assert!(page.busy() && !page.running(), "sent, not started");
        assert!(page.start(slot, 7, 0));
        assert!(page.running());
        assert_eq!(page.fate(slot, 7), Fate::Started);
        assert!(page.finish(slot, 7, load));
        assert!(!page.busy());
        assert_eq!(page.occupy(9), slot, "the slot is free again");
    }

    /// The watchdog and the worker race on the slot: the first one wins.
    #[test]
    fn the_first_to_move_the_slot_decides() {
        let page = page();
        let load = Load::alone();
        assert!(page.reserve(load, true, 0));
        let slot = page.occupy(1);
        assert!(page.start(slot, 1, 1_000));
        assert_eq!(page.claim_overdue(999), Err(1_000), "not due yet");
        assert_eq!(page.claim_overdue(1_000), Ok(true), "due at its deadline");
        assert_eq!(page.claim_overdue(2_000), Ok(false), "claimed once");
        assert!(!page.finish(slot, 1, load), "the worker lost the race");
        assert_eq!(page.fate(slot, 1), Fate::Killed);
        assert!(page.busy(), "a killed job's room is never given back");

        let page = self::page();
        assert!(page.reserve(load, true, 0));
        let slot = page.occupy(2);
        assert!(page.start(slot, 2, 1_000));
        assert!(page.finish(slot, 2, load), "answered first");
        assert_eq!(page.claim_overdue(5_000), Ok(false), "nothing to kill");
    }

    /// A job with no deadline is never claimed.
    #[test]
    fn no_deadline_no_claim() {
        let page = page();
        assert!(page.reserve(Load::alone(), true, 0));
        let slot = page.occupy(3);
        assert!(page.start(slot, 3, 0));
        assert_eq!(page.claim_overdue(u64::MAX), Ok(false));
    }
}
