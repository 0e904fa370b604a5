//! Servers that go away under load: one SIGKILLed, and every one restarted
//! in turn. With `sumclient --retries 3` not one request may fail.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::fleet::Fleet;
use crate::load::Load;
use crate::one_at_a_time;
use crate::support::{eventually, Conn, Io};

/// One of three servers SIGKILLed while 4 kept-alive clients run: no
/// request fails or is answered wrong, HAProxy marks the server DOWN within
/// about a second, and new connections go to the other two.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn kill_9_under_load_loses_nothing() {
    let _serial = one_at_a_time();
    let fleet = Fleet::start(
        &[Io::Threads, Io::Events, Io::Threads],
        "threads",
        &["--workers", "2"],
        false,
    );
    let load = Load::start(
        fleet.balancer.addr(),
        &[
            "4",
            "--keep-alive",
            "--retries",
            "3",
            "--duration",
            "4s",
            "--mix",
            "sumn:1000=9,sleep:5=1",
        ],
        Duration::from_secs(30),
    );
    thread::sleep(Duration::from_secs(1));
    let victim = 1;
    let name = Fleet::name(victim);
    fleet.servers[victim].signal(Signal::SIGKILL);
    let down_after = fleet
        .balancer
        .wait_status(&name, "DOWN", Duration::from_secs(5));
    fleet.servers[victim].wait_exit(Duration::from_secs(5));

    // New connections now: none for the dead server.
    let before = fleet.balancer.stat();
    for _ in 0..6 {
        let mut conn = Conn::new(fleet.balancer.connect());
        assert_eq!(conn.request("ping"), "pong");
    }
    let after = fleet.balancer.stat();
    let given: Vec<u64> = after
        .iter()
        .map(|(name, s)| s.total - before[name].total)
        .collect();

    let report = load.finish();
    println!(
        "figures: kill-9 down_after_ms={} sent={} retries={:?} errors={} wrong={} \
         new connections per server {given:?}",
        down_after.as_millis(),
        report.sent,
        report.retries,
        report.errors,
        report.wrong
    );
    report.assert_all_right("kill -9 of one server");
    assert!(
        down_after < Duration::from_secs(2),
        "HAProxy took {down_after:?} to mark {name} DOWN (the config promises about 0.75 s)"
    );
    assert_eq!(
        given[victim], 0,
        "the dead server got new connections: {given:?}"
    );
    assert_eq!(given.iter().sum::<u64>(), 6, "{given:?}");
}

/// Every server in turn gets SIGTERM, exits, is started again on its port
/// and waited for until UP, while 4 kept-alive clients run: not one request
/// fails.
fn rolling_restart_loses_nothing(io: Io) {
    let _serial = one_at_a_time();
    let mut fleet = Fleet::start(
        &[io; 3],
        "threads",
        &["--workers", "2", "--grace", "3s"],
        false,
    );
    // Long enough for three restarts on a loaded machine (each about 0.1 s
    // to stop and start, up to a second for HAProxy's checks, then 0.5 s).
    let run = Duration::from_secs(12);
    let started = Instant::now();
    let load = Load::start(
        fleet.balancer.addr(),
        &[
            "4",
            "--keep-alive",
            "--retries",
            "3",
            "--duration",
            "12s",
            "--mix",
            "sumn:1000=9,sleep:20=1",
        ],
        Duration::from_secs(40),
    );
    thread::sleep(Duration::from_millis(700));
    let mut restarts = Vec::new();
    for index in 0..fleet.servers.len() {
        let name = Fleet::name(index);
        let stopping = Instant::now();
        fleet.servers[index].signal(Signal::SIGTERM);
        let status = fleet.servers[index].wait_exit(Duration::from_secs(5));
        assert!(status.success(), "{name} exited with {status}");
        let stopped = stopping.elapsed();
        fleet.restart(index);
        // UP, and reached by HAProxy since the restart: the new process has
        // had a connection (a health check or a client's) besides this
        // test's own `stats` one.
        let checked = eventually(Duration::from_secs(5), || {
            fleet.servers[index].stats()["connections"]["total"]
                .as_u64()
                .is_some_and(|total| total >= 2)
        });
        assert!(checked, "HAProxy never reached the restarted {name}");
        fleet
            .balancer
            .wait_status(&name, "UP", Duration::from_secs(5));
        restarts.push((stopped.as_millis(), stopping.elapsed().as_millis()));
        // Let some connections find the restarted server before the next.
        thread::sleep(Duration::from_millis(500));
    }
    assert!(
        started.elapsed() < run,
        "the restarts took longer than the load ran ({:?})",
        started.elapsed()
    );
    let report = load.finish();
    println!(
        "figures: rolling-restart io={} sent={} retries={:?} errors={} wrong={} \
         (stop ms, back UP ms) per server {restarts:?}",
        io.name(),
        report.sent,
        report.retries,
        report.errors,
        report.wrong
    );
    report.assert_all_right("rolling restart");
}

mod rolling_restart_loses_nothing {
    use crate::support::Io;

    /// The rolling restart with a thread per connection.
    #[test]
    #[cfg_attr(
        no_haproxy,
        ignore = "haproxy not installed: apt-get install -y haproxy"
    )]
    fn threads() {
        super::rolling_restart_loses_nothing(Io::Threads);
    }

    /// The rolling restart with one event loop.
    #[test]
    #[cfg_attr(
        no_haproxy,
        ignore = "haproxy not installed: apt-get install -y haproxy"
    )]
    fn events() {
        super::rolling_restart_loses_nothing(Io::Events);
    }
}
