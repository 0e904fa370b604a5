//! Rate-limited log lines: a flood of the same warning (a timeout storm
//! kills and replaces a worker per request) writes the first line in full,
//! then one summary a second with the number held back, instead of thousands
//! of identical lines.

use std::time::{Duration, Instant};

/// How long a window lasts: at most one full line and one summary each.
pub(super) const WINDOW: Duration = Duration::from_secs(1);

/// One kind of repeated log line.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// When the current window opened; `None` when there is none, and the
    /// next occurrence is logged in full.
    opened: Option<Instant>,
    /// Occurrences held back in the current window.
    held_back: u64,
}

impl Throttle {
    /// Whether to log this occurrence in full; if not, it is counted for the
    /// window's summary.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        match self.opened {
            Some(opened) if now.duration_since(opened) < WINDOW => {
                self.held_back += 1;
                false
            }
            _ => {
                self.opened = Some(now);
                self.held_back = 0;
                true
            }
        }
    }

    /// Once the window is over: how many occurrences it held back, if any,
    /// to be logged as one summary line. A window that held some back is
    /// followed by another, so a steady flood gives one summary a second.
    pub(super) fn summary(&mut self, now: Instant) -> Option<u64> {
        let opened = self.opened?;
        if now.duration_since(opened) < WINDOW {
            return None;
        }
        let held_back = std::mem::take(&mut self.held_back);
        self.opened = (held_back > 0).then_some(now);
        (held_back > 0).then_some(held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first occurrence is logged, the rest of the window only counted,
    /// and the count comes out once the window is over.
    #[test]
    fn first_in_full_then_a_count() {
        let start = Instant::now();
        let mut throttle = Throttle::default();
        assert!(throttle.admit(start));
        for i in 1..=1000 {
            assert!(!throttle.admit(start + Duration::from_micros(i)));
        }
        assert_eq!(throttle.summary(start + WINDOW / 2), None);
        assert_eq!(throttle.summary(start + WINDOW), Some(1000));
        // The flood goes on: still counted, one summary per window.
        assert!(!throttle.admit(start + WINDOW + Duration::from_millis(1)));
        assert_eq!(throttle.summary(start + WINDOW * 2), Some(1));
        // Then it stops: the window closes and the next one is logged again.
        assert_eq!(throttle.summary(start + WINDOW * 3), None);
        assert!(throttle.admit(start + WINDOW * 4));
    }
}
