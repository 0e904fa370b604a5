//! The reactor's doorbell: how a thread that completed a job tells the
//! reactor, without a system call per job.
//!
//! Ringing writes the poll's waker (an eventfd) only if nobody has rung
//! since the reactor last answered; the reactor answers at the top of each
//! turn, before it looks for completions. So a burst of completions that
//! arrive while the reactor is busy costs one write and one wake-up, not
//! one each: under `procs` with 8 clients that was a write per tiny job.
//! A completion is sent before the bell is rung, and the reactor answers
//! before it looks, so none is left unseen: either the ring came after the
//! answer and writes the waker, or the completion was sent before the
//! answer and is in the channel when the reactor looks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

/// A waker that coalesces rings between two answers.
#[derive(Debug)]
pub(super) struct Doorbell {
    waker: Arc<Waker>,
    rung: AtomicBool,
}

impl Doorbell {
    pub(super) fn new(waker: Arc<Waker>) -> Self {
        Doorbell {
            waker,
            rung: AtomicBool::new(false),
        }
    }

    /// After a completion is sent: wakes the reactor unless a ring is
    /// already pending.
    pub(super) fn ring(&self) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            // A failed wake leaves the completion for the next turn, which
            // the reactor's sweep tick guarantees.
            let _ = self.waker.wake();
        }
    }

    /// The reactor's side, before it runs completions' callbacks itself:
    /// until its next answer, rings cost nothing, since it looks at the
    /// completions after that answer.
    pub(super) fn hold(&self) {
        self.rung.store(true, Ordering::SeqCst);
    }

    /// The reactor's side, before it looks for completions: the next ring
    /// must wake it again.
    pub(super) fn answer(&self) {
        self.rung.store(false, Ordering::SeqCst);
        // The reactor's look at the completions must not be ordered before
        // this store, or a ring between the two would be lost.
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    /// Rings between two answers wake the poll once; after an answer the
    /// next ring wakes it again.
    #[test]
    fn rings_coalesce_until_answered() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let bell = Doorbell::new(waker);
        let mut events = Events::with_capacity(8);
        let mut wakes = |poll: &mut Poll| {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            events.iter().count()
        };
        bell.ring();
        bell.ring();
        bell.ring();
        assert_eq!(wakes(&mut poll), 1, "one wake for three rings");
        assert_eq!(wakes(&mut poll), 0, "no more until answered");
        bell.ring();
        assert_eq!(wakes(&mut poll), 0, "still pending: not rung again");
        bell.answer();
        bell.ring();
        assert_eq!(wakes(&mut poll), 1, "answered, so the next ring wakes");
        bell.answer();
        bell.hold();
        bell.ring();
        assert_eq!(wakes(&mut poll), 0, "held: the reactor looks anyway");
        bell.answer();
        bell.ring();
        assert_eq!(wakes(&mut poll), 1, "answered after the hold: wakes again");
    }
}
