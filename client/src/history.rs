//! `--history FILE`: every request of a run as one line of JSON, for a
//! checker that judges each answer against what happened meanwhile (the
//! fault schedule of `tests/nemesis`).
//!
//! The first line is a header; each further line is one request, written
//! once it has ended:
//!
//! ```text
//! {"history":1,"started_unix_ms":1767225600000.125,"clock":"monotonic ms since started"}
//! {"thread":0,"seq":0,"request":"sumn 1001","sent_ms":0.412,"done_ms":1.873,
//!  "attempts":[{"target":"10.213.47.50:10000","at_ms":1.873,"outcome":"reply"}],
//!  "outcome":"ok","reply":"501501"}
//! ```
//!
//! (one line each in the file). Times are milliseconds on the client's
//! monotonic clock since the history was opened, just before the run;
//! `started_unix_ms` is the wall clock at that moment, so that another
//! process can place the requests on its own timeline. `seq` numbers a
//! thread's requests in the order they ended. `attempts` lists every
//! attempt of the request, each with where it went, when it ended and how:
//! `reply` (the one that ended the request with the server's reply), an
//! I/O failure (`closed`, `reset`, `connect refused`, …, see
//! [`IoKind`](crate::outcome::IoKind)) or `ERR shutting-down` (both retried
//! under `--retries`). `outcome` is `ok`, `wrong` (with `expected`), `error`
//! (the server's `ERR` line in `reply`, its code in `code`) or `failed` (no
//! reply: `failure` is the I/O failure's kind, `detail` the system's words).
//!
//! Nothing of this runs unless `--history` is given: a thread without a
//! [`Trail`] only skips a branch. With one, each thread formats its lines
//! into its own buffer and writes it out, under a lock shared with the
//! other threads, every [`SPILL`] bytes and when the thread ends.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::job::{Check, Job};
use crate::outcome::Failure;

/// A thread writes its buffered lines out once they reach this many bytes.
pub const SPILL: usize = 64 * 1024;

/// The history file of a run, shared by its threads.
#[derive(Debug)]
pub struct History {
    /// Time zero of every `_ms` field.
    epoch: Instant,
    /// The file, and the first error writing it (later writes are skipped).
    sink: Mutex<Sink>,
}

#[derive(Debug)]
struct Sink {
    out: BufWriter<File>,
    error: Option<io::Error>,
}

/// One thread's part of the history: its lines not yet written out.
#[derive(Debug)]
pub struct Trail<'a> {
    history: &'a History,
    thread: usize,
    /// Requests of this thread recorded so far.
    seq: u64,
    buf: Vec<u8>,
}

/// An attempt of a request that did not end it (it was sent again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Where it went.
    pub target: SocketAddr,
    /// When it ended.
    pub at: Instant,
    /// How: the I/O failure's kind, or `ERR shutting-down`.
    pub outcome: String,
}

/// The header line.
#[derive(Serialize)]
struct Header {
    history: u32,
    started_unix_ms: f64,
    clock: &'static str,
}

/// One request's line.
#[derive(Serialize)]
struct Line<'a> {
    thread: usize,
    seq: u64,
    request: &'a str,
    sent_ms: f64,
    done_ms: f64,
    attempts: Vec<AttemptLine<'a>>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    target: String,
    at_ms: f64,
    outcome: &'a str,
}

impl History {
    /// Creates (or truncates) `path` and writes the header; time zero is
    /// now.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or written.
    pub fn create(path: &Path) -> io::Result<History> {
        let mut out = BufWriter::new(File::create(path)?);
        let epoch = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let header = Header {
            history: 1,
            started_unix_ms: unix.as_secs_f64() * 1000.0,
            clock: "monotonic ms since started",
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        Ok(History {
            epoch,
            sink: Mutex::new(Sink { out, error: None }),
        })
    }

    /// The part of thread `thread` (its lines carry that number).
    pub fn trail(&self, thread: usize) -> Trail<'_> {
        Trail {
            history: self,
            thread,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// Flushes the file once every thread's trail has ended.
    ///
    /// # Errors
    ///
    /// The first error met writing the file, if any.
    pub fn finish(&self) -> io::Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(err) = sink.error.take() {
            return Err(err);
        }
        sink.out.flush()
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64() * 1000.0
    }

    fn write(&self, bytes: &[u8]) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if sink.error.is_none() {
            if let Err(err) = sink.out.write_all(bytes) {
                sink.error = Some(err);
            }
        }
    }
}

impl Attempt {
    /// An attempt to `target` that ended now in `outcome`.
    pub fn now(target: SocketAddr, outcome: impl Into<String>) -> Attempt {
        Attempt {
            target,
            at: Instant::now(),
            outcome: outcome.into(),
        }
    }
}

impl Trail<'_> {
    /// Records one request that ended at `done` with `reply` (its last
    /// attempt, to `target`), after the earlier `attempts`.
    pub fn record(
        &mut self,
        request: &Job,
        line: &str,
        target: SocketAddr,
        (sent, done): (Instant, Instant),
        attempts: &[Attempt],
        reply: &Result<String, Failure>,
    ) {
        let history = self.history;
        let last = match reply {
            Ok(_) => "reply".to_owned(),
            Err(failure) => failure.kind.to_string(),
        };
        let mut entry = Line {
            thread: self.thread,
            seq: self.seq,
            request: line,
            sent_ms: history.ms(sent),
            done_ms: history.ms(done),
            attempts: attempts
                .iter()
                .map(|a| AttemptLine {
                    target: a.target.to_string(),
                    at_ms: history.ms(a.at),
                    outcome: &a.outcome,
                })
                .chain(std::iter::once(AttemptLine {
                    target: target.to_string(),
                    at_ms: history.ms(done),
                    outcome: &last,
                }))
                .collect(),
            outcome: "ok",
            reply: None,
            expected: None,
            code: None,
            failure: None,
            detail: None,
        };
        match reply {
            Ok(text) => {
                entry.reply = Some(text.trim());
                match request.check(text) {
                    Check::Right => {}
                    Check::Wrong { expected } => {
                        entry.outcome = "wrong";
                        entry.expected = Some(expected);
                    }
                    Check::Refused { code } => {
                        entry.outcome = "error";
                        entry.code = Some(code);
                    }
                }
            }
            Err(failure) => {
                entry.outcome = "failed";
                entry.failure = Some(failure.kind.to_string());
                entry.detail = Some(&failure.detail);
            }
        }
        self.seq += 1;
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &entry);
        self.buf.push(b'\n');
        if self.buf.len() >= SPILL {
            history.write(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Trail<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.history.write(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::IoKind;

    /// A header, then one line per request with its attempts, in JSON.
    #[test]
    fn lines_as_documented() {
        let dir = std::env::temp_dir().join(format!("ysum-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let history = History::create(&path).unwrap();
        let target: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let start = Instant::now();
        {
            let mut trail = history.trail(3);
            let retried = [Attempt::now(target, IoKind::Closed.to_string())];
            let times = (start, Instant::now());
            trail.record(
                &Job::Sumn(4),
                "sumn 4",
                target,
                times,
                &retried,
                &Ok("10".into()),
            );
            trail.record(
                &Job::Sumn(4),
                "sumn 4",
                target,
                times,
                &[],
                &Ok("11".into()),
            );
            let busy = Ok("ERR busy queue full".into());
            trail.record(&Job::Ping, "ping", target, times, &[], &busy);
            trail.record(
                &Job::Ping,
                "ping",
                target,
                times,
                &[],
                &Err(Failure::timeout()),
            );
        }
        history.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0]["history"], 1);
        assert!(lines[0]["started_unix_ms"].as_f64().unwrap() > 1.6e12);
        let ok = &lines[1];
        assert_eq!(
            (ok["thread"].as_u64(), ok["seq"].as_u64()),
            (Some(3), Some(0))
        );
        assert_eq!(ok["outcome"], "ok");
        assert_eq!(ok["reply"], "10");
        assert_eq!(ok["attempts"][0]["outcome"], "closed");
        assert_eq!(ok["attempts"][1]["outcome"], "reply");
        assert_eq!(ok["attempts"][1]["target"], "127.0.0.1:10000");
        assert!(ok["done_ms"].as_f64() >= ok["sent_ms"].as_f64());
        assert_eq!(lines[2]["outcome"], "wrong");
        assert_eq!(lines[2]["expected"], "10");
        assert_eq!(lines[3]["outcome"], "error");
        assert_eq!(lines[3]["code"], "busy");
        assert_eq!(lines[4]["outcome"], "failed");
        assert_eq!(lines[4]["failure"], "timeout");
        assert_eq!(lines[4]["attempts"][0]["outcome"], "timeout");
        assert_eq!(lines[4]["seq"], 3);
    }
}
