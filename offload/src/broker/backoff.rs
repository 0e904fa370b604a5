//! [`Backoff`]: how long to wait before the next attempt to reach a broker
//! that did not answer, doubling up to a cap.

use std::time::Duration;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_millis(20);

/// The longest wait: small enough that service is back well within 2 s of
/// the broker's return, large enough not to hammer a broker that is down.
const CAP: Duration = Duration::from_millis(400);

/// Waits that double from 20 ms to 400 ms, and start over after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next attempt; each call doubles the following one
    /// up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(CAP);
        wait
    }

    /// An attempt succeeded: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits double, stop at the cap, and start over after a reset.
    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..7).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 400, 400]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST);
    }
}
