//! The live progress line on stderr: requests done and the current rate,
//! rewritten in place twice a second once a run has lasted about two
//! seconds, and wiped when the run ends.
//!
//! The caller decides whether to show it (the binary does when stderr is a
//! terminal); it never goes to stdout, so it cannot spoil a report.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// Runs shorter than this never show the line.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// How often the line is rewritten.
const EVERY: Duration = Duration::from_millis(500);

/// The progress thread; dropping this stops it and wipes the line.
#[derive(Debug)]
pub struct Progress<'scope> {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    /// Joined on drop, so the line is wiped before anything else prints.
    thread: Option<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Progress<'scope> {
    /// Starts the progress thread in `scope`, reading `finished` (requests
    /// done so far) for a run that started at `started`.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        finished: &'env AtomicU64,
        started: Instant,
    ) -> Progress<'scope> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sumclient-progress".into())
            .spawn_scoped(scope, move || {
                let mut shown = false;
                let mut last = (started, 0u64);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let now = Instant::now();
                    let done = finished.load(Ordering::Relaxed);
                    let seconds = now.duration_since(last.0).as_secs_f64();
                    let rate = (done - last.1) as f64 / seconds.max(1e-9);
                    last = (now, done);
                    if now.duration_since(started) >= QUIET_FOR {
                        shown = true;
                        eprint!("\r{}", line(done, rate, now.duration_since(started)));
                        let _ = std::io::stderr().flush();
                    }
                }
                if shown {
                    // Wipe the line: carriage return, erase to end of line.
                    eprint!("\r\x1b[K");
                }
            })
            .ok();
        Progress {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The text of the line.
fn line(done: u64, rate: f64, running: Duration) -> String {
    format!(
        "{done} requests done, {rate:.0} requests/s now, {:.0} s",
        running.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line says how many, how fast and for how long.
    #[test]
    fn line_text() {
        assert_eq!(
            line(1234, 567.8, Duration::from_millis(3400)),
            "1234 requests done, 568 requests/s now, 3 s"
        );
    }
}
