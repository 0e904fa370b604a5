//! Where the logs go: stderr, through a bounded queue and one writer thread,
//! so that no thread of sumserver or sumworker ever blocks or dies because
//! of a log line.
//!
//! A thread that logs only formats the line and offers it to the queue
//! (tracing-appender's `non_blocking` in lossy mode); when the queue is full
//! the line is dropped and counted ([`dropped_lines`], shown by `stats`).
//! Only the writer thread touches stderr: a reader that is gone (`EPIPE`), a
//! full disk (`/dev/full`) or a pipe nobody reads (the writer blocks, the
//! queue fills, lines are dropped) costs log lines, never service. Panics
//! are logged through the same queue, not written to stderr by the default
//! hook, which would block on a full pipe.

use std::io::IsTerminal as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use thiserror::Error;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log lines the queue holds while the writer thread is behind: about 1 MB
/// of typical lines. Beyond it lines are dropped and counted.
const QUEUED_LINES: usize = 8 * 1024;

/// How long the end of the process waits for the queued lines to be
/// written before it exits without them.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// The levels a filter directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The counter of the lines the queue dropped, once logging is set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter, the
    /// event's fields at the top level), for log collectors.
    Json,
}

/// A log filter that is not one this server understands.
#[derive(Debug, Error)]
pub enum FilterError {
    /// A directive that is neither a level nor `target=level`.
    #[error(
        "{} is not a log filter: write a level (off, error, warn, info, debug, \
         trace) or target=level, comma-separated, e.g. info,offload=debug",
        quote_in(.directive, .filter)
    )]
    Directive {
        /// The whole filter as given.
        filter: String,
        /// The directive that is wrong.
        directive: String,
    },
}

/// Logging could not be set up.
#[derive(Debug, Error)]
pub enum InitError {
    /// The writer thread could not be started (out of threads).
    #[error("cannot start the logging thread")]
    NoThread,
    /// A subscriber was installed before.
    #[error("logging is already set up")]
    AlreadySet,
}

/// Logging could not be started: a bad `RUST_LOG`, or [`InitError`].
#[derive(Debug, Error)]
pub enum StartError {
    /// `RUST_LOG` (or the filter given) is not a filter.
    #[error("bad log filter: {0}")]
    Filter(#[from] FilterError),
    /// The writer could not start.
    #[error("could not set up logging: {0}")]
    Init(#[from] InitError),
}

/// Sets up logging with `filter`, or `RUST_LOG` when it is set and not
/// empty, in `format`: [`parse_filter`], then [`init`].
///
/// # Errors
///
/// [`StartError`].
pub fn start(filter: &str, format: LogFormat) -> Result<(), StartError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => filter.to_owned(),
    };
    init(parse_filter(&filter)?, format)?;
    Ok(())
}

/// `"x"`, or `"x" (in "info,x")` when the filter has more than the bad part.
fn quote_in(directive: &str, filter: &str) -> String {
    if directive == filter {
        format!("{directive:?}")
    } else {
        format!("{directive:?} (in {filter:?})")
    }
}

/// Parses a log filter (`--log-level` or `RUST_LOG`): comma-separated
/// directives, each a level or `target=level`.
///
/// tracing's own syntax also takes a bare word as a target with every level,
/// so `garbage` would silently turn every other log line off: refused here.
///
/// # Errors
///
/// [`FilterError`] quoting the first bad directive.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, FilterError> {
    let bad = |directive: &str| FilterError::Directive {
        filter: filter.to_owned(),
        directive: directive.to_owned(),
    };
    for directive in filter.split(',') {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(bad(directive)),
            None => directive,
        };
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level)) {
            return Err(bad(directive));
        }
    }
    EnvFilter::builder().parse(filter).map_err(|_| bad(filter))
}

/// Whether log lines should carry ANSI colours: only on a terminal, and
/// never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Log lines dropped so far because the writer thread was behind (stderr
/// slow, full or gone); 0 before logging is set up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The writer thread's guard, until [`finish`] takes it.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Sends every log line at or above `filter` to stderr through the lossy
/// queue, written as `format` says, and routes panic messages through it
/// too. Call once, early in `main`, and [`finish`] before the process
/// exits.
///
/// # Errors
///
/// [`InitError`]: the writer thread could not start, or a subscriber is
/// already installed (a second call).
pub fn init(filter: EnvFilter, format: LogFormat) -> Result<(), InitError> {
    use tracing_subscriber::util::SubscriberInitExt as _;
    // tracing-appender panics when it cannot start its thread (a tight
    // RLIMIT_NPROC): turned into an error here, without the default hook's
    // message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(|| {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUED_LINES)
            .thread_name("ysum-log")
            .finish(std::io::stderr())
    });
    std::panic::set_hook(default_hook);
    let (writer, guard) = started.map_err(|_| InitError::NoThread)?;
    let _ = DROPPED.set(writer.error_counter());
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => lines.with_ansi(colour_wanted()).finish().try_init(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .finish()
            .try_init(),
    };
    installed.map_err(|_| InitError::AlreadySet)?;
    *WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
    }));
    Ok(())
}

/// Writes the lines still queued, waiting at most 2 s; call
/// just before the process exits. Later log lines are dropped.
pub fn finish() {
    let Some(guard) = WRITER.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    // The guard's own drop waits for the writer, up to about a second, and
    // prints to stdout if the writer is stuck: done on a thread of its own,
    // so that neither a stuck stderr nor a broken stdout can hold or fail
    // the exit.
    wait_at_most(FLUSH_AT_EXIT, move || drop(guard));
}

/// Writes `line` straight to stderr, for the one message a failing process
/// leaves (logging may not be set up): as it is, or as a JSON object with
/// the fields of a logged error under [`LogFormat::Json`], `program` as its
/// target. A stderr nobody reads holds the exit at most 2 s; a broken one
/// loses the line.
pub fn last_words(program: &'static str, line: &str, format: LogFormat) {
    use std::io::Write as _;
    let line = match format {
        LogFormat::Text => format!("{line}\n"),
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now())
                    .to_string(),
                "level": "ERROR",
                "message": line,
                "target": program,
            })
        ),
    };
    wait_at_most(FLUSH_AT_EXIT, move || {
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
}

/// Runs `work` on a thread of its own and waits for it at most `limit`;
/// on this thread when no other can be started (out of threads).
fn wait_at_most(limit: Duration, work: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let work = std::sync::Arc::new(Mutex::new(Some(work)));
    let on_helper = std::sync::Arc::clone(&work);
    let helper = std::thread::Builder::new()
        .name("ysum-exit".into())
        .spawn(move || {
            let taken = on_helper.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(work) = taken {
                work();
            }
            drop(done);
        });
    if helper.is_ok() {
        let _ = finished.recv_timeout(limit);
    } else if let Some(work) = work.lock().unwrap_or_else(|p| p.into_inner()).take() {
        work();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Levels and target=level directives parse; bare words, empty
    /// directives and unknown levels are refused with the bad part quoted.
    #[test]
    fn filters() {
        for good in [
            "info",
            "WARN",
            "off",
            "info,offload=debug",
            "server::events=trace",
        ] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        for (bad, quoted) in [
            ("garbage", "\"garbage\""),
            ("warn=x", "\"warn=x\""),
            ("info,", "\"\""),
            ("=debug", "\"=debug\""),
            ("info,server", "\"server\""),
        ] {
            let err = parse_filter(bad).expect_err(bad).to_string();
            assert!(err.contains(quoted), "{bad}: {err}");
        }
    }
}
