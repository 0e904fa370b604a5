//! The error replies a client can provoke from outside: `too-long`, `busy`
//! and `timeout`. (`bad-request` is in every smoke test, `worker-lost` in
//! `procs`, `shutting-down` in `lifecycle`.)

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{both_io, Io, Server};

both_io!(
    line_over_max_line_is_refused_and_closed,
    full_pool_answers_busy_threads,
    full_pool_answers_busy_procs,
    held_lock_answers_busy_exclusive,
    long_job_times_out_inline,
    long_job_times_out_exclusive,
    long_job_times_out_threads,
    long_job_times_out_procs,
    overlong_seed_number_is_refused,
    a_panicking_job_harms_only_its_caller,
);

/// A line over `--max-line` bytes gets `ERR too-long …` and the connection is
/// closed.
fn line_over_max_line_is_refused_and_closed(io: Io) {
    let server = Server::start(io, "threads", &["--max-line", "64"]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 25000"), "312512500");
    let reply = conn.request(&"x".repeat(100));
    assert!(reply.starts_with("ERR too-long "), "got {reply:?}");
    assert_eq!(conn.read_until_closed(), "", "nothing may follow too-long");
    // The server itself is fine.
    assert_eq!(server.line_conn().request("ping"), "pong");
}

/// `--apply threads` with one worker and a queue of one refuses extra jobs
/// with `ERR busy …` while the worker sleeps.
fn full_pool_answers_busy_threads(io: Io) {
    busy(io, "threads", &["--workers", "1"]);
}

/// `--apply procs` with one worker and a queue of one refuses extra jobs with
/// `ERR busy …` while the worker sleeps.
fn full_pool_answers_busy_procs(io: Io) {
    busy(io, "procs", &["--workers", "1"]);
}

/// `--apply exclusive` with a queue of one refuses extra jobs with
/// `ERR busy …` while one job holds the lock (with `--io events` the held
/// lock stalls the reactor instead, and the jobs are served after it).
fn held_lock_answers_busy_exclusive(io: Io) {
    busy(io, "exclusive", &[]);
}

fn busy(io: Io, apply: &str, workers: &[&str]) {
    let mut args = vec!["--queue", "1", "--queue-wait", "100ms"];
    args.extend_from_slice(workers);
    let server = Server::start(io, apply, &args);
    let mut holder = server.line_conn();
    holder.send("sleep 1500\n");
    thread::sleep(Duration::from_millis(200));

    let replies: Vec<String> = thread::scope(|scope| {
        let askers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| server.line_conn().request("sumn 1")))
            .collect();
        askers
            .into_iter()
            .map(|asker| asker.join().expect("asker thread"))
            .collect()
    });
    if io == Io::Events && apply == "exclusive" {
        // One thread holds the lock and the loop: the askers' jobs are not
        // even read until the sleep is over, and then the lock is free.
        assert_eq!(replies, ["1", "1", "1"], "the reactor stalled, then served");
        assert_eq!(holder.read_line(), "ok");
        return;
    }
    assert!(
        replies.iter().any(|r| r.starts_with("ERR busy ")),
        "no busy reply among {replies:?}"
    );
    assert!(
        replies
            .iter()
            .all(|r| r == "1" || r.starts_with("ERR busy ")),
        "unexpected replies {replies:?}"
    );

    assert_eq!(holder.read_line(), "ok", "the sleep itself completes");
    assert_eq!(server.line_conn().request("sumn 1"), "1", "free again");
    let stats = server.stats();
    assert!(
        stats["jobs"]["sumn"]["busy"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "busy not counted: {stats}"
    );
}

/// `--apply inline` stops a job at its `--job-timeout` with `ERR timeout …`.
fn long_job_times_out_inline(io: Io) {
    timeout(io, "inline");
}

/// `--apply exclusive` stops a job at its `--job-timeout` with `ERR timeout …`.
fn long_job_times_out_exclusive(io: Io) {
    timeout(io, "exclusive");
}

/// `--apply threads` stops a job at its `--job-timeout` with `ERR timeout …`.
fn long_job_times_out_threads(io: Io) {
    timeout(io, "threads");
}

/// `--apply procs` stops a job at its `--job-timeout` with `ERR timeout …`
/// and keeps serving afterwards.
fn long_job_times_out_procs(io: Io) {
    timeout(io, "procs");
}

fn timeout(io: Io, apply: &str) {
    let server = Server::start(io, apply, &["--job-timeout", "200ms"]);
    let mut conn = server.line_conn();
    let started = Instant::now();
    // The largest prime below 2⁶⁴: about 2 × 10⁹ trial divisions.
    let reply = conn.request("prime 18446744073709551557");
    let took = started.elapsed();
    assert!(reply.starts_with("ERR timeout "), "got {reply:?}");
    assert!(
        took < Duration::from_secs(2),
        "timed out only after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(150),
        "timed out after {took:?}"
    );
    assert_eq!(conn.request("sumn 25000"), "312512500", "serves again");
    let stats = server.stats();
    assert!(
        stats["jobs"]["prime"]["timeout"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "timeout not counted: {stats}"
    );
}

/// A seed-dialect number longer than the original's 16-byte read is refused
/// as `bad-request`, not cut to its first 16 digits and answered wrongly.
fn overlong_seed_number_is_refused(io: Io) {
    let server = Server::start(io, "inline", &[]);
    let reply = server.seed(b"1234567890123456789012345");
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("ERR bad-request number longer than 16 digits"),
        "got {reply:?}"
    );
    assert_eq!(server.seed(b"25000"), b"312512500");
}

/// A job that panics (offload's hidden fault-injection job, served by the
/// test binary `sumserver-faults` only) gets `ERR internal` for its own caller; the connection,
/// the other clients and the pool carry on under every strategy.
fn a_panicking_job_harms_only_its_caller(io: Io) {
    for apply in ["inline", "exclusive", "threads", "procs"] {
        let server = Server::start_faulty(io, apply, &["--workers", "2"]);
        let mut bystander = server.line_conn();
        let mut victim = server.line_conn();
        let reply = victim.request("panic 1");
        assert!(
            reply.starts_with("ERR internal "),
            "{apply}: expected ERR internal, got {reply:?}"
        );
        assert_eq!(victim.request("sumn 10"), "55", "{apply}: same connection");
        assert_eq!(bystander.request("sumn 100"), "5050", "{apply}: bystander");
        assert_eq!(server.line_conn().request("ping"), "pong", "{apply}");
    }
}
