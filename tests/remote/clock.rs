//! One clock: deadlines are judged on the broker's, so a worker whose own
//! clock is 20 s ahead or behind (libfaketime) answers every job as fast as
//! any other, its offset shows in `stats` and `/metrics`, and it warns; a
//! job a worker finds past its deadline is answered `expired` at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engines::{Redis, Worker};
use crate::security::{scratch, server_on};
use crate::support::{eventually, Io, IO_TIMEOUT};

/// A worker's clock `shift` (`+20s`, `-20s`) away from the true one: the
/// real-time clock only, as `FAKETIME_DONT_FAKE_MONOTONIC` leaves timed
/// waits alone.
fn skewed_worker(redis: &Redis, name: &str, shift: &str, log: &std::path::Path) -> Worker {
    let library = option_env!("YSUM_FAKETIME_LIB").unwrap_or_else(|| {
        panic!(
            "libfaketime is not installed (apt-get install -y faketime), and \
             YSUM_REQUIRE_ENGINES=1 makes these tests mandatory"
        )
    });
    let stderr = std::fs::File::create(log).expect("the worker's log");
    Worker::launch_with(
        &[],
        &redis.url(),
        name,
        &["--lease", "1s"],
        &[
            ("LD_PRELOAD", library),
            ("FAKETIME", shift),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        Stdio::from(stderr),
    )
}

/// With the only worker's clock 20 s ahead, then 20 s behind: every job is
/// answered right and at once, `stats` and `/metrics` show the worker's
/// offset, and the worker warns about its clock.
fn skewed_worker_answers(io: Io) {
    for (shift, offset) in [("+20s", -20_000i64), ("-20s", 20_000)] {
        let redis = Redis::start();
        let dir = scratch(&format!("clock-{}-{shift}", io.name()));
        let log = dir.join("worker.log");
        let name = format!("skewed{}", if offset < 0 { "-ahead" } else { "-behind" });
        let mut worker = skewed_worker(&redis, &name, shift, &log);
        let server = server_on(io, &redis.url(), &["--metrics", "127.0.0.1:0"]);
        let mut conn = server.line_conn();
        for n in 1..=20u64 {
            let started = Instant::now();
            assert_eq!(
                conn.request(&format!("sumn {n}")),
                (n * (n + 1) / 2).to_string(),
                "{shift}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{shift}: sumn {n} took {:?}",
                started.elapsed()
            );
        }
        let mut seen = serde_json::Value::Null;
        let shown = eventually(IO_TIMEOUT, || {
            seen = server.stats()["remote"]["workers"][0]["clock_offset_ms"].clone();
            seen.as_i64().is_some_and(|ms| (ms - offset).abs() < 1_000)
        });
        assert!(shown, "{shift}: stats show an offset of {seen}");
        let metrics = server.scrape();
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "ysum_remote_worker_clock_offset_seconds{{worker=\"{name}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no offset in /metrics: {metrics}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((seconds * 1e3 - offset as f64).abs() < 1_000.0, "{line}");
        worker.signal(Signal::SIGTERM);
        worker.wait_exit(IO_TIMEOUT);
        let log = std::fs::read_to_string(&log).expect("the worker's log");
        assert!(log.contains("off from the broker's"), "{shift}: {log}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

crate::with_redis_and_faketime!(skewed_worker_answers);

/// An entry past its deadline (on the broker's clock) is answered at once
/// with `expired` and a detail that says so, never dropped silently.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn expired_entries_are_answered() {
    let redis = Redis::start();
    let _worker = Worker::start(&redis, "judge", &[]);
    let mut admin = redis.conn();
    let (seconds, _): (u64, u64) = redis::cmd("TIME").query(&mut admin).expect("TIME");
    let past = (seconds * 1_000 - 1_500).to_string();
    let _: String = redis::cmd("XADD")
        .arg("ysum:jobs")
        .arg("*")
        .arg(&[
            "v",
            "2",
            "id",
            "9",
            "job",
            "sumn 3",
            "reply",
            "ysum:reply:probe",
            "deadline",
        ])
        .arg(&past)
        .query(&mut admin)
        .expect("XADD");
    let reply: Option<(String, String)> = redis::cmd("BLPOP")
        .arg("ysum:reply:probe")
        .arg(5)
        .query(&mut admin)
        .expect("BLPOP");
    let (_, text) = reply.expect("no answer within 5 s");
    assert!(text.starts_with("v2 - 9 err expired "), "{text}");
    assert!(text.contains("after its deadline"), "{text}");
}
