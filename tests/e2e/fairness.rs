//! Jobs end with their clients, and no client address starves another:
//! under `threads` and `procs`, jobs whose connections closed are withdrawn
//! (their places freed, counted as `cancelled`), and a client from another
//! address waits at most about one running job behind a crowd.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::crowd::{abandon, ask_from, assert_answered_within, hold};
use crate::support::{both_io, eventually, Io, Server, IO_TIMEOUT};

/// 200 `sleep 20000` on connections that closed at once: another client's
/// `sumn` is answered within 3 s, and the sleeps are counted `cancelled`
/// (those that ran were stopped; the rest never ran).
fn abandoned_jobs_are_withdrawn(io: Io) {
    let server = Server::start(io, "threads", &["--workers", "2"]);
    abandon(server.addr(), 200, "sleep 20000\n");
    let closed = Instant::now();
    // A connection thread notices its client's departure within 50 ms; the
    // next client comes a moment later, as any client would.
    std::thread::sleep(Duration::from_millis(250));
    assert_answered_within(server.addr(), closed, Duration::from_secs(3));
    let counted = eventually(IO_TIMEOUT, || {
        let stats = server.stats();
        stats["jobs"]["sleep"]["cancelled"].as_u64().unwrap_or(0)
            + stats["jobs"]["sleep"]["busy"].as_u64().unwrap_or(0)
            == 200
            && stats["queued"] == 0
    });
    assert!(counted, "{}", server.stats());
    assert_eq!(server.stats()["jobs"]["sleep"]["ok"], 0);
}

both_io!(abandoned_jobs_are_withdrawn);

/// Beside 100 connections from one address holding `sleep 2000`, a
/// client on another address is answered within 3.5 s: it waits for one
/// running sleep at most, not for the crowd.
fn another_address_is_not_starved(io: Io) {
    let server = Server::start(io, "threads", &["--workers", "2"]);
    let _crowd = hold(server.addr(), 100, "sleep 2000\n");
    // The crowd is in: two sleeps run, the rest wait.
    let waiting = eventually(IO_TIMEOUT, || server.stats()["queued"] == 98);
    assert!(waiting, "{}", server.stats());
    let (reply, took) = ask_from(Ipv4Addr::new(127, 0, 0, 2), server.addr(), "sumn 10");
    assert_eq!(reply, "55");
    assert!(
        took < Duration::from_millis(3_500),
        "answered after {took:?}"
    );
}

both_io!(another_address_is_not_starved);

/// The same two under `procs`: waiting jobs of closed connections are
/// withdrawn (the two running finish, their answers dropped), and another
/// address goes before the crowd.
#[test]
fn procs_withdraws_and_shares() {
    let server = Server::start(Io::Events, "procs", &["--workers", "2"]);
    abandon(server.addr(), 60, "sleep 1500\n");
    assert_answered_within(server.addr(), Instant::now(), Duration::from_millis(2_500));
    let counted = eventually(IO_TIMEOUT, || {
        server.stats()["jobs"]["sleep"]["cancelled"].as_u64() == Some(60)
    });
    assert!(counted, "{}", server.stats());

    let _crowd = hold(server.addr(), 40, "sleep 1500\n");
    let waiting = eventually(IO_TIMEOUT, || server.stats()["queued"] == 38);
    assert!(waiting, "{}", server.stats());
    let (reply, took) = ask_from(Ipv4Addr::new(127, 0, 0, 2), server.addr(), "sumn 10");
    assert_eq!(reply, "55");
    assert!(
        took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );
}
