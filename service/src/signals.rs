//! [`StopSignals`]: SIGINT, SIGTERM and SIGHUP, turned into a graceful stop
//! by one thread that waits for them, the same in both binaries.
//!
//! The signals are blocked first, while the process still has one thread,
//! so that every thread started later inherits the mask and only the
//! waiting thread sees them (a handler could run on any thread, in the
//! middle of anything). The first one starts the graceful stop; a second
//! one during it stops the process at once, with status 128 + its number,
//! as a shell reports a process the signal killed.

use nix::sys::signal::{SigSet, Signal};

/// The exit status for a second signal is this plus its number.
pub const EXIT_SIGNALLED_BASE: i32 = 128;

/// The stop signals, blocked on the thread that made this.
#[derive(Debug)]
pub struct StopSignals {
    set: SigSet,
}

impl StopSignals {
    /// Blocks SIGINT, SIGTERM and SIGHUP on this thread. Call it first in
    /// `main`, before any thread exists (a fork server's included).
    ///
    /// # Errors
    ///
    /// When the mask cannot be set.
    pub fn block() -> nix::Result<StopSignals> {
        let set = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]);
        set.thread_block()?;
        Ok(StopSignals { set })
    }

    /// Starts the thread (`signals`) that waits for them: the first calls
    /// `on_first`, a second one exits at once (status 128 + N) once the log
    /// lines queued are written (at most 2 s).
    ///
    /// # Errors
    ///
    /// When the thread cannot start.
    pub fn watch(self, on_first: impl FnOnce(Signal) + Send + 'static) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || self.wait(on_first))
            .map(drop)
    }

    fn wait(self, on_first: impl FnOnce(Signal)) {
        let mut on_first = Some(on_first);
        loop {
            match self.set.wait() {
                Ok(signal) => match on_first.take() {
                    Some(first) => first(signal),
                    None => {
                        tracing::warn!(%signal, "second signal during the graceful stop; stopping at once");
                        crate::logging::finish();
                        std::process::exit(EXIT_SIGNALLED_BASE + signal as i32);
                    }
                },
                Err(err) => {
                    tracing::error!(%err, "cannot wait for signals");
                    return;
                }
            }
        }
    }
}
