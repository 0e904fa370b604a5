//! The wire protocol: parsing requests and formatting replies.
//!
//! Two dialects, told apart by a connection's first byte (see
//! `docs/protocol.md`): the seed dialect (a bare decimal `n`, the reply is
//! `sumn n`, then close) and the line dialect (one request per line, one
//! reply line per request). Parsing is pure: bytes in, a [`Request`] or a
//! [`Reject`] out, so every byte sequence has a defined answer.

use std::fmt;
use std::time::Duration;

use offload::{Answer, ApplyError, Job, JobKind, StatsSnapshot};

use crate::counts::ConnectionSnapshot;

/// The longest a seed-dialect request may be: the original read 16 bytes.
pub const SEED_READ: usize = 16;

/// How much of a bad input an error detail quotes.
const QUOTE_LIMIT: usize = 64;

/// A line-dialect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Run this job and reply with its answer.
    Job(Job),
    /// Reply `pong`.
    Ping,
    /// Reply with the statistics as one line of JSON.
    Stats,
    /// Close the connection.
    Quit,
}

/// The codes of `ERR <code> <detail>` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request cannot be understood; the connection stays usable.
    BadRequest,
    /// The line is longer than the limit; the connection is closed.
    TooLong,
    /// No worker was free in time, or too many connections.
    Busy,
    /// The job ran out of time.
    Timeout,
    /// The worker process running the job died.
    WorkerLost,
    /// The server is shutting down.
    ShuttingDown,
    /// The worker pool has no fork server now (it died; a new one is
    /// starting): try again shortly.
    PoolDown,
    /// `remote`: the broker cannot be reached.
    Unavailable,
    /// The client closed its side before the answer came: the job was
    /// withdrawn (written only if the connection still takes it).
    Cancelled,
    /// Something broke inside the server (a job panicked).
    Internal,
}

impl Code {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad-request",
            Code::TooLong => "too-long",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
            Code::WorkerLost => "worker-lost",
            Code::ShuttingDown => "shutting-down",
            Code::PoolDown => "pool-down",
            Code::Unavailable => "unavailable",
            Code::Cancelled => "cancelled",
            Code::Internal => "internal",
        }
    }
}

/// An error reply: `ERR <code> <detail>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// What kind of error.
    pub code: Code,
    /// What happened, quoting the input where there is one.
    pub detail: String,
}

impl Reject {
    /// A reply with this code and detail.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Reject {
            code,
            detail: detail.into(),
        }
    }

    fn bad(detail: impl Into<String>) -> Self {
        Reject::new(Code::BadRequest, detail)
    }
}

impl fmt::Display for Reject {
    /// The reply line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR {} {}", self.code.as_str(), self.detail)
    }
}

impl From<&ApplyError> for Reject {
    fn from(err: &ApplyError) -> Self {
        let code = match err {
            ApplyError::Busy { .. } => Code::Busy,
            ApplyError::Timeout { .. } | ApplyError::Expired { .. } => Code::Timeout,
            ApplyError::WorkerLost { .. } | ApplyError::RemoteWorkerLost { .. } => Code::WorkerLost,
            ApplyError::ShuttingDown { .. } => Code::ShuttingDown,
            ApplyError::PoolDown { .. } => Code::PoolDown,
            ApplyError::Unavailable { .. } => Code::Unavailable,
            ApplyError::Cancelled { .. } => Code::Cancelled,
            ApplyError::JobPanicked { .. } => Code::Internal,
        };
        Reject::new(code, err.to_string())
    }
}

/// `bytes` as a quoted, escaped string, cut to a readable length.
pub fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTE_LIMIT)]);
    let more = if bytes.len() > QUOTE_LIMIT { "…" } else { "" };
    format!("{text:?}{more}")
}

/// Whether a connection whose first byte is `first` speaks the seed dialect.
pub fn is_seed_dialect(first: u8) -> bool {
    first.is_ascii_digit()
}

/// Parses a seed-dialect request: a decimal `n` with optional trailing
/// whitespace, read in one go.
///
/// # Errors
///
/// A `bad-request` [`Reject`] quoting the input.
pub fn parse_seed(bytes: &[u8]) -> Result<Job, Reject> {
    let number = bytes.trim_ascii_end();
    if !number.is_empty() && number.iter().all(u8::is_ascii_digit) {
        // All digits and at most 16 bytes: only the range can be wrong.
        if let Some(n) = std::str::from_utf8(number)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return Ok(Job::Sumn(n));
        }
    }
    Err(Reject::bad(format!(
        "expected a decimal number of at most {SEED_READ} digits, got {}",
        quote(bytes)
    )))
}

/// Parses one line-dialect request; `line` excludes the `\n` (a final `\r`
/// is dropped here).
///
/// # Errors
///
/// A `bad-request` [`Reject`] whose detail quotes the input.
pub fn parse_line(line: &[u8]) -> Result<Request, Reject> {
    parse_line_as(line, false)
}

/// [`parse_line`], but with `hidden_jobs` the fault-injection jobs a test
/// build of offload knows are requests too (the test-only binary
/// `sumserver-faults` asks for them; `sumserver` never does, whatever
/// features its build unified).
///
/// # Errors
///
/// As [`parse_line`].
pub fn parse_line_as(line: &[u8], hidden_jobs: bool) -> Result<Request, Reject> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(Reject::bad(format!(
            "request is not UTF-8: {}",
            quote(line)
        )));
    };
    let mut words = text.split_ascii_whitespace();
    let Some(command) = words.next() else {
        return Err(Reject::bad(
            "empty request: expected sumn, prime, sleep, ping, stats or quit",
        ));
    };
    let argument = words.next();
    let extra: Vec<&str> = words.collect();
    let no_argument = |request: Request| match argument {
        None => Ok(request),
        Some(_) => Err(Reject::bad(format!(
            "{} takes no argument, got {}",
            command.to_ascii_lowercase(),
            quote(line)
        ))),
    };
    match command.to_ascii_lowercase().as_str() {
        "ping" => return no_argument(Request::Ping),
        "stats" => return no_argument(Request::Stats),
        "quit" => return no_argument(Request::Quit),
        _ => {}
    }
    let kind = JobKind::from_name(command)
        .ok()
        .filter(|kind| hidden_jobs || JobKind::ALL.contains(kind))
        .ok_or_else(|| {
            Reject::bad(format!(
                "unknown command {} (expected sumn, prime, sleep, ping, stats or quit)",
                quote(command.as_bytes())
            ))
        })?;
    let Some(argument) = argument else {
        return Err(Reject::bad(format!(
            "{kind} needs one number, as in \"{kind} 25000\"; got {}",
            quote(line)
        )));
    };
    if !extra.is_empty() {
        return Err(Reject::bad(format!(
            "{kind} takes one number, got {}",
            quote(line)
        )));
    }
    kind.with_argument(argument)
        .map(Request::Job)
        .map_err(|err| Reject::bad(err.to_string()))
}

/// Whether the complete lines at the front of `buffer` (lines of at most
/// `max_line` bytes, as [`crate::framing::next_line`] cuts them) include a
/// `quit`: a client that sent one asked for every answer before it, so
/// shutting its side after it is not leaving.
pub fn has_quit(buffer: &[u8], max_line: usize) -> bool {
    let mut rest = buffer;
    while let crate::framing::Frame::Line { line, consumed } =
        crate::framing::next_line(rest, max_line)
    {
        if parse_line(line) == Ok(Request::Quit) {
            return true;
        }
        rest = &rest[consumed..];
    }
    false
}

/// Whether a `quit` waits, among the lines already read (`buffered`) or
/// those still in the socket `fd` (looked at, not read): for a client that
/// shut its side, whether it asked for its answers first. Only for that
/// rare moment: it peeks up to 4 KiB.
pub fn quit_waiting(fd: std::os::fd::BorrowedFd<'_>, buffered: &[u8], max_line: usize) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd as _;
    if has_quit(buffered, max_line) {
        return true;
    }
    let mut unread = [0u8; 4096];
    let Ok(n) = recv(
        fd.as_raw_fd(),
        &mut unread,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) else {
        return false;
    };
    let mut all = buffered.to_vec();
    all.extend_from_slice(&unread[..n]);
    has_quit(&all, max_line)
}

/// The reply to a line over `max_line` bytes, after which the connection
/// closes.
pub fn too_long(max_line: usize) -> Reject {
    Reject::new(
        Code::TooLong,
        format!("request line longer than {max_line} bytes; closing"),
    )
}

/// The reply to a seed request of [`SEED_READ`] digits with more digits
/// already behind it: the original would have cut the number and answered
/// for the wrong one.
pub fn seed_too_long(request: &[u8]) -> Reject {
    Reject::bad(format!(
        "number longer than {SEED_READ} digits: {}…",
        quote(request)
    ))
}

/// The reply to a job that arrives once the server is shutting down.
pub fn shutting_down(job: Job) -> Reject {
    Reject::new(
        Code::ShuttingDown,
        format!("{job} refused: the server is shutting down"),
    )
}

/// The reply line (without its newline) for a job's result.
pub fn job_reply(result: &Result<Answer, ApplyError>) -> String {
    match result {
        Ok(answer) => answer.to_string(),
        Err(err) => Reject::from(err).to_string(),
    }
}

/// The `stats` reply (without its newline): the strategy's statistics with
/// the server's own connection counters, uptime, and the log lines dropped
/// because stderr could not keep up.
pub fn stats_reply(
    strategy: StatsSnapshot,
    connections: ConnectionSnapshot,
    uptime: Duration,
) -> String {
    let log_lines_dropped = crate::logging::dropped_lines();
    let mut value = serde_json::to_value(strategy).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "connections".into(),
            serde_json::to_value(connections).unwrap_or_default(),
        );
        object.insert("uptime_s".into(), serde_json::json!(uptime.as_secs_f64()));
        object.insert(
            "log".into(),
            serde_json::json!({ "dropped": log_lines_dropped }),
        );
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command parses, names in any case, `\r\n` accepted.
    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_line(b"sumn 25000"),
            Ok(Request::Job(Job::Sumn(25_000)))
        );
        assert_eq!(parse_line(b"PRIME 7\r"), Ok(Request::Job(Job::Prime(7))));
        assert_eq!(parse_line(b"Sleep  10"), Ok(Request::Job(Job::Sleep(10))));
        assert_eq!(parse_line(b"ping"), Ok(Request::Ping));
        assert_eq!(parse_line(b"stats"), Ok(Request::Stats));
        assert_eq!(parse_line(b"QUIT"), Ok(Request::Quit));
        assert!(has_quit(b"sumn 1\nquit\n", 64));
        assert!(has_quit(b"quit\r\nsumn 1\n", 64));
        assert!(!has_quit(b"sumn 1\nqui", 64));
        assert!(!has_quit(b"sumn 1\nquit now\n", 64));
        assert_eq!(
            parse_line(b"sumn 18446744073709551615"),
            Ok(Request::Job(Job::Sumn(u64::MAX)))
        );
    }

    /// Bad requests are `bad-request` and quote what was sent.
    #[test]
    fn bad_requests_quote_the_input() {
        let cases: [(&[u8], &str); 9] = [
            (b"fib 3", "\"fib\""),
            (b"sumn", "\"sumn\""),
            (b"sumn 1 2", "\"sumn 1 2\""),
            (b"sumn -1", "\"-1\""),
            (b"sumn 18446744073709551616", "\"18446744073709551616\""),
            (b"ping now", "\"ping now\""),
            (b"", "empty request"),
            (b"\xff\xfe", "not UTF-8"),
            (b"sleep 60001", "\"60001\""),
        ];
        for (line, quoted) in cases {
            let reject = parse_line(line).expect_err("bad");
            assert_eq!(reject.code, Code::BadRequest);
            assert!(reject.to_string().contains(quoted), "{line:?}: {reject}");
            assert!(reject.to_string().starts_with("ERR bad-request "));
        }
    }

    /// The seed dialect takes digits with trailing whitespace, nothing else.
    #[test]
    fn seed_requests() {
        assert_eq!(parse_seed(b"25000"), Ok(Job::Sumn(25_000)));
        assert_eq!(parse_seed(b"25000\r\n"), Ok(Job::Sumn(25_000)));
        for bad in [&b"12x"[..], b"99999999999999999999", b"1 2", b""] {
            let reject = parse_seed(bad).expect_err("bad");
            assert!(
                reject.to_string().starts_with("ERR bad-request "),
                "{reject}"
            );
        }
        assert!(is_seed_dialect(b'7') && !is_seed_dialect(b's'));
    }

    /// Strategy errors map to their wire codes.
    #[test]
    fn apply_errors_map_to_codes() {
        let lost = ApplyError::WorkerLost {
            job: Job::Sumn(1),
            pid: 9,
            exit: offload::Exit::Signal(9),
        };
        assert_eq!(Reject::from(&lost).code.as_str(), "worker-lost");
        let panicked = ApplyError::JobPanicked {
            job: Job::Sumn(1),
            message: "boom".into(),
        };
        assert_eq!(
            Reject::from(&panicked).to_string(),
            "ERR internal sumn 1 panicked: boom"
        );
        let unavailable = ApplyError::Unavailable {
            job: Job::Sleep(1),
            reason: "down".into(),
        };
        assert_eq!(
            Reject::from(&unavailable).to_string(),
            "ERR unavailable sleep 1 cannot be handed out: down"
        );
        let remote_lost = ApplyError::RemoteWorkerLost {
            job: Job::Sleep(1),
            detail: "delivered 3 times".into(),
        };
        assert_eq!(Reject::from(&remote_lost).code.as_str(), "worker-lost");
    }

    /// Long inputs are quoted cut short.
    #[test]
    fn quotes_are_bounded() {
        let long = vec![b'a'; 1000];
        assert!(quote(&long).len() < 80);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A reply must be exactly one line: nothing a client sends may put a
    /// newline (or a carriage return) into an error's detail.
    fn is_one_line(reply: &str) -> bool {
        !reply.contains('\n') && !reply.contains('\r')
    }

    proptest! {
        /// Any bytes of a line give a request or a one-line `bad-request`.
        #[test]
        fn any_line_has_a_defined_reply(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let line: Vec<u8> = line.into_iter().filter(|&b| b != b'\n').collect();
            match parse_line(&line) {
                Ok(_) => {}
                Err(reject) => {
                    let reply = reject.to_string();
                    prop_assert_eq!(reject.code, Code::BadRequest);
                    prop_assert!(reply.starts_with("ERR bad-request "), "{}", reply);
                    prop_assert!(is_one_line(&reply), "{:?}", reply);
                }
            }
        }

        /// Any first read of the seed dialect gives a job or a one-line error.
        #[test]
        fn any_seed_request_has_a_defined_reply(bytes in proptest::collection::vec(any::<u8>(), 0..=SEED_READ)) {
            if let Err(reject) = parse_seed(&bytes) {
                prop_assert!(is_one_line(&reject.to_string()));
            }
        }

        /// Every job, written as a user types it in any case, parses back.
        #[test]
        fn jobs_round_trip(n in any::<u64>(), ms in 0..=offload::job::MAX_SLEEP_MS, upper in any::<bool>()) {
            for job in [Job::Sumn(n), Job::Prime(n), Job::Sleep(ms)] {
                let text = job.to_string();
                let text = if upper { text.to_uppercase() } else { text };
                prop_assert_eq!(parse_line(format!("{text}\r").as_bytes()), Ok(Request::Job(job)));
            }
        }

        /// Numbers past u64::MAX are refused, never wrapped.
        #[test]
        fn big_numbers_are_refused(extra in 1u128..=u128::from(u64::MAX)) {
            let n = u128::from(u64::MAX) + extra;
            let reject = parse_line(format!("sumn {n}").as_bytes()).expect_err("out of range");
            prop_assert_eq!(reject.code, Code::BadRequest);
        }
    }
}
