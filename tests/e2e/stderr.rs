//! Logging can never stop the server: with its stderr broken (a pipe whose
//! reader is gone, `/dev/full`) or stuck (a pipe nobody reads, flooded with
//! log lines), requests are still answered, `stats` counts the log lines
//! dropped, and SIGTERM still ends it cleanly.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{both_io, Io, Server};

both_io!(
    stderr_whose_reader_is_gone,
    stderr_that_nobody_reads,
    stderr_that_is_full
);

/// Bad requests sent in one write: each is logged (at debug), so that the
/// log lines far outrun a 64 KiB pipe and the logging queue.
const FLOOD: usize = 20_000;

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("a pipe")
}

/// The server serves, and obeys SIGTERM with a clean exit.
fn serves_then_stops(server: Server) {
    let mut conn = server.line_conn();
    assert_eq!(conn.request("ping"), "pong");
    assert_eq!(conn.request("fib 3").split(' ').nth(1), Some("bad-request"));
    assert_eq!(conn.request("sumn 10"), "55");
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

/// Floods the server with bad requests on one connection and checks every
/// one is answered.
fn flood(server: &Server) {
    let mut conn = server.line_conn();
    conn.send(&"fib 3\n".repeat(FLOOD));
    for i in 0..FLOOD {
        let reply = conn.read_line();
        assert!(
            reply.starts_with("ERR bad-request "),
            "reply {i}: {reply:?}"
        );
    }
    assert_eq!(conn.request("ping"), "pong");
}

/// stderr a pipe whose reader has gone (every write fails with EPIPE): the
/// signal thread, which logs the signal, still obeys SIGTERM.
fn stderr_whose_reader_is_gone(io: Io) {
    let (reader, writer) = pipe();
    drop(reader);
    let server = Server::start_with_stderr(
        io,
        "threads",
        &["--log-level", "debug", "--workers", "2"],
        Stdio::from(writer),
    );
    flood(&server);
    serves_then_stops(server);
}

/// stderr a pipe nobody reads, flooded with job timeouts (the process
/// pool's supervisor logs each) and bad requests (logged at debug): once the
/// pipe is full, log lines are dropped and counted in `stats`, every request
/// is still answered, and SIGTERM still ends the server.
fn stderr_that_nobody_reads(io: Io) {
    const TIMEOUTS: usize = 1000;
    let (reader, writer) = pipe();
    let server = Server::start_with_stderr(
        io,
        "procs",
        &[
            "--log-level",
            "debug",
            "--workers",
            "2",
            "--job-timeout",
            "1ms",
            "--queue-wait",
            "2s",
        ],
        Stdio::from(writer),
    );
    let mut conn = server.line_conn();
    conn.send(&"prime 18446744073709551557\n".repeat(TIMEOUTS));
    for i in 0..TIMEOUTS {
        let reply = conn.read_line();
        assert!(reply.starts_with("ERR timeout "), "reply {i}: {reply:?}");
    }
    flood(&server);
    let dropped = server.stats()["log"]["dropped"]
        .as_u64()
        .expect("stats has log.dropped");
    println!(
        "figures: {io:?}: {TIMEOUTS} timeouts and {FLOOD} bad requests logged into a pipe \
         nobody reads: every one answered, {dropped} log lines dropped"
    );
    assert!(dropped > 0, "a stuck stderr must cost log lines");
    serves_then_stops(server);
    drop(reader);
}

/// `2>/dev/full`: every write to stderr fails with ENOSPC; the server
/// serves and stops as usual.
fn stderr_that_is_full(io: Io) {
    let full = OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let server = Server::start_with_stderr(
        io,
        "threads",
        &["--log-level", "debug", "--workers", "2"],
        Stdio::from(full),
    );
    flood(&server);
    serves_then_stops(server);
}
