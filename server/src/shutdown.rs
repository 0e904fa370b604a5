//! The shutdown signal: raised once (by SIGINT, SIGTERM or SIGHUP in the binary, by hand
//! in tests), seen by the accept loop through a mio `Waker` and by every
//! connection before it starts a new request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::Waker;

/// A cloneable handle on one shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    triggered: AtomicBool,
    /// When it was first raised: the grace period counts from here.
    at: OnceLock<Instant>,
    /// The accept loop's waker, once it is polling.
    waker: Mutex<Option<Arc<Waker>>>,
}

impl Shutdown {
    /// A signal not yet raised.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Raises the signal and wakes the accept loop. Raising it again does
    /// nothing more.
    pub fn trigger(&self) {
        let _ = self.inner.at.set(Instant::now());
        self.inner.triggered.store(true, Ordering::SeqCst);
        if let Some(waker) = self
            .inner
            .waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            // A failed wake means the poll is gone, and with it the loop.
            let _ = waker.wake();
        }
    }

    /// Whether the signal has been raised.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// When the signal was first raised, if it has been.
    pub(crate) fn triggered_at(&self) -> Option<Instant> {
        self.inner.at.get().copied()
    }

    /// Lets [`Shutdown::trigger`] wake the accept loop's poll; wakes it at
    /// once if the signal came first.
    pub(crate) fn set_waker(&self, waker: Arc<Waker>) {
        let mut slot = self.inner.waker.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_triggered() {
            let _ = waker.wake();
        }
        *slot = Some(waker);
    }
}

/// How long, once the grace period is over, the requests cut short have to
/// be told `ERR shutting-down` (a job stops at its next yield point, well
/// within this) before every connection is closed.
pub(crate) const CUT_TIME: Duration = Duration::from_secs(1);

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Requests still unanswered when the grace period ran out: each was
    /// cut short and told `ERR shutting-down` (0 when everything finished
    /// in time).
    pub cut_short: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every clone sees the signal once it is raised.
    #[test]
    fn clones_share_the_signal() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_triggered());
        shutdown.trigger();
        assert!(clone.is_triggered());
    }
}
