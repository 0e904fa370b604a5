//! Stopping a run early (Ctrl-C): no new requests are sent, and the ones in
//! flight get a short [`GRACE`] to be answered before they are counted as
//! interrupted, so that the partial report comes at once and is complete.
//!
//! The binary raises the [`Interrupt`] from its signal handler; the library
//! only reads it, so a test can raise it too.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long requests in flight may still take after the interrupt.
pub const GRACE: Duration = Duration::from_secs(2);

/// The longest any wait of a client thread lasts before it looks at the
/// interrupt again.
pub const SLICE: Duration = Duration::from_millis(100);

/// Raised once, when the run is to stop early.
#[derive(Debug, Default)]
pub struct Interrupt {
    /// When it was raised.
    at: OnceLock<Instant>,
}

impl Interrupt {
    /// A run not (yet) interrupted.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Raises the interrupt; returns `false` if it was raised already.
    pub fn raise(&self) -> bool {
        self.at.set(Instant::now()).is_ok()
    }

    /// Whether the run is to stop sending.
    pub fn raised(&self) -> bool {
        self.at.get().is_some()
    }

    /// The moment requests still in flight are given up, once raised.
    pub fn cutoff(&self) -> Option<Instant> {
        self.at.get().map(|&at| at + GRACE)
    }

    /// Whether the grace for requests in flight is over.
    pub fn past_cutoff(&self, now: Instant) -> bool {
        self.cutoff().is_some_and(|cutoff| now >= cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interrupt is raised once; its cutoff is the grace after that.
    #[test]
    fn raised_once() {
        let interrupt = Interrupt::new();
        assert!(!interrupt.raised());
        assert_eq!(interrupt.cutoff(), None);
        assert!(!interrupt.past_cutoff(Instant::now()));
        assert!(interrupt.raise());
        assert!(!interrupt.raise());
        let cutoff = interrupt.cutoff().expect("raised");
        assert!(interrupt.raised());
        assert!(!interrupt.past_cutoff(cutoff - Duration::from_millis(1)));
        assert!(interrupt.past_cutoff(cutoff));
    }
}
