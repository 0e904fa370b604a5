//! Stopping the server or a worker under load: what the docs promise is
//! kept, and no process is left behind.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::engines::{Redis, Worker};
use crate::remote_server;
use crate::support::Io;

/// SIGTERM to a server with jobs in flight on 8 connections: every request
/// it had read is answered (`ok`, the job's answer), later ones get
/// `ERR shutting-down` or find the connection closed; the server exits 0
/// with no descendant, and its reply list is left to expire.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn server_sigterm_under_load() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let _worker = Worker::start(&redis, "stays", &["--workers", "8"]);
    let server = remote_server(Io::Threads, &redis, &["--grace", "5s"]);
    let answered = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let mut conn = server.line_conn();
                scope.spawn(move || {
                    let mut oks = 0;
                    for _ in 0..20 {
                        conn.send("sleep 200\n");
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            conn.read_line()
                        })) {
                            Ok(reply) if reply == "ok" => oks += 1,
                            Ok(reply) => {
                                assert!(reply.starts_with("ERR shutting-down"), "{reply}");
                                break;
                            }
                            // Closed after its last answer: nothing was lost.
                            Err(_) => break,
                        }
                    }
                    oks
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        server.signal(Signal::SIGTERM);
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .sum::<u32>()
    });
    assert!(answered >= 8, "only {answered} answers before the shutdown");
    assert!(server.wait_exit(Duration::from_secs(8)).success());
    assert!(server.descendants().is_empty());
    let ttls = queue.reply_list_ttls();
    assert!(ttls.iter().all(|ttl| (0..=60).contains(ttl)), "{ttls:?}");
}

/// SIGTERM to a worker running a job longer than its grace: it hands the
/// job back and exits 0; another worker takes it over after the lease, and
/// the client gets the answer.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn worker_sigterm_hands_back() {
    let redis = Redis::start();
    let mut queue = redis.queue();
    let server = remote_server(Io::Events, &redis, &[]);
    let mut leaving = Worker::start(
        &redis,
        "leaving",
        &["--lease", "1s", "--workers", "1", "--grace", "300ms"],
    );
    let mut conn = server.line_conn();
    conn.send("sleep 2500\n");
    queue.wait_pending_with("leaving", Duration::from_secs(5));
    let _heir = Worker::start(&redis, "heir", &["--lease", "1s", "--workers", "1"]);
    leaving.signal(Signal::SIGTERM);
    assert!(leaving.wait_exit(Duration::from_secs(5)).success());
    let taken = queue.wait_pending_with("heir", Duration::from_secs(10));
    assert_eq!(taken.deliveries, 2);
    assert_eq!(conn.read_line(), "ok");
}

/// SIGTERM to a worker whose jobs fit in its grace: it finishes them, every
/// client gets its answer, and it exits 0.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn worker_sigterm_finishes_running_jobs() {
    let redis = Redis::start();
    let server = remote_server(Io::Threads, &redis, &[]);
    let mut leaving = Worker::start(&redis, "finisher", &["--workers", "4", "--grace", "5s"]);
    let mut conns: Vec<_> = (0..4).map(|_| server.line_conn()).collect();
    for conn in &mut conns {
        conn.send("sleep 800\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    leaving.signal(Signal::SIGTERM);
    for conn in &mut conns {
        assert_eq!(conn.read_line(), "ok");
    }
    assert!(leaving.wait_exit(Duration::from_secs(5)).success());
}
