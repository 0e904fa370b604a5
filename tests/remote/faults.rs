//! Workers that die, stop, or never come: the client still gets the right
//! answer, or the documented error at the documented time.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::engines::{answers_within, Redis, Worker};
use crate::support::{eventually, Io};
use crate::{remote_server, timed};

/// A worker SIGKILLed in the middle of a 3-second job: another worker takes
/// the job over once the lease runs out, the delivery count shows 2, and
/// the client gets the right answer.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn killed_worker_job_runs_again() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Threads, &redis, &[]);
    let lease = ["--lease", "1s", "--workers", "1"];
    let mut first = Worker::start(&redis, "kill-first", &lease);
    let mut conn = server.line_conn();
    conn.send("sleep 3000\n");
    queue.wait_pending_with("kill-first", Duration::from_secs(5));
    let _second = Worker::start(&redis, "kill-second", &lease);
    first.kill9();
    let taken = queue.wait_pending_with("kill-second", Duration::from_secs(10));
    assert_eq!(taken.deliveries, 2, "{taken:?}");
    assert_eq!(conn.read_line(), "ok");
    let stats = server.stats();
    assert!(
        stats["remote"]["redeliveries"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(stats["jobs"]["sleep"]["ok"], 1, "{stats}");
    // A CPU job too: its answer is checked, not only that one came.
    let mut second_conn = server.line_conn();
    assert_eq!(second_conn.request("sumn 25000"), "312512500");
}

/// A worker SIGSTOPped mid-job: its job is taken over after the lease; when
/// it continues, its late reply is dropped, and the client got exactly one
/// answer.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn stopped_worker_late_reply_is_dropped() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Events, &redis, &[]);
    let lease = ["--lease", "1s", "--workers", "1"];
    let paused = Worker::start(&redis, "pause-first", &lease);
    let mut conn = server.line_conn();
    conn.send("sleep 2000\n");
    queue.wait_pending_with("pause-first", Duration::from_secs(5));
    let _other = Worker::start(&redis, "pause-other", &lease);
    paused.signal(Signal::SIGSTOP);
    let taken = queue.wait_pending_with("pause-other", Duration::from_secs(10));
    assert_eq!(taken.deliveries, 2, "{taken:?}");
    assert_eq!(conn.read_line(), "ok");
    // The paused worker's 2 s are long over: once continued, it answers at
    // once, and the server drops the answer.
    paused.signal(Signal::SIGCONT);
    let dropped = eventually(Duration::from_secs(10), || {
        server.stats()["remote"]["late_replies"].as_u64() == Some(1)
    });
    assert!(dropped, "no late reply counted: {}", server.stats());
    assert!(
        !conn.has_input_within(Duration::from_millis(300)),
        "a second answer reached the client"
    );
    assert!(queue.pending().is_empty(), "{:?}", queue.pending());
    assert_eq!(server.stats()["jobs"]["sleep"]["ok"], 1);
}

/// A job whose every worker is SIGKILLed while running it: after 3
/// deliveries the next worker answers `ERR worker-lost` instead of running
/// it, and nothing is left pending or in the stream.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn job_that_kills_every_worker_is_lost_after_three() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Threads, &redis, &["--job-timeout", "60s"]);
    let mut conn = server.line_conn();
    conn.send("sleep 20000\n");
    let lease = ["--lease", "500ms", "--workers", "1"];
    for round in 1..=3 {
        let name = format!("doomed-{round}");
        let mut worker = Worker::start(&redis, &name, &lease);
        let entry = queue.wait_pending_with(&name, Duration::from_secs(10));
        assert_eq!(entry.deliveries, round, "{entry:?}");
        worker.kill9();
    }
    let _last = Worker::start(&redis, "survivor", &lease);
    let reply = conn.read_line();
    assert!(reply.starts_with("ERR worker-lost "), "{reply}");
    assert!(reply.contains("3 times"), "{reply}");
    assert!(queue.pending().is_empty(), "{:?}", queue.pending());
    assert_eq!(queue.length(), 0);
}

/// No worker at all: the job is answered `ERR timeout` at its deadline
/// (`--queue-wait` + `--job-timeout`), not before and not much after; a
/// worker that comes later skips the expired job without answering it.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn no_worker_times_out_at_the_deadline() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(
        Io::Events,
        &redis,
        &["--queue-wait", "500ms", "--job-timeout", "1s"],
    );
    let mut conn = server.line_conn();
    let (reply, took) = timed(&mut conn, "sumn 10");
    assert!(reply.starts_with("ERR timeout "), "{reply}");
    assert!(
        took >= Duration::from_millis(1450) && took < Duration::from_millis(3000),
        "answered after {took:?}"
    );
    assert_eq!(queue.length(), 1);
    let _late = Worker::start(&redis, "late-comer", &[]);
    assert!(eventually(Duration::from_secs(5), || queue.length() == 0));
    assert!(queue.pending().is_empty());
    // The late worker answered the job `expired`, not ran it; the server
    // had answered at the deadline, so that answer is dropped as late.
    let dropped = eventually(Duration::from_secs(5), || {
        server.stats()["remote"]["late_replies"] == 1
    });
    assert!(dropped, "{}", server.stats());
    let stats = server.stats();
    assert_eq!(stats["jobs"]["sumn"]["timeout"], 1, "{stats}");
}

/// A job that runs for six leases on a live worker is never handed to the
/// idle worker beside it: the lease thread renews it.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn live_worker_keeps_its_long_job() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Threads, &redis, &[]);
    let lease = ["--lease", "500ms", "--workers", "1"];
    let _runner = Worker::start(&redis, "keeper", &lease);
    let mut conn = server.line_conn();
    conn.send("sleep 3000\n");
    queue.wait_pending_with("keeper", Duration::from_secs(5));
    let _idle = Worker::start(&redis, "idle", &lease);
    assert_eq!(conn.read_line(), "ok");
    let stats = server.stats();
    assert_eq!(stats["remote"]["redeliveries"], 0, "{stats}");
    assert_eq!(stats["remote"]["late_replies"], 0, "{stats}");
}

/// `--queue 2`: with two jobs in flight a third is refused `ERR busy` at
/// once.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn full_queue_is_busy_at_once() {
    let redis = Redis::start();
    let server = remote_server(
        Io::Events,
        &redis,
        &["--queue", "2", "--queue-wait", "0", "--job-timeout", "2s"],
    );
    let mut waiting: Vec<_> = (0..2).map(|_| server.line_conn()).collect();
    for conn in &mut waiting {
        conn.send("sleep 10\n");
    }
    assert!(eventually(Duration::from_secs(5), || {
        server.stats()["queued"].as_u64() == Some(2)
    }));
    let mut third = server.line_conn();
    let (reply, took) = timed(&mut third, "sleep 10");
    assert!(reply.starts_with("ERR busy "), "{reply}");
    assert!(took < Duration::from_millis(100), "refused after {took:?}");
    for conn in &mut waiting {
        let reply = conn.read_line();
        assert!(reply.starts_with("ERR timeout "), "{reply}");
    }
}

/// A reply taken from the broker whose answer never reached the server (a
/// connection broken on the way back, or a take sent before a partition
/// that ran after the server gave its connection up) is not lost: it waits
/// on the server's taken list, where the next round reads it, and is
/// removed once handled (finding F1 of the fault schedule,
/// docs/reliability.md). Before the fix, replies were popped and such a job
/// was answered `ERR timeout` at its deadline.
fn a_reply_whose_answer_was_lost_is_read_again(io: Io) {
    let redis = Redis::start();
    let name = format!("lost-{}", io.name());
    let worker = Worker::start(&redis, &name, &["--workers", "1"]);
    let server = remote_server(io, &redis, &[]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 3"), "6");
    // Held in the stream while the worker is stopped.
    worker.signal(Signal::SIGSTOP);
    conn.send("sumn 1000\n");
    let mut admin = redis.conn();
    let xlen = redis::cmd("XLEN").arg("ysum:jobs").clone();
    let listed = answers_within(&mut admin, &xlen, 1, Duration::from_secs(5));
    assert!(listed, "the job never reached the stream");
    let (reply_list, id) = crate::security::first_entry(&mut admin);
    let taken_list = reply_list.replacen("ysum:reply:", "ysum:taken:", 1);
    assert_ne!(taken_list, reply_list);
    // What a take whose answer was lost leaves behind: the reply moved.
    let _: () = redis::cmd("RPUSH")
        .arg(&taken_list)
        .arg(format!("{id} ok 500500"))
        .query(&mut admin)
        .expect("RPUSH");
    let started = std::time::Instant::now();
    let answer = conn.read_line();
    let took = started.elapsed();
    assert_eq!(answer, "500500");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let exists = redis::cmd("EXISTS").arg(&taken_list).clone();
    let forgotten = answers_within(&mut admin, &exists, 0, Duration::from_secs(2));
    assert!(forgotten, "the handled reply stays on {taken_list}");
    worker.signal(Signal::SIGCONT);
}

crate::with_redis!(a_reply_whose_answer_was_lost_is_read_again);
