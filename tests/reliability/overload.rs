//! Overload: 2000 connections at once against `--max-connections 256`; then
//! more jobs than a pool and its `--queue 8` can hold.

use std::io::{self, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    eventually, figures, mib, ms, one_at_a_time, patient_clients, room_for_descriptors, sum_of,
    Conn, Rng, Scale, Server, IO_TIMEOUT,
};

/// Connections opened at once.
const CONNECTIONS: usize = 2000;
/// The server's `--max-connections`.
const MAX_CONNECTIONS: usize = 256;
/// What a connection thread of the server may cost at most: its stack size
/// (`CONNECTION_STACK` in `server/src/threads/mod.rs`).
const PER_CONNECTION_KIB: u64 = 256;
/// Threads that open and drive the connections.
const DRIVERS: usize = 8;

/// Of 2000 simultaneous connections, exactly 256 are admitted and served
/// right; the other 1744 get `ERR busy too many connections` and EOF; the
/// server's memory grows by at most 256 connections' worth, and every slot is
/// free again afterwards.
#[test]
fn excess_connections_get_busy() {
    let _serial = one_at_a_time();
    // The 2000, and the other cases' connections beside them.
    room_for_descriptors(CONNECTIONS as u64 + 512);
    let scale = Scale::get();
    let server = Server::start(
        "threads",
        &["--max-connections", "256", "--log-level", "error"],
    );
    for _ in 0..20 {
        assert!(server.pings());
    }
    let before = server.memory();
    let mut refused_total = 0;
    let mut served_total = 0;
    let mut slowest_connect = Duration::ZERO;
    for round in 0..scale.overload_rounds {
        // Open all of them before reading anything.
        let opened: Vec<(TcpStream, Duration)> = thread::scope(|scope| {
            let drivers: Vec<_> = (0..DRIVERS)
                .map(|_| {
                    scope.spawn(|| {
                        (0..CONNECTIONS / DRIVERS)
                            .map(|_| {
                                let started = Instant::now();
                                let stream = server.connect();
                                (stream, started.elapsed())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            drivers
                .into_iter()
                .flat_map(|d| d.join().expect("connecting thread"))
                .collect()
        });
        slowest_connect = slowest_connect.max(opened.iter().map(|(_, t)| *t).max().unwrap());
        let streams: Vec<TcpStream> = opened.into_iter().map(|(s, _)| s).collect();

        // A refused connection is spoken to at once; an admitted one waits
        // for its client. Sort them by that.
        for stream in &streams {
            stream.set_nonblocking(true).unwrap();
        }
        let mut spoke = vec![false; streams.len()];
        let sorted = eventually(IO_TIMEOUT, || {
            for (stream, spoke) in streams.iter().zip(&mut spoke) {
                if !*spoke {
                    *spoke = stream.peek(&mut [0u8; 1]).is_ok();
                }
            }
            spoke.iter().filter(|s| **s).count() >= CONNECTIONS - MAX_CONNECTIONS
        });
        // Give the server a moment to speak to any it refused late.
        thread::sleep(Duration::from_millis(200));
        for (stream, spoke) in streams.iter().zip(&mut spoke) {
            *spoke = *spoke || stream.peek(&mut [0u8; 1]).is_ok();
            stream.set_nonblocking(false).unwrap();
        }
        let refused: Vec<&TcpStream> = streams
            .iter()
            .zip(&spoke)
            .filter(|(_, s)| **s)
            .map(|(t, _)| t)
            .collect();
        let admitted: Vec<&TcpStream> = streams
            .iter()
            .zip(&spoke)
            .filter(|(_, s)| !**s)
            .map(|(t, _)| t)
            .collect();
        assert!(
            sorted,
            "round {round}: only {} connections were refused",
            refused.len()
        );
        assert_eq!(admitted.len(), MAX_CONNECTIONS, "round {round}: admitted");

        // The refused ones: one line, then EOF.
        for stream in &refused {
            let mut all = Vec::new();
            let mut reader = *stream;
            match reader.read_to_end(&mut all) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
                Err(err) => panic!("round {round}: refused connection: {err}"),
            }
            assert_eq!(
                String::from_utf8_lossy(&all),
                "ERR busy too many connections\n",
                "round {round}: a refused connection"
            );
        }
        refused_total += refused.len();

        // The admitted ones: all served right, at the same time.
        let served: usize = thread::scope(|scope| {
            let chunks = admitted.chunks(MAX_CONNECTIONS / DRIVERS);
            let drivers: Vec<_> = chunks
                .enumerate()
                .map(|(i, chunk)| {
                    scope.spawn(move || {
                        let mut rng = Rng::new(Rng::seed() ^ i as u64);
                        for stream in chunk {
                            let mut conn = Conn::new(stream.try_clone().unwrap());
                            let n = rng.below(100_000);
                            assert_eq!(conn.request(&format!("sumn {n}")), sum_of(n).to_string());
                        }
                        chunk.len()
                    })
                })
                .collect();
            drivers.into_iter().map(|d| d.join().expect("driver")).sum()
        });
        served_total += served;
        drop(streams);
        // Every slot comes free once the clients have gone.
        let freed = eventually(IO_TIMEOUT, || {
            server.stats()["connections"]["open"].as_u64() == Some(1)
        });
        assert!(
            freed,
            "round {round}: connections still open: {}",
            server.stats()
        );
    }
    let peak = server.memory().peak_kib;
    let stats = server.stats();
    let budget = before.rss_kib + MAX_CONNECTIONS as u64 * PER_CONNECTION_KIB;
    figures(
        "overload-connections",
        &[
            ("rounds", scale.overload_rounds.to_string()),
            (
                "connections",
                (scale.overload_rounds * CONNECTIONS).to_string(),
            ),
            ("served", served_total.to_string()),
            ("refused", refused_total.to_string()),
            ("lost", "0".to_owned()),
            ("slowest_connect", ms(slowest_connect)),
            ("rss_before", mib(before.rss_kib)),
            ("peak_rss", mib(peak)),
            ("rss_after", mib(server.memory().rss_kib)),
            ("budget", mib(budget)),
        ],
    );
    assert_eq!(
        stats["connections"]["refused"].as_u64(),
        Some(refused_total as u64),
        "the server counted its refusals: {stats}"
    );
    assert!(
        peak <= budget,
        "peak RSS {peak} KiB over the budget of {budget} KiB for {MAX_CONNECTIONS} connections"
    );
}

/// `--queue` jobs may wait.
const QUEUE: u64 = 8;
/// `--queue-wait`.
const QUEUE_WAIT: Duration = Duration::from_millis(300);
/// How long each job runs.
const JOB: Duration = Duration::from_millis(100);
/// How long a client pauses after `ERR busy`.
const BACKOFF: Duration = Duration::from_millis(20);
/// Clients pressing on two workers and a queue of 8.
const PRESSING: usize = 32;

/// Under `threads`, with the queue full every request is answered `ok` or
/// `ERR busy` by the queue wait; none is lost or left queued.
#[test]
fn full_queue_answers_busy_threads() {
    full_queue("threads");
}

/// Under `procs`, with the queue full every request is answered `ok` or
/// `ERR busy` by the queue wait; none is lost or left queued.
#[test]
fn full_queue_answers_busy_procs() {
    full_queue("procs");
}

/// Under `exclusive`, with the queue full every request is answered `ok` or
/// `ERR busy` by the queue wait; none is lost or left queued.
#[test]
fn full_queue_answers_busy_exclusive() {
    full_queue("exclusive");
}

fn full_queue(apply: &str) {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let server = Server::start(
        apply,
        &[
            "--workers",
            "2",
            "--queue",
            "8",
            "--queue-wait",
            "300ms",
            "--log-level",
            "error",
        ],
    );
    let tally = patient_clients(
        &server,
        PRESSING,
        Instant::now() + scale.queue_run,
        IO_TIMEOUT,
        Rng::seed(),
        |_| format!("sleep {}", JOB.as_millis()),
        BACKOFF,
    );
    let stats = server.stats();
    let sleep = &stats["jobs"]["sleep"];
    let counted = [
        "ok",
        "busy",
        "timeout",
        "worker_lost",
        "panicked",
        "shutting_down",
        "pool_down",
    ]
    .iter()
    .map(|k| sleep[k].as_u64().unwrap_or(0))
    .sum::<u64>();
    let busy = tally.errors_of("busy");
    figures(
        &format!("full-queue-{apply}"),
        &[
            ("seconds", scale.queue_run.as_secs().to_string()),
            ("clients", PRESSING.to_string()),
            ("queue", QUEUE.to_string()),
            ("requests", tally.requests.to_string()),
            ("ok", tally.right.to_string()),
            ("busy", busy.to_string()),
            ("wrong", tally.wrong.len().to_string()),
            ("lost", tally.lost.len().to_string()),
            ("server_counted", counted.to_string()),
            ("queued_after", stats["queued"].to_string()),
            ("p99", ms(tally.latencies.p99())),
            ("max", ms(tally.latencies.max())),
        ],
    );
    assert!(tally.lost.is_empty(), "{apply}: lost {:?}", tally.lost);
    assert!(tally.wrong.is_empty(), "{apply}: wrong {:?}", tally.wrong);
    let other = tally.errors_other_than(&["busy"]);
    assert!(
        other.is_empty(),
        "{apply}: errors other than busy: {other:?}"
    );
    assert!(
        busy > 0 && tally.right > 0,
        "{apply}: no overload: {tally:?}"
    );
    assert_eq!(
        counted, tally.requests,
        "{apply}: the server's count differs: {stats}"
    );
    assert_eq!(
        stats["queued"].as_u64(),
        Some(0),
        "{apply}: still queued: {stats}"
    );
    // Nothing waits past the queue wait plus its own run (and scheduling).
    let bound = QUEUE_WAIT + JOB + Duration::from_millis(300);
    assert!(
        tally.latencies.max() < bound,
        "{apply}: a request took {:?} (bound {bound:?})",
        tally.latencies.max()
    );
}
