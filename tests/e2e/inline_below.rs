//! `--inline-below`: tiny jobs run on the connection's own thread (or the
//! reactor), counted in `stats`, while a heavy job still goes to a worker
//! process and is killed there at its timeout.

use std::time::{Duration, Instant};

use crate::support::{both_io, eventually, Io, Server};

both_io!(
    tiny_jobs_inline_heavy_jobs_killed_in_a_worker,
    inline_jobs_in_the_metrics
);

/// `/metrics` counts the jobs `--inline-below` ran, as `stats` does, and
/// shows the threshold; `YSUM_INLINE_BELOW` sets it.
fn inline_jobs_in_the_metrics(io: Io) {
    let server = Server::start_with_env(
        io,
        &[("YSUM_INLINE_BELOW", "100us")],
        &[
            "--apply",
            "threads",
            "--workers",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut conn = server.line_conn();
    for _ in 0..7 {
        assert_eq!(conn.request("sumn 1"), "1");
    }
    let ran = server.stats()["inline_below"]["ran_inline"].clone();
    assert_eq!(ran, 7, "{ran}");
    let body = server.scrape();
    assert!(
        body.contains("\nysum_inline_below_jobs_total 7\n"),
        "{body}"
    );
    assert!(
        body.contains("\nysum_inline_below_threshold_seconds 0.0001\n"),
        "{body}"
    );
}

/// The largest prime below 2⁶⁴: about two billion divisions, never inline.
const HUGE_PRIME: &str = "prime 18446744073709551557";

/// `--apply procs --inline-below 100us --job-timeout 200ms`: `sumn 1` is
/// answered and counted as run inline, `sleep` is not (a sleep is never
/// predicted; a `ping` beside one answers at once), and the huge prime ends
/// in `ERR timeout` from a worker that is killed and replaced, without
/// being counted inline.
fn tiny_jobs_inline_heavy_jobs_killed_in_a_worker(io: Io) {
    let server = Server::start(
        io,
        "procs",
        &[
            "--workers",
            "2",
            "--inline-below",
            "100us",
            "--job-timeout",
            "200ms",
        ],
    );
    let rule = &server.stats()["inline_below"];
    assert_eq!(rule["threshold_us"], 100.0, "{rule}");
    assert!(
        rule["calibrated"]["sumn_step_ns"].as_f64() > Some(0.0),
        "{rule}"
    );
    assert!(
        rule["calibrated"]["prime_step_ns"].as_f64() > Some(0.0),
        "{rule}"
    );

    let mut conn = server.line_conn();
    let tiny = 20;
    for _ in 0..tiny {
        assert_eq!(conn.request("sumn 1"), "1");
    }
    assert_eq!(conn.request("sleep 1"), "ok");
    let stats = server.stats();
    assert_eq!(stats["inline_below"]["ran_inline"], tiny, "{stats}");
    assert_eq!(stats["jobs"]["sumn"]["ok"], tiny, "{stats}");
    assert_eq!(stats["jobs"]["sleep"]["ok"], 1, "{stats}");

    // A sleep is never inline: on the reactor it would stall this ping.
    let mut sleeper = server.line_conn();
    sleeper.send("sleep 150\n");
    assert!(
        eventually(Duration::from_secs(5), || server.stats()["workers"]["busy"]
            == 1),
        "the sleep never reached a worker"
    );
    let pinged = Instant::now();
    assert_eq!(server.line_conn().request("ping"), "pong");
    assert!(
        pinged.elapsed() < Duration::from_millis(500),
        "ping took {:?} beside a sleep",
        pinged.elapsed()
    );
    assert_eq!(sleeper.read_line(), "ok");

    let stats = server.stats();
    let workers_before = stats["workers"]["respawned"].as_u64().unwrap();
    let asked = Instant::now();
    let reply = conn.request(HUGE_PRIME);
    let took = asked.elapsed();
    assert!(reply.starts_with("ERR timeout "), "got {reply:?}");
    // The target is 0.7 s; the bound is loose for a loaded test machine.
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "timed out after {took:?}"
    );
    eprintln!(
        "procs × {} --inline-below: timeout after {took:.2?}",
        io.name()
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            server.stats()["workers"]["respawned"].as_u64().unwrap() > workers_before
        }),
        "the timed-out worker was not replaced:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("its job ran past the job timeout"),
        "no timeout kill logged:\n{}",
        server.log()
    );
    let stats = server.stats();
    assert_eq!(stats["inline_below"]["ran_inline"], tiny, "{stats}");
    assert_eq!(stats["jobs"]["prime"]["timeout"], 1, "{stats}");
    // Both paths still serve: a small job here, a sleep in a worker.
    assert_eq!(conn.request("sumn 25000"), "312512500");
    assert_eq!(conn.request("sleep 1"), "ok");
}
