//! How a request ended: a right or wrong answer, a refusal by the server
//! (`ERR <code>`), or an I/O failure of some kind.

use std::fmt;
use std::io;

use serde::Serialize;

/// The kinds of I/O failure, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoKind {
    /// The connection could not be made.
    Connect,
    /// Reading the reply failed (or the reply was too long to be one).
    Read,
    /// Sending the request failed.
    Write,
    /// No reply within `--timeout`.
    Timeout,
    /// The server closed the connection (or reset it) before replying.
    Closed,
}

/// An I/O failure of one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Failure {
    /// What failed.
    pub kind: IoKind,
    /// Why, for people: the system's message.
    pub detail: String,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer was right.
    Right,
    /// The answer was wrong.
    Wrong {
        /// The reply as received (trimmed).
        reply: String,
        /// What it should have been.
        expected: String,
    },
    /// The server answered `ERR <code> …`.
    Refused {
        /// The error code.
        code: String,
    },
    /// The request failed on the way.
    Failed(Failure),
}

impl Failure {
    /// A failure of `kind` with a fixed explanation.
    pub fn new(kind: IoKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// A failed connect.
    pub fn connect(err: &io::Error) -> Failure {
        Failure::new(IoKind::Connect, describe(err))
    }

    /// A failed read: timeouts and resets get their own kinds.
    pub fn read(err: &io::Error) -> Failure {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoKind::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => IoKind::Closed,
            _ => IoKind::Read,
        };
        Failure::new(kind, describe(err))
    }

    /// A failed write: timeouts and a peer that has gone get their own
    /// kinds.
    pub fn write(err: &io::Error) -> Failure {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoKind::Timeout,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => IoKind::Closed,
            _ => IoKind::Write,
        };
        Failure::new(kind, describe(err))
    }

    /// The server closed the connection without a (complete) reply.
    pub fn closed() -> Failure {
        Failure::new(
            IoKind::Closed,
            "the server closed the connection without a reply",
        )
    }

    /// No reply within the request's time limit.
    pub fn timeout() -> Failure {
        Failure::new(IoKind::Timeout, "no reply within --timeout")
    }
}

/// The system's message without its ` (os error N)` tail, as people write
/// it: `Connection refused`.
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) if text.ends_with(')') => text[..cut].to_owned(),
        _ => text,
    }
}

impl fmt::Display for IoKind {
    /// The lowercase name: `connect`, `read`, `write`, `timeout`, `closed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoKind::Connect => "connect",
            IoKind::Read => "read",
            IoKind::Write => "write",
            IoKind::Timeout => "timeout",
            IoKind::Closed => "closed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// System errors are described without their errno, and sorted into
    /// kinds.
    #[test]
    fn io_errors_sorted() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::connect(&refused).kind, IoKind::Connect);
        let os = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&os), "Connection refused");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::read(&reset).kind, IoKind::Closed);
        let timed_out = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(Failure::read(&timed_out).kind, IoKind::Timeout);
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(Failure::write(&pipe).kind, IoKind::Closed);
        let other = io::Error::other("odd");
        assert_eq!(Failure::write(&other).kind, IoKind::Write);
        assert_eq!(Failure::read(&other).to_string(), "read: odd");
    }
}
