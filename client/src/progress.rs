//! The progress bar on stderr (indicatif): for a request count, requests
//! done of the total; for a duration, time gone of the run's length; both
//! with the current rate and the time left. It is wiped when the run ends,
//! normally or by Ctrl-C.
//!
//! The caller decides whether to show it (the binary does when stderr is a
//! terminal); it never goes to stdout, so it cannot spoil a report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{Amount, Config};

/// How often the bar is updated.
const EVERY: Duration = Duration::from_millis(250);

/// What the bar measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Measured requests finished, of this many planned.
    Requests(u64),
    /// Milliseconds since the start, of this many (warmup and duration).
    Millis(u64),
}

/// The progress thread; dropping this stops it and wipes the bar.
#[derive(Debug)]
pub struct Progress<'scope> {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    /// Joined on drop, so the bar is wiped before anything else prints.
    thread: Option<ScopedJoinHandle<'scope, ()>>,
}

impl Measure {
    /// What the bar of a run of `config` measures.
    pub fn of(config: &Config) -> Measure {
        match config.amount {
            Amount::Requests(_) => Measure::Requests(config.planned_requests().unwrap_or(0)),
            Amount::Duration(length) => {
                let whole = config.warmup + length;
                Measure::Millis(u64::try_from(whole.as_millis()).unwrap_or(u64::MAX))
            }
        }
    }

    /// The bar's length.
    fn len(self) -> u64 {
        match self {
            Measure::Requests(n) | Measure::Millis(n) => n,
        }
    }

    /// The bar's layout: what its position counts, then the rate (in the
    /// message) and the time left.
    pub fn template(self) -> &'static str {
        match self {
            Measure::Requests(_) => {
                "[{bar:30}] {pos}/{len} requests, {msg}, {elapsed} gone, ETA {eta}"
            }
            Measure::Millis(_) => "[{bar:30}] {msg}, {elapsed} gone, ETA {eta}",
        }
    }
}

impl<'scope> Progress<'scope> {
    /// Starts the progress thread in `scope`, reading `finished` (measured
    /// requests done so far) for a run of `config` that started at
    /// `started`; with `show` false, nothing is drawn and no thread runs.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        config: &Config,
        finished: &'env AtomicU64,
        started: Instant,
        show: bool,
    ) -> Progress<'scope> {
        if !show {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let measure = Measure::of(config);
        let bar = bar(measure, ProgressDrawTarget::stderr());
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sumclient-progress".into())
            .spawn_scoped(scope, move || {
                let mut last = (started, 0u64);
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let now = Instant::now();
                    let done = finished.load(Ordering::Relaxed);
                    let seconds = now.duration_since(last.0).as_secs_f64();
                    let rate = done.saturating_sub(last.1) as f64 / seconds.max(1e-9);
                    last = (now, done);
                    update(&bar, measure, done, rate, now.duration_since(started));
                }
                bar.finish_and_clear();
            })
            .ok();
        Progress {
            stop: Some(stop),
            thread,
        }
    }
}

/// A bar for `measure`, drawn to `target`.
pub fn bar(measure: Measure, target: ProgressDrawTarget) -> ProgressBar {
    let style = ProgressStyle::with_template(measure.template())
        .expect("the templates are valid")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(measure.len()), target).with_style(style)
}

/// Moves the bar: `done` measured requests, `rate` per second now, after
/// `running`.
pub fn update(bar: &ProgressBar, measure: Measure, done: u64, rate: f64, running: Duration) {
    match measure {
        Measure::Requests(_) => {
            bar.set_position(done);
            bar.set_message(format!("{rate:.0} requests/s now"));
        }
        Measure::Millis(total) => {
            let gone = u64::try_from(running.as_millis()).unwrap_or(u64::MAX);
            bar.set_position(gone.min(total));
            bar.set_message(format!("{done} requests, {rate:.0} requests/s now"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;

    /// A request count shows done of total and the time left; a duration
    /// shows the requests and the time left of its length.
    #[test]
    fn bar_shows_total_and_eta() {
        let mut config = Config::seed(4);
        assert_eq!(Measure::of(&config), Measure::Requests(1000));
        let term = InMemoryTerm::new(2, 100);
        let shown = bar(
            Measure::Requests(1000),
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        update(
            &shown,
            Measure::of(&config),
            250,
            1234.4,
            Duration::from_secs(3),
        );
        shown.tick();
        let line = term.contents();
        assert!(
            line.contains("250/1000 requests, 1234 requests/s now"),
            "{line:?}"
        );
        assert!(line.contains("ETA"), "{line:?}");

        config.amount = Amount::Duration(Duration::from_secs(10));
        config.warmup = Duration::from_secs(2);
        let measure = Measure::of(&config);
        assert_eq!(measure, Measure::Millis(12_000));
        let term = InMemoryTerm::new(2, 100);
        let shown = bar(
            measure,
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        update(&shown, measure, 3001, 1002.0, Duration::from_secs(6));
        shown.tick();
        let line = term.contents();
        assert!(
            line.contains("3001 requests, 1002 requests/s now"),
            "{line:?}"
        );
        assert!(line.contains("ETA"), "{line:?}");
        shown.finish_and_clear();
        assert_eq!(term.contents().trim(), "", "wiped");
    }
}
