//! sumworker keeps sumserver's promises: a stderr that closes costs log
//! lines, never service or the stop; `--log-level` is checked, `--log-format
//! json` writes JSON lines, colours only on a terminal; a reply it cannot
//! deliver never holds SIGTERM past `--grace`; a worker that is gone leaves
//! `stats`; and no job is said to be taken over when none was.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::engines::{sumworker, Redis, Worker};
use crate::security::{run_to_exit, scratch, server_on};
use crate::support::{eventually, Io, IO_TIMEOUT};

/// A pipe whose reading end is closed at once: every write fails (EPIPE).
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

/// With its stderr a pipe nobody reads any more and every job logged
/// (`debug`), a worker serves 300 jobs and stops within its grace.
fn closed_stderr_costs_nothing(io: Io) {
    let redis = Redis::start();
    let mut worker = Worker::launch_with(
        &[],
        &redis.url(),
        "mute",
        &["--log-level", "debug", "--grace", "2s"],
        &[],
        Stdio::from(closed_pipe()),
    );
    let server = server_on(io, &redis.url(), &[]);
    let mut conn = server.line_conn();
    for n in 0..300u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    let asked = Instant::now();
    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(4));
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

crate::with_redis!(closed_stderr_costs_nothing);

/// `--log-level verbose` is a usage error (exit 2); `--log-format json`
/// writes JSON lines; text logs to a file carry no colour.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn logging_options_are_kept() {
    let (output, _) = run_to_exit(
        sumworker().to_str().unwrap(),
        &["--broker", "redis://127.0.0.1:1", "--log-level", "verbose"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"verbose\""));

    let redis = Redis::start();
    let dir = scratch("worker-logs");
    for (format, check) in [("json", true), ("text", false)] {
        let log = dir.join(format!("{format}.log"));
        let mut worker = Worker::launch(
            &redis.url(),
            &format!("logs-{format}"),
            &["--log-format", format],
            &[],
            Some(&log),
        );
        worker.signal(Signal::SIGTERM);
        worker.wait_exit(IO_TIMEOUT);
        let text = std::fs::read_to_string(&log).expect("the log");
        assert!(!text.contains('\u{1b}'), "colour in a file: {text:?}");
        assert!(text.lines().count() >= 2, "{text}");
        if check {
            for line in text.lines() {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
                assert!(value["level"].is_string(), "{line}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A job finishes while the broker is down, so its reply cannot go; at
/// SIGTERM the worker keeps trying only until its grace is over.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn undeliverable_reply_keeps_to_the_grace() {
    let mut redis = Redis::start();
    let mut worker = Worker::start(&redis, "stranded", &["--grace", "1s"]);
    let server = server_on(Io::Threads, &redis.url(), &["--job-timeout", "30s"]);
    let mut waiting = server.line_conn();
    waiting.send("sleep 700\n");
    let mut queue = redis.queue();
    queue.wait_pending_with("stranded", IO_TIMEOUT);
    redis.kill();
    // The job ends and its reply finds no broker.
    std::thread::sleep(Duration::from_millis(1_000));
    let asked = Instant::now();
    worker.signal(Signal::SIGTERM);
    worker.wait_exit(Duration::from_secs(5));
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1_900),
        "stopped after {took:?}"
    );
}

/// A worker killed with nothing in hand leaves `stats` after a few of its
/// leases; one stopped with SIGTERM leaves at once (its consumer removed).
fn gone_workers_leave_stats(io: Io) {
    let redis = Redis::start();
    let mut killed = Worker::start(&redis, "short-lived", &["--lease", "200ms"]);
    let mut stopped = Worker::start(&redis, "polite", &["--lease", "200ms"]);
    let server = server_on(io, &redis.url(), &[]);
    let names = || -> Vec<String> {
        server.stats()["remote"]["workers"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|w| w["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        eventually(IO_TIMEOUT, || names().len() == 2),
        "{:?}",
        names()
    );
    stopped.signal(Signal::SIGTERM);
    stopped.wait_exit(IO_TIMEOUT);
    let mut queue = redis.queue();
    let consumers = |queue: &mut crate::engines::Queue| -> usize {
        let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("ysum:jobs")
            .arg("ysum:workers")
            .query(queue.conn())
            .expect("XINFO");
        reply.consumers.len()
    };
    assert_eq!(
        consumers(&mut queue),
        1,
        "the stopped worker left its consumer"
    );
    killed.kill9();
    let gone = eventually(Duration::from_secs(5), || names().is_empty());
    assert!(gone, "still listed: {:?}", names());
}

crate::with_redis!(gone_workers_leave_stats);

/// One worker, many tiny jobs, leases renewed every 100 ms meanwhile: no
/// job is said to be taken over, and none was.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn no_false_take_overs() {
    let redis = Redis::start();
    let dir = scratch("takeovers");
    let log = dir.join("worker.log");
    let mut worker = Worker::launch(
        &redis.url(),
        "alone",
        &["--lease", "400ms"],
        &[],
        Some(&log),
    );
    let server = server_on(Io::Events, &redis.url(), &[]);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut conn = server.line_conn();
                for n in 0..1_500u64 {
                    assert_eq!(
                        conn.request(&format!("sumn {n}")),
                        (n * (n + 1) / 2).to_string()
                    );
                }
            });
        }
    });
    worker.signal(Signal::SIGTERM);
    worker.wait_exit(IO_TIMEOUT);
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(!text.contains("taken over"), "{text}");
    assert_eq!(server.stats()["remote"]["redeliveries"], 0);
    let _ = std::fs::remove_dir_all(dir);
}
