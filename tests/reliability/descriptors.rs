//! Descriptor exhaustion: the server runs with `RLIMIT_NOFILE` 64 (as after
//! `ulimit -n 64`) and bursts of 200 clients arrive at once.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    eventually, figures, ms, one_at_a_time, open_fds, sum_of, Latencies, Scale, Server,
};

/// The server's descriptor limit.
const FD_LIMIT: u64 = 64;
/// Clients per burst.
const BURST: usize = 200;
/// How long one client may wait for its answer, connecting included.
const CLIENT_WAIT: Duration = Duration::from_secs(20);
/// The line the server logs when `accept` runs out of descriptors.
const EMFILE_LINE: &str = "cannot accept: out of resources";

/// How one client of a burst fared.
#[derive(Debug)]
enum Outcome {
    /// The right sum, after this long.
    Served(Duration),
    /// `ERR busy …`: refused, politely.
    Refused,
    /// Anything else.
    Failed(String),
}

/// Connects, holds the connection 100 ms (`sleep 100`), asks `sumn n`, then
/// `quit`, and reads everything until EOF. Holding it makes every burst
/// outgrow the descriptors, however fast the server.
fn client(server: &Server, n: u64) -> Outcome {
    let started = Instant::now();
    let exchange = || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&server.addr(), CLIENT_WAIT)?;
        stream.set_read_timeout(Some(CLIENT_WAIT))?;
        stream.set_write_timeout(Some(CLIENT_WAIT))?;
        stream.write_all(format!("sleep 100\nsumn {n}\nquit\n").as_bytes())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        Ok(reply)
    };
    match exchange() {
        Ok(reply) if reply == format!("ok\n{}\n", sum_of(n)).as_bytes() => {
            Outcome::Served(started.elapsed())
        }
        Ok(reply) if reply.starts_with(b"ERR busy ") => Outcome::Refused,
        Ok(reply) => Outcome::Failed(format!("reply {:?}", String::from_utf8_lossy(&reply))),
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

/// With at most 64 descriptors, bursts of 200 clients are each served or
/// refused with `ERR busy`, never failed; the server logs running out once
/// per burst, never exits, and serves normally after each burst.
#[test]
fn descriptor_exhaustion_is_survived() {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let server = Server::start_with_fd_limit("inline", &[], Some(FD_LIMIT));
    // Idle, after one connection has come and gone (the first one opens
    // what the server keeps open lazily).
    assert!(server.pings());
    let mut fds_idle = 0;
    eventually(Duration::from_secs(1), || {
        let now = open_fds(server.pid());
        let same = now == fds_idle;
        fds_idle = now;
        same
    });
    let (mut served, mut refused) = (0, 0);
    let mut latencies = Latencies::default();
    let mut per_burst = Vec::new();
    for burst in 0..scale.fd_bursts {
        let logged_before = server.log().matches(EMFILE_LINE).count();
        let outcomes: Vec<Outcome> = thread::scope(|scope| {
            let clients: Vec<_> = (0..BURST as u64)
                .map(|i| {
                    let server = &server;
                    thread::Builder::new()
                        .stack_size(64 * 1024)
                        .spawn_scoped(scope, move || client(server, 1000 + i))
                        .expect("start a client thread")
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().expect("client"))
                .collect()
        });
        for outcome in &outcomes {
            match outcome {
                Outcome::Served(took) => {
                    served += 1;
                    latencies.push(*took);
                }
                Outcome::Refused => refused += 1,
                Outcome::Failed(why) => panic!("burst {burst}: a client failed: {why}"),
            }
        }
        assert!(server.is_running(), "burst {burst}: the server exited");
        assert!(server.pings(), "burst {burst}: no pong after the burst");
        let logged = server.log().matches(EMFILE_LINE).count() - logged_before;
        per_burst.push(logged);
        // A second of quiet ends a burst (`QUIET_ENDS_BURST` in the server).
        thread::sleep(Duration::from_millis(1500));
    }
    let log = server.log();
    let mut fds_after = 0;
    let settled = eventually(Duration::from_secs(3), || {
        fds_after = open_fds(server.pid());
        fds_after == fds_idle
    });
    figures(
        "descriptor-exhaustion",
        &[
            ("fd_limit", FD_LIMIT.to_string()),
            ("bursts", scale.fd_bursts.to_string()),
            ("clients", (scale.fd_bursts * BURST).to_string()),
            ("served", served.to_string()),
            ("refused", refused.to_string()),
            ("failed", "0".to_owned()),
            ("emfile_logs_per_burst", format!("{per_burst:?}")),
            ("p99", ms(latencies.p99())),
            ("max", ms(latencies.max())),
            ("fds_idle", fds_idle.to_string()),
            ("fds_after", fds_after.to_string()),
        ],
    );
    assert!(
        settled,
        "descriptors leaked: {fds_after} open, {fds_idle} when idle"
    );
    assert!(served > 0, "nobody was served");
    assert!(
        per_burst.iter().all(|&n| n == 1),
        "EMFILE logged {per_burst:?} times per burst, not once:\n{}",
        log.lines()
            .filter(|l| l.contains(EMFILE_LINE))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
