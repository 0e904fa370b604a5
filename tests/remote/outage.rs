//! The broker killed and restarted: refusals at once while it is down,
//! service back by itself when it returns, jobs in flight not lost.

use std::time::{Duration, Instant};

use crate::engines::{Redis, Worker};
use crate::support::Io;
use crate::{remote_server, timed};

/// Kill the broker: new jobs get `ERR unavailable` in well under 100 ms.
/// Restart it (empty): service is back within 2 s without restarting the
/// server or the worker, and a job that was in flight through the outage is
/// still answered.
fn outage(io: Io) {
    let mut redis = Redis::start();
    let _worker = Worker::start(&redis, "outage", &["--lease", "1s"]);
    let server = remote_server(io, &redis, &[]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 100"), "5050");

    let mut in_flight = server.line_conn();
    in_flight.send("sleep 1500\n");
    std::thread::sleep(Duration::from_millis(200));
    redis.kill();
    for _ in 0..5 {
        let (reply, took) = timed(&mut conn, "sumn 100");
        assert!(reply.starts_with("ERR unavailable "), "{reply}");
        assert!(took < Duration::from_millis(100), "refused after {took:?}");
    }

    redis.restart();
    let back = Instant::now();
    loop {
        let (reply, _) = timed(&mut conn, "sumn 100");
        if reply == "5050" {
            break;
        }
        assert!(reply.starts_with("ERR unavailable "), "{reply}");
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "no service 2 s after the broker came back: {reply}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Handed out again after the restart (or its reply sent again by the
    // worker): answered, within its deadline.
    assert_eq!(in_flight.read_line(), "ok");
    let stats = server.stats();
    assert_eq!(stats["remote"]["connected"], true, "{stats}");
    assert!(
        stats["jobs"]["sumn"]["unavailable"].as_u64() >= Some(5),
        "{stats}"
    );
}

/// Under `--io threads`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn outage_threads() {
    outage(Io::Threads);
}

/// Under `--io events`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn outage_events() {
    outage(Io::Events);
}

/// A job in flight when the broker restarts empty, whose worker died in the
/// outage too: the server hands it out again after reconnection, and a new
/// worker answers it.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn in_flight_job_is_handed_out_again() {
    let mut redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Threads, &redis, &[]);
    let mut first = Worker::start(&redis, "before", &["--workers", "1"]);
    let mut conn = server.line_conn();
    conn.send("sleep 1000\n");
    queue.wait_pending_with("before", Duration::from_secs(5));
    redis.kill();
    first.kill9();
    redis.restart();
    let _second = Worker::start(&redis, "after", &["--workers", "1"]);
    assert_eq!(conn.read_line(), "ok");
    let stats = server.stats();
    assert_eq!(stats["remote"]["resubmitted"], 1, "{stats}");
}

/// A server that pooled many broker connections (64 clients at once, under
/// `--io threads` one connection each), the broker restarted: 6 s later, 30
/// of 30 new jobs succeed, sent at once: no dead pooled connection fails a
/// job or marks the broker down.
fn restart_costs_only_the_restart(io: Io) {
    let mut redis = Redis::start();
    let _worker = Worker::start(&redis, "pooled", &["--workers", "4"]);
    let server = remote_server(io, &redis, &[]);
    let burst = |count: usize| -> Vec<String> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|i| {
                    let server = &server;
                    scope
                        .spawn(move || server.line_conn().request(&format!("sleep {}", 50 + i % 7)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    assert!(burst(64).iter().all(|reply| reply == "ok"));
    redis.restart();
    std::thread::sleep(Duration::from_secs(6));
    let replies = burst(30);
    let failed: Vec<&String> = replies.iter().filter(|r| *r != "ok").collect();
    assert!(
        failed.is_empty(),
        "{} of 30 failed: {failed:?}",
        failed.len()
    );
}

/// Under `--io threads`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn restart_costs_only_the_restart_threads() {
    restart_costs_only_the_restart(Io::Threads);
}

/// Under `--io events`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn restart_costs_only_the_restart_events() {
    restart_costs_only_the_restart(Io::Events);
}
