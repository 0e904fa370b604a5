//! The access log: one `debug` line per request under the target `access`,
//! with the client's address, the request's kind, its outcome and the time
//! from reading it to having its reply. Off by default; `--log-level
//! access=debug` (with `info` for the rest: `info,access=debug`) turns it
//! on without a rebuild. Both I/O models call [`request`].
//!
//! The fields are computed only when the line is wanted: a disabled
//! `tracing` call costs a cached check.

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{Reject, Request};

/// The kind of a parsed request line: the job's kind, `ping`, `stats`,
/// `quit`, or `invalid` for a line that is none of them.
pub(crate) fn kind_of(request: &Result<Request, Reject>) -> &'static str {
    match request {
        Ok(Request::Job(job)) => job.kind().name(),
        Ok(Request::Ping) => "ping",
        Ok(Request::Stats) => "stats",
        Ok(Request::Quit) => "quit",
        Err(_) => "invalid",
    }
}

/// Logs one request: `reply` is what the client was sent (its error code
/// becomes the outcome, anything else is `ok`).
pub(crate) fn request(peer: Option<SocketAddr>, kind: &str, reply: &str, took: Duration) {
    tracing::debug!(
        target: "access",
        peer = %Peer(peer),
        request = kind,
        outcome = outcome(reply),
        took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
}

/// `ok`, or the code of an `ERR <code> <detail>` reply.
fn outcome(reply: &str) -> &str {
    match reply.strip_prefix("ERR ") {
        Some(rest) => rest.split([' ', '\n']).next().unwrap_or(rest),
        None => "ok",
    }
}

/// A peer address, `-` when the socket could not say.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies map onto outcomes: answers are `ok`, errors their code.
    #[test]
    fn outcomes() {
        assert_eq!(outcome("55"), "ok");
        assert_eq!(outcome("pong\n"), "ok");
        assert_eq!(outcome("ERR busy no free worker"), "busy");
        assert_eq!(outcome("ERR too-long\n"), "too-long");
        assert_eq!(kind_of(&crate::protocol::parse_line(b"prime 7")), "prime");
        assert_eq!(kind_of(&crate::protocol::parse_line(b"fib 3")), "invalid");
    }
}
