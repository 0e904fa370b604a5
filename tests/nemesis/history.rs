//! The client's side of a run, as the checker reads it: the history that
//! `sumclient --history` wrote (`client/src/history.rs` describes the
//! lines), placed on the run's timeline, and the counts of its `--json`
//! report.

use std::path::Path;

use serde::Deserialize;

use crate::timeline::Clock;

/// One request, on the run's timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) thread: u64,
    pub(crate) seq: u64,
    /// The request line as sent (`sumn 1001`).
    pub(crate) request: String,
    /// Its first attempt's start and its end.
    pub(crate) sent_ms: f64,
    pub(crate) done_ms: f64,
    /// Each attempt's target, end and outcome (`reply`, `closed`, …).
    pub(crate) attempts: Vec<(String, f64, String)>,
    /// The reply line, if one came (an `ERR` line too).
    pub(crate) reply: Option<String>,
    /// The I/O failure's kind, if no reply came (`timeout`, `closed`, …).
    pub(crate) failure: Option<String>,
}

/// The counts of the client's own report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientReport {
    /// Requests it counted (`ok + wrong + errors`).
    pub(crate) requests: u64,
    /// Replies that came with no request (`extra_replies.count`).
    pub(crate) extra_replies: u64,
}

#[derive(Deserialize)]
struct Header {
    started_unix_ms: f64,
}

#[derive(Deserialize)]
struct Line {
    thread: u64,
    seq: u64,
    request: String,
    sent_ms: f64,
    done_ms: f64,
    attempts: Vec<AttemptLine>,
    reply: Option<String>,
    failure: Option<String>,
}

#[derive(Deserialize)]
struct AttemptLine {
    target: String,
    at_ms: f64,
    outcome: String,
}

/// Reads a history file, placing its times on `clock`'s timeline.
///
/// # Panics
///
/// When the file is missing or a line is not what `sumclient` writes.
pub(crate) fn read(path: &Path, clock: Clock) -> Vec<Request> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    parse(&text, clock)
}

/// [`read`] on the text of a history.
pub(crate) fn parse(text: &str, clock: Clock) -> Vec<Request> {
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next().expect("a header line"))
        .unwrap_or_else(|err| panic!("the history's header: {err}"));
    let shift = clock.place(header.started_unix_ms);
    lines
        .enumerate()
        .map(|(n, line)| {
            let line: Line = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("history line {}: {err}: {line}", n + 2));
            Request {
                thread: line.thread,
                seq: line.seq,
                request: line.request,
                sent_ms: line.sent_ms + shift,
                done_ms: line.done_ms + shift,
                attempts: line
                    .attempts
                    .into_iter()
                    .map(|a| (a.target, a.at_ms + shift, a.outcome))
                    .collect(),
                reply: line.reply,
                failure: line.failure,
            }
        })
        .collect()
}

/// The counts of a `sumclient --json` report.
pub(crate) fn client_report(json: &str) -> ClientReport {
    let value: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|err| panic!("the client's report: {err}: {json}"));
    let counts = &value["overall"]["counts"];
    ClientReport {
        requests: ["ok", "wrong", "errors"]
            .iter()
            .filter_map(|k| counts[k].as_u64())
            .sum(),
        extra_replies: value["extra_replies"]["count"].as_u64().unwrap_or(0),
    }
}
