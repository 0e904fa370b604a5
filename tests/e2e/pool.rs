//! The promises of the queue and the process pool that a client can check
//! from outside: `--queue-wait` is a bound (busy at that moment, and the job
//! never runs), `--queue-wait 0` serves while a worker is free, a killed fork
//! server is replaced within about a second while jobs hear `ERR pool-down`
//! instead of waiting, and a timeout flood is logged as such, rate-limited.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{both_io, eventually, Io, Server, IO_TIMEOUT};

both_io!(
    busy_at_the_queue_wait_threads,
    busy_at_the_queue_wait_procs,
    queue_wait_zero_serves_while_a_worker_is_free,
    killed_fork_server_is_replaced,
    timeout_kills_are_logged_as_such_and_rate_limited,
);

/// The queue wait given to the busy scenarios.
const WAIT: Duration = Duration::from_millis(100);

/// `--apply threads --workers 1 --queue-wait 100ms`: with the worker asleep,
/// `sumn 5` is refused as busy after 100 ms (not when the worker wakes) and
/// is never run.
fn busy_at_the_queue_wait_threads(io: Io) {
    busy_at_the_queue_wait(io, "threads");
}

/// The same under `--apply procs`, where the job waits in the queue until a
/// worker process has room.
fn busy_at_the_queue_wait_procs(io: Io) {
    busy_at_the_queue_wait(io, "procs");
}

fn busy_at_the_queue_wait(io: Io, apply: &str) {
    let server = Server::start(io, apply, &["--workers", "1", "--queue-wait", "100ms"]);
    let mut sleeper = server.line_conn();
    sleeper.send("sleep 1500\n");
    assert!(
        eventually(IO_TIMEOUT, || server.stats()["workers"]["busy"] == 1),
        "the sleep never started"
    );
    let mut other = server.line_conn();
    let asked = Instant::now();
    let reply = other.request("sumn 5");
    let took = asked.elapsed();
    assert!(reply.starts_with("ERR busy "), "got {reply:?}");
    assert!(
        reply.contains("within the queue wait of 100ms"),
        "{reply:?}"
    );
    assert!(
        took >= WAIT && took < Duration::from_millis(900),
        "busy after {took:?}, want about {WAIT:?}"
    );
    eprintln!("{apply} × {}: busy after {took:.2?}", io.name());
    assert_eq!(sleeper.read_line(), "ok");
    // The worker is free: a refused job still queued would run now.
    std::thread::sleep(Duration::from_millis(200));
    let stats = server.stats();
    assert_eq!(
        stats["jobs"]["sumn"]["ok"], 0,
        "the refused job ran: {stats}"
    );
    assert_eq!(stats["jobs"]["sumn"]["busy"], 1, "{stats}");
    assert_eq!(
        other.request("sumn 5"),
        "15",
        "served once the worker is free"
    );
}

/// `--queue-wait 0` serves one request after another while workers are
/// free, under every queued strategy.
fn queue_wait_zero_serves_while_a_worker_is_free(io: Io) {
    for apply in ["exclusive", "threads", "procs"] {
        let server = Server::start(io, apply, &["--workers", "2", "--queue-wait", "0"]);
        let mut conn = server.line_conn();
        for _ in 0..50 {
            assert_eq!(conn.request("sumn 10"), "55", "{apply}");
        }
    }
}

/// `kill -9` of the fork server: every request gets an answer or
/// `ERR pool-down` at once, never a wait; the dead fork server is reaped (no
/// zombie) and logged; a new fork server with its workers serves again within
/// about a second; `stats` counts the restart.
fn killed_fork_server_is_replaced(io: Io) {
    let server = Server::start(io, "procs", &["--workers", "2"]);
    let (old, _) = server.process_tree(2);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 10"), "55");
    kill(Pid::from_raw(old.pid), Signal::SIGKILL).expect("kill the fork server");
    let killed_at = Instant::now();
    let mut refused = 0;
    loop {
        let asked = Instant::now();
        let reply = conn.request("sumn 10");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{reply:?} after {:?}",
            asked.elapsed()
        );
        match reply.as_str() {
            "55" => break,
            r if r.starts_with("ERR pool-down ") => refused += 1,
            other => panic!("neither an answer nor pool-down: {other:?}"),
        }
        assert!(killed_at.elapsed() < IO_TIMEOUT, "the pool never came back");
        std::thread::sleep(Duration::from_millis(2));
    }
    let back = killed_at.elapsed();
    eprintln!(
        "{}: answered again {back:.2?} after the fork server was killed ({refused} pool-down)",
        io.name()
    );
    assert!(back < Duration::from_secs(3), "back after {back:?}");
    let (new, _) = server.process_tree(2);
    assert_ne!(new.pid, old.pid, "a new fork server");
    assert!(
        old.now().is_none(),
        "the old fork server is left as {:?}",
        old.now()
    );
    let stats = server.stats();
    assert_eq!(stats["workers"]["fork_server_restarts"], 1, "{stats}");
    assert_eq!(stats["workers"]["alive"], 2, "{stats}");
    assert!(
        server.log().contains("fork server died"),
        "not logged:\n{}",
        server.log()
    );
    assert_eq!(conn.request("sumn 25000"), "312512500");
}

/// A flood of jobs killed for running past `--job-timeout` is logged as
/// timeout kills (never as "worker process lost"), with the first line in
/// full and then a count, not one line per kill.
fn timeout_kills_are_logged_as_such_and_rate_limited(io: Io) {
    let server = Server::start(
        io,
        "procs",
        &[
            "--workers",
            "2",
            "--job-timeout",
            "30ms",
            "--log-level",
            "info",
        ],
    );
    let mut conn = server.line_conn();
    let kills = 30;
    for _ in 0..kills {
        let reply = conn.request("sleep 2000");
        assert!(reply.starts_with("ERR timeout "), "got {reply:?}");
    }
    // The summary comes once the one-second window is over.
    let summarised = eventually(Duration::from_secs(5), || {
        server.log().contains("killed more worker processes")
    });
    let log = server.log();
    assert!(summarised, "no summary line:\n{log}");
    let full = log.matches("its job ran past the job timeout").count();
    assert!(
        (1..=kills / 3).contains(&full),
        "{full} full lines for {kills} kills:\n{log}"
    );
    assert!(!log.contains("worker process lost"), "{log}");
}
