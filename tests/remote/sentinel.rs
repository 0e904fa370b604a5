//! The broker behind Redis Sentinel (`redis+sentinel://`): a primary, a
//! replica and three sentinels, two workers, a server under load. The
//! primary killed: no wrong answer, every job in flight answered, new jobs
//! served again within 8 s. A planned `SENTINEL FAILOVER`: not one error.

use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::engines::{SentinelSet, Worker};
use crate::load::{Connections, Load, Seen};
use crate::security::server_on;
use crate::support::{eventually, Io, Server, IO_TIMEOUT};

/// The set, two workers and a server on the sentinels' URL.
fn cluster(io: Io) -> (SentinelSet, Vec<Worker>, Server) {
    let set = SentinelSet::start();
    let url = set.url();
    let workers = (1..=2)
        .map(|i| Worker::launch(&url, &format!("s-w{i}"), &["--lease", "1s"], &[], None))
        .collect();
    let server = server_on(io, &url, &["--job-timeout", "20s"]);
    (set, workers, server)
}

/// `kill -9` of the primary under load, with ten `sleep 1500` in flight:
/// no wrong answer, every sleep answered `ok`, new jobs served again within
/// 8 s of the kill, and 50 jobs right after.
fn primary_killed(io: Io) {
    let (mut set, _workers, server) = cluster(io);
    let load = Load::start(vec![server.addr()], Connections::KeptAlive);
    let mut sleeps: Vec<Conn> = (0..10).map(|_| server.line_conn()).collect();
    for conn in &mut sleeps {
        conn.set_read_timeout(Duration::from_secs(20));
        conn.send("sleep 1500\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let old = set.primary_port();
    let killed = Instant::now();
    set.node(old).kill();
    let mut probe = server.line_conn();
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(8) {
        if probe.request("sumn 7") == "28" {
            back = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = back.unwrap_or_else(|| panic!("no service 8 s after the kill: {}", server.stats()));
    println!("figures: service back {back:?} after the primary was killed");
    for n in 0..50u64 {
        assert_eq!(
            probe.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    for (i, conn) in sleeps.iter_mut().enumerate() {
        assert_eq!(conn.read_line(), "ok", "sleep {i} in flight at the kill");
    }
    let Seen { ok, wrong, errors } = load.finish();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    assert!(ok > 0);
    for (_, error) in &errors {
        assert!(error.contains(" → ERR unavailable "), "{error}");
    }
    let stats = server.stats();
    assert!(stats["remote"]["failovers"].as_u64() >= Some(1), "{stats}");
    assert_ne!(
        stats["remote"]["primary"],
        format!("127.0.0.1:{old}"),
        "{stats}"
    );
    println!(
        "figures: {} resubmitted, {} late replies dropped, {} errors (all unavailable)",
        stats["remote"]["resubmitted"],
        stats["remote"]["late_replies"],
        errors.len()
    );
}

crate::with_sentinel!(primary_killed);

/// A planned switch (`SENTINEL FAILOVER`) under load costs not one error:
/// the server and the workers follow it, and every answer is right.
fn planned_failover(io: Io) {
    let (set, _workers, server) = cluster(io);
    let load = Load::start(vec![server.addr()], Connections::KeptAlive);
    std::thread::sleep(Duration::from_millis(300));
    let old = set.primary_port();
    set.planned_failover();
    let switched = eventually(Duration::from_secs(15), || set.primary_port() != old);
    assert!(switched, "the sentinels did not switch");
    // Load on the new primary for a while.
    let followed = eventually(IO_TIMEOUT, || {
        server.stats()["remote"]["primary"] != format!("127.0.0.1:{old}")
    });
    assert!(followed, "{}", server.stats());
    std::thread::sleep(Duration::from_millis(500));
    let Seen { ok, wrong, errors } = load.finish();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 0);
}

crate::with_sentinel!(planned_failover);
