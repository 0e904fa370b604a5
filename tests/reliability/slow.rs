//! Slow and idle clients: hundreds of connections that send one byte a
//! second, or nothing, are cut at `--read-timeout` while other clients are
//! served as usual.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    eventually, figures, keep_alive_clients, mixed_request, ms, one_at_a_time, Latencies, Rng,
    Scale, Server, IO_TIMEOUT,
};

/// Connections that never send a byte.
const IDLE: usize = 50;
/// How late after `--read-timeout` a connection may be cut (scheduling,
/// and the 20 ms polling of this test).
const CUT_SLACK: Duration = Duration::from_millis(700);
/// Connections opened at once, then confirmed accepted.
const BATCH: usize = 50;
/// What each slow client trickles, one byte a second.
const TRICKLE: &[u8] = b"sumn 25000\n";

/// One slow or idle connection, watched without blocking.
struct Watched {
    stream: TcpStream,
    opened: Instant,
    /// When the test knew the server had accepted it.
    accepted_by: Option<Instant>,
    /// Bytes sent so far (0 for an idle one, which never sends).
    sent: usize,
    slow: bool,
    /// When the server closed it, after how long.
    closed_after: Option<Duration>,
    /// Anything the server wrote (it must write nothing).
    received: Vec<u8>,
}

/// 500 connections sending a byte a second and 50 silent ones are all closed
/// without a reply `--read-timeout` after they connected (the bytes do not
/// buy time: no line is complete), while two
/// keep-alive clients are served right throughout.
#[test]
fn slow_and_idle_clients_are_cut_at_the_read_timeout() {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let read_timeout = scale.slow_read_timeout;
    let timeout_arg = format!("{}ms", read_timeout.as_millis());
    let server = Server::start(
        "threads",
        &["--read-timeout", &timeout_arg, "--log-level", "error"],
    );
    let seed = Rng::seed();
    let run = read_timeout + Duration::from_secs(2);
    let (watched, bystanders) = thread::scope(|scope| {
        let bystanders = scope.spawn(|| {
            keep_alive_clients(
                &server,
                2,
                Instant::now() + run,
                Duration::from_secs(5),
                seed,
                mixed_request,
            )
        });
        // The server's clock for a connection starts when it accepts it,
        // which can be well after the client's connect returned: the kernel
        // completes handshakes ahead of accept, and drops some while the
        // backlog is full. So connect in batches, each confirmed accepted
        // (through `stats`) before the next: that bounds every connection's
        // acceptance, and keeps the backlog from overflowing.
        let mut watched: Vec<Watched> = Vec::new();
        let mut stats_calls = 0;
        while watched.len() < scale.slow_clients + IDLE {
            let batch = (scale.slow_clients + IDLE - watched.len()).min(BATCH);
            for _ in 0..batch {
                let stream = server.connect();
                stream.set_nonblocking(true).unwrap();
                watched.push(Watched {
                    stream,
                    opened: Instant::now(),
                    accepted_by: None,
                    sent: 0,
                    // Every eleventh is idle, spread over the whole run.
                    slow: watched.len() % 11 != 10,
                    closed_after: None,
                    received: Vec::new(),
                });
            }
            let accepted = eventually(IO_TIMEOUT, || {
                stats_calls += 1;
                let total = server.stats()["connections"]["total"].as_u64().unwrap_or(0);
                total >= (watched.len() + 2 + stats_calls) as u64
            });
            assert!(
                accepted,
                "the server did not accept {} connections",
                watched.len()
            );
            let now = Instant::now();
            for w in watched.iter_mut().filter(|w| w.accepted_by.is_none()) {
                w.accepted_by = Some(now);
            }
            watch(&mut watched);
        }
        let deadline = Instant::now() + read_timeout + Duration::from_secs(5);
        while Instant::now() < deadline && watched.iter().any(|w| w.closed_after.is_none()) {
            watch(&mut watched);
            thread::sleep(Duration::from_millis(20));
        }
        (watched, bystanders.join().expect("bystanders"))
    });

    let mut cut = Latencies::default();
    for w in &watched {
        if let Some(after) = w.closed_after {
            cut.push(after);
        }
    }
    let mut accept_lag = Latencies::default();
    for w in &watched {
        accept_lag.push(
            w.accepted_by
                .expect("accepted")
                .saturating_duration_since(w.opened),
        );
    }
    let slow_bytes: usize = watched.iter().filter(|w| w.slow).map(|w| w.sent).sum();
    figures(
        "slow-clients",
        &[
            ("slow", scale.slow_clients.to_string()),
            ("idle", IDLE.to_string()),
            ("read_timeout", ms(read_timeout)),
            ("cut", cut.len().to_string()),
            ("slow_bytes_sent", slow_bytes.to_string()),
            ("accept_lag_max", ms(accept_lag.max())),
            ("cut_earliest", ms(cut.quantile(0.0))),
            ("cut_latest", ms(cut.max())),
            ("bystander_requests", bystanders.requests.to_string()),
            ("bystander_wrong", bystanders.wrong.len().to_string()),
            ("bystander_lost", bystanders.lost.len().to_string()),
            ("bystander_p99", ms(bystanders.latencies.p99())),
        ],
    );

    for (i, w) in watched.iter().enumerate() {
        let kind = if w.slow { "slow" } else { "idle" };
        assert!(
            w.received.is_empty(),
            "{kind} connection {i} got {:?}",
            w.received
        );
        let after = w
            .closed_after
            .unwrap_or_else(|| panic!("{kind} connection {i} still open after {run:?}"));
        // Accepted at the earliest when the client connected, at the latest
        // when the test saw its batch accepted.
        let lag = w
            .accepted_by
            .expect("accepted")
            .saturating_duration_since(w.opened);
        let latest = lag + read_timeout + CUT_SLACK;
        assert!(
            after + Duration::from_millis(100) >= read_timeout && after < latest,
            "{kind} connection {i} closed after {after:?} (read timeout {read_timeout:?}, \
             accepted at most {lag:?} after connecting)"
        );
    }
    assert!(bystanders.wrong.is_empty(), "wrong: {:?}", bystanders.wrong);
    assert!(bystanders.lost.is_empty(), "lost: {:?}", bystanders.lost);
    assert!(
        bystanders.errors.is_empty(),
        "errors: {:?}",
        bystanders.errors
    );
    assert!(
        bystanders.requests > 100,
        "bystanders barely served: {}",
        bystanders.requests
    );
    assert!(
        bystanders.latencies.p99() < Duration::from_millis(500),
        "bystanders' p99 {:?}",
        bystanders.latencies.p99()
    );
    assert!(server.pings());
}

/// One look at every connection still open: sends the bytes now due, and
/// notes whether the server closed it (or wrote anything).
fn watch(watched: &mut [Watched]) {
    for w in watched.iter_mut().filter(|w| w.closed_after.is_none()) {
        // Byte k goes at k + 1 seconds: the first one well after the
        // connection, as a slowloris client would send it.
        let due = if w.slow {
            (w.opened.elapsed().as_secs() as usize).min(TRICKLE.len())
        } else {
            0
        };
        while w.sent < due {
            match (&w.stream).write(&TRICKLE[w.sent..=w.sent]) {
                Ok(1) => w.sent += 1,
                Ok(_) => break,
                Err(_) => break,
            }
        }
        let mut buf = [0u8; 256];
        match (&w.stream).read(&mut buf) {
            Ok(0) => w.closed_after = Some(w.opened.elapsed()),
            Ok(n) => w.received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => w.closed_after = Some(w.opened.elapsed()),
        }
    }
}
