//! `sleep ms`: a job that waits without using the CPU.
//!
//! It stands for I/O (a database query, a call to another service): the kind
//! of work where threads shine, because a waiting thread costs nothing but
//! memory (see `shared/seeds/002`). The wait is capped at [`MAX_SLEEP_MS`].

use std::time::{Duration, Instant};

use super::cancel::{Cancel, Stop};

/// The longest sleep a job may ask for: one minute. Longer requests are
/// refused when the job is parsed, so a client cannot park workers for hours.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// How often a sleeping job wakes to look at its cancellation flags: a
/// cancelled sleep ends within this long, at the cost of a hundred wake-ups a
/// second, which is nothing next to the work a CPU job does.
const NAP: Duration = Duration::from_millis(10);

/// Waits `ms` milliseconds (at most [`MAX_SLEEP_MS`]), or until `cancel`
/// stops it: its deadline ends the sleep exactly on time.
///
/// # Errors
///
/// Returns the [`Stop`] reason when the sleep is cut short.
pub fn sleep(ms: u64, cancel: &Cancel<'_>) -> Result<(), Stop> {
    let end = Instant::now() + Duration::from_millis(ms.min(MAX_SLEEP_MS));
    loop {
        cancel.check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        let mut wake = end.min(now + NAP);
        if let Some(deadline) = cancel.deadline() {
            wake = wake.min(deadline);
        }
        std::thread::sleep(wake.saturating_duration_since(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A short sleep lasts at least as long as asked.
    #[test]
    fn sleeps_at_least_as_asked() {
        let start = Instant::now();
        assert_eq!(sleep(30, &Cancel::never()), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    /// A deadline ends a long sleep early, as `Stop::Deadline`.
    #[test]
    fn deadline_cuts_sleep() {
        let start = Instant::now();
        let token = Cancel::never().with_deadline(Some(start + Duration::from_millis(20)));
        assert_eq!(sleep(MAX_SLEEP_MS, &token), Err(Stop::Deadline));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// A raised flag ends a sleep at its next nap.
    #[test]
    fn flag_cuts_sleep() {
        let flag = AtomicBool::new(true);
        assert_eq!(
            sleep(MAX_SLEEP_MS, &Cancel::never().with_flag(&flag)),
            Err(Stop::Cancelled)
        );
    }
}
