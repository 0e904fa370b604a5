//! Under `remote`: jobs end with their clients (a closed connection's jobs
//! are withdrawn from the stream, and a worker stops the ones it runs), and
//! no client address starves another (long jobs go to the stream by fair
//! share).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::crowd::{abandon, ask_from, assert_answered_within, hold};
use crate::engines::{Redis, Worker};
use crate::remote_server;
use crate::support::{eventually, Io, IO_TIMEOUT};

/// 200 `sleep 20000` on connections that closed at once: another client's
/// `sumn` is answered within 3 s; the stream holds only jobs that workers
/// had started, and those too are gone once the workers have stopped them.
fn abandoned_jobs_are_withdrawn(io: Io) {
    let redis = Redis::start();
    let _worker = Worker::start(&redis, "abandoned", &["--workers", "2", "--lease", "1s"]);
    let server = remote_server(io, &redis, &[]);
    let ready = eventually(IO_TIMEOUT, || server.stats()["remote"]["live_slots"] == 2);
    assert!(ready, "{}", server.stats());
    abandon(server.addr(), 200, "sleep 20000\n");
    let closed = Instant::now();
    std::thread::sleep(Duration::from_millis(250));
    let mut queue = redis.queue();
    let length = queue.length();
    let pending = queue.pending().len() as u64;
    assert!(
        length <= pending && pending <= 2,
        "stream {length}, pending {pending}"
    );
    assert_answered_within(server.addr(), closed, Duration::from_secs(3));
    let emptied = eventually(IO_TIMEOUT, || {
        queue.length() == 0 && queue.pending().is_empty()
    });
    assert!(emptied, "entries left: {:?}", queue.pending());
    let stats = server.stats();
    assert_eq!(stats["jobs"]["sleep"]["ok"], 0, "{stats}");
    assert_eq!(stats["remote"]["in_flight"], 0, "{stats}");
}

crate::with_redis!(abandoned_jobs_are_withdrawn);

/// Beside 100 connections from one address holding `sleep 2000`, a client
/// on another address is answered within 3.5 s.
fn another_address_is_not_starved(io: Io) {
    let redis = Redis::start();
    let _worker = Worker::start(&redis, "shared", &["--workers", "2"]);
    let server = remote_server(io, &redis, &[]);
    let ready = eventually(IO_TIMEOUT, || server.stats()["remote"]["live_slots"] == 2);
    assert!(ready, "{}", server.stats());
    let _crowd = hold(server.addr(), 100, "sleep 2000\n");
    let held = eventually(IO_TIMEOUT, || server.stats()["remote"]["held"] == 98);
    assert!(held, "{}", server.stats());
    let (reply, took) = ask_from(Ipv4Addr::new(127, 0, 0, 2), server.addr(), "sumn 10");
    assert_eq!(reply, "55");
    assert!(
        took < Duration::from_millis(3_500),
        "answered after {took:?}"
    );
}

crate::with_redis!(another_address_is_not_starved);
