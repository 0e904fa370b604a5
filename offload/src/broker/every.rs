//! [`Every`]: lets a repeated event through at most once per period, and
//! counts the ones held back, so that a broker that stays down or keeps
//! refusing is one log line every few seconds, not hundreds a minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A gate for one kind of repeated event (a log line).
#[derive(Debug)]
pub struct Every {
    period: Duration,
    state: Mutex<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    /// When the last event went through.
    last: Option<Instant>,
    /// Events held back since.
    held: u64,
}

impl Every {
    /// A gate that lets one event through per `period`.
    pub const fn new(period: Duration) -> Self {
        Every {
            period,
            state: Mutex::new(Gate {
                last: None,
                held: 0,
            }),
        }
    }

    /// Whether this event goes through now; if it does, how many were held
    /// back since the last one that did.
    pub fn pass(&self) -> Option<u64> {
        let mut gate = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if gate
            .last
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            gate.held += 1;
            return None;
        }
        gate.last = Some(now);
        Some(std::mem::take(&mut gate.held))
    }

    /// The event stopped (the broker is back): the next one goes through
    /// at once.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Gate::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first event passes, the next ones within the period are held
    /// and counted, the next pass reports them; a reset opens the gate.
    #[test]
    fn one_per_period() {
        let every = Every::new(Duration::from_millis(50));
        assert_eq!(every.pass(), Some(0));
        assert_eq!(every.pass(), None);
        assert_eq!(every.pass(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(every.pass(), Some(2));
        assert_eq!(every.pass(), None);
        every.reset();
        assert_eq!(every.pass(), Some(0));
    }
}
