//! [`Stop`]: the graceful stop a signal starts, and the one deadline every
//! thread keeps to: the signal's time plus `--grace`. Running jobs may
//! finish until then, replies be sent until then; after it nothing waits
//! (a job still running is handed back, an unsent reply is abandoned and
//! its job stays pending, for another worker after the lease).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The stop, once asked for.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    /// Raised by the signal: take no more jobs.
    requested: AtomicBool,
    /// When everything must be over.
    by: OnceLock<Instant>,
    /// Raised once the reader has stopped and the running jobs are done or
    /// handed back: the lease and replier threads finish.
    helpers: AtomicBool,
}

impl Stop {
    /// Asks for the stop: everything must be over within `grace`.
    pub(crate) fn request(&self, grace: Duration) {
        let _ = self.by.set(Instant::now() + grace);
        self.requested.store(true, Ordering::Release);
    }

    /// Whether the stop was asked for.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The time left before everything must be over; `None` before the
    /// stop was asked for.
    pub(crate) fn left(&self) -> Option<Duration> {
        self.by
            .get()
            .map(|by| by.saturating_duration_since(Instant::now()))
    }

    /// Tells the helper threads to finish.
    pub(crate) fn release_helpers(&self) {
        self.helpers.store(true, Ordering::Release);
    }

    /// Whether the helper threads should finish.
    pub(crate) fn helpers_released(&self) -> bool {
        self.helpers.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is left to wait for before the request; after it, the grace
    /// counts down from the request, and a second request moves nothing.
    #[test]
    fn the_grace_counts_from_the_request() {
        let stop = Stop::default();
        assert!(!stop.is_requested() && stop.left().is_none());
        stop.request(Duration::from_secs(10));
        stop.request(Duration::from_secs(100));
        let left = stop.left().expect("requested");
        assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9));
        assert!(!stop.helpers_released());
        stop.release_helpers();
        assert!(stop.helpers_released());
    }
}
