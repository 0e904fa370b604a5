//! How a request ended: a right or wrong answer, a refusal by the server
//! (`ERR <code>`), or an I/O failure of some kind.

use std::fmt;
use std::io;

use serde::Serialize;

/// The kinds of I/O failure, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoKind {
    /// The connection was refused: nothing listens at the address.
    ConnectRefused,
    /// The connection could not be made for another reason (no route, no
    /// answer within the time limit).
    Connect,
    /// Reading the reply failed (or the reply was too long to be one).
    Read,
    /// Sending the request failed.
    Write,
    /// No reply within `--timeout`.
    Timeout,
    /// The server closed the connection (EOF) before replying.
    Closed,
    /// The connection was reset (or the pipe broke) before the reply.
    Reset,
    /// Cut short by Ctrl-C: the request was in flight when the grace for
    /// in-flight requests ran out.
    Interrupted,
}

/// An I/O failure of one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Failure {
    /// What failed.
    pub kind: IoKind,
    /// Why, for people: the system's message.
    pub detail: String,
    /// Whether some bytes of the reply had arrived when it failed: such a
    /// request is never sent again.
    pub reply_started: bool,
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
            reply_started: false,
        }
    }

    /// A failed connect: a refusal gets its own kind.
    pub fn connect(err: &io::Error) -> Failure {
        let kind = match err.kind() {
            io::ErrorKind::ConnectionRefused => IoKind::ConnectRefused,
            _ => IoKind::Connect,
        };
        Failure::new(kind, describe(err))
    }

    /// Whether the request may be sent again on a new connection
    /// (`--retries`): its connection was refused, reset or closed before
    /// any byte of its reply arrived, so the server cannot have answered it.
    pub fn retryable(&self) -> bool {
        !self.reply_started
            && matches!(
                self.kind,
                IoKind::ConnectRefused | IoKind::Reset | IoKind::Closed
            )
    }

    /// Whether the connection could not be made at all.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, IoKind::ConnectRefused | IoKind::Connect)
    }

    /// A failed read: timeouts and resets get their own kinds.
    pub fn read(err: &io::Error) -> Failure {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoKind::Timeout,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => IoKind::Reset,
            io::ErrorKind::UnexpectedEof => IoKind::Closed,
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
            | io::ErrorKind::ConnectionAborted => IoKind::Reset,
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

    /// In flight when Ctrl-C's grace ran out.
    pub fn interrupted() -> Failure {
        Failure::new(
            IoKind::Interrupted,
            "still in flight when Ctrl-C's grace ran out",
        )
    }

    /// The same failure, noting that part of the reply had arrived.
    pub fn after_reply_started(self, started: bool) -> Failure {
        Failure {
            reply_started: started,
            ..self
        }
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
    /// The name in reports: `connect refused`, `connect`, `read`, `write`,
    /// `timeout`, `closed`, `reset`, `interrupted`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoKind::ConnectRefused => "connect refused",
            IoKind::Connect => "connect",
            IoKind::Read => "read",
            IoKind::Write => "write",
            IoKind::Timeout => "timeout",
            IoKind::Closed => "closed",
            IoKind::Reset => "reset",
            IoKind::Interrupted => "interrupted",
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
        assert_eq!(Failure::connect(&refused).kind, IoKind::ConnectRefused);
        assert_eq!(IoKind::ConnectRefused.to_string(), "connect refused");
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert_eq!(Failure::connect(&unreachable).kind, IoKind::Connect);
        let os = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&os), "Connection refused");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::read(&reset).kind, IoKind::Reset);
        let timed_out = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(Failure::read(&timed_out).kind, IoKind::Timeout);
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(Failure::write(&pipe).kind, IoKind::Reset);
        let other = io::Error::other("odd");
        assert_eq!(Failure::write(&other).kind, IoKind::Write);
        assert_eq!(Failure::read(&other).to_string(), "read: odd");
    }

    /// Only a refused, reset or closed connection with no byte of the reply
    /// is sent again; a timeout never is (the server may still be working).
    #[test]
    fn what_is_retried() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(Failure::connect(&refused).retryable());
        assert!(Failure::closed().retryable());
        assert!(!Failure::closed().after_reply_started(true).retryable());
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(Failure::read(&reset).retryable());
        assert!(!Failure::timeout().retryable());
        assert!(!Failure::interrupted().retryable());
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert!(!Failure::connect(&unreachable).retryable());
    }
}
