//! The shutdown signal: raised once (by SIGINT, SIGTERM or SIGHUP in the binary, by hand
//! in tests), seen by the accept loop through a mio `Waker` and by every
//! connection before it starts a new request.
//!
//! Raising it also shuts the listening socket at once, on the raising
//! thread: from that moment a connect is refused (a balancer tries another
//! server) and connections still in the accept queue are reset, unanswered,
//! even while the I/O thread is busy (an `inline` reactor in a job).

use std::net::TcpListener;
use std::os::fd::AsRawFd;
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
    /// A handle on the listening socket, shut when the signal is raised.
    listener: Mutex<Option<TcpListener>>,
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
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(listener) = listener {
            stop_listening(&listener);
        }
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

    /// Lets [`Shutdown::trigger`] shut `listener` (a second handle on the
    /// server's listening socket); shuts it at once if the signal came
    /// first. The handle is dropped once shut.
    pub(crate) fn stop_listening_on(&self, listener: TcpListener) {
        let mut slot = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.is_triggered() {
            stop_listening(&listener);
        } else {
            *slot = Some(listener);
        }
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

/// Shuts a listening socket for reading: on Linux it leaves the listening
/// state, so new connects are refused and the connections in its queue are
/// reset; `accept` on it fails with `EINVAL` from then on. The descriptor
/// stays valid until its owner drops it.
fn stop_listening(listener: &TcpListener) {
    use nix::sys::socket::{shutdown, Shutdown as How};
    if let Err(err) = shutdown(listener.as_raw_fd(), How::Read) {
        tracing::warn!(%err, "could not stop listening at the shutdown signal");
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

    /// Raising the signal refuses new connects and resets the queued ones
    /// at once, before any accept loop has looked.
    #[test]
    fn trigger_stops_listening() {
        use std::io::Read;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        shutdown.stop_listening_on(listener.try_clone().unwrap());
        let mut queued = std::net::TcpStream::connect(addr).expect("queued");
        shutdown.trigger();
        let mut byte = [0u8; 1];
        let read = queued.read(&mut byte);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "a queued connection got {read:?}"
        );
        let refused = std::net::TcpStream::connect(addr).expect_err("no longer listening");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        drop(listener);
    }
}
