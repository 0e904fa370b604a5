//! Right answers through the balancer under every strategy, and how
//! `balance leastconn` spreads connections over the servers.

use std::io::{Read, Write};
use std::time::Duration;

use crate::fleet::Fleet;
use crate::load::Load;
use crate::one_at_a_time;
use crate::support::{eventually, Conn, Io, IO_TIMEOUT};

/// For each strategy, three servers (both `--io` models among them) behind
/// HAProxy: every dialect answers right through it, six kept-alive clients
/// are spread two to each server (leastconn), and of 300 connections of one
/// request each, every server gets a share.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn every_strategy_answers_right_and_spreads() {
    let _serial = one_at_a_time();
    let strategies = ["inline", "exclusive", "threads", "procs"];
    for (i, apply) in strategies.into_iter().enumerate() {
        let ios = if i % 2 == 0 {
            [Io::Threads, Io::Events, Io::Threads]
        } else {
            [Io::Events, Io::Threads, Io::Events]
        };
        let fleet = Fleet::start(&ios, apply, &["--workers", "2"], false);
        let balancer = &fleet.balancer;

        // Every dialect, by hand, through the balancer.
        let mut conn = Conn::new(balancer.connect());
        assert_eq!(conn.request("sumn 25000"), "312512500", "{apply}");
        assert_eq!(conn.request("prime 1000003"), "true", "{apply}");
        assert_eq!(conn.request("PRIME 1000001"), "false", "{apply}");
        assert_eq!(conn.request("ping"), "pong", "{apply}");
        assert!(
            conn.request("fib 3").starts_with("ERR bad-request"),
            "{apply}"
        );
        drop(conn);
        let mut seed = balancer.connect();
        seed.write_all(b"25000").unwrap();
        let mut reply = String::new();
        seed.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "312512500", "{apply}: the seed dialect");
        drop(seed);
        let idle = eventually(IO_TIMEOUT, || {
            balancer.stat().values().all(|s| s.current == 0)
        });
        assert!(
            idle,
            "{apply}: connections still open: {:?}",
            balancer.stat()
        );

        // Six kept-alive clients: leastconn gives each server two.
        let before = balancer.stat();
        let mix = ["--mix", "sumn:25000=3,prime:1000003=1"];
        let report = Load::start(
            balancer.addr(),
            &[&["6", "--keep-alive", "--requests", "600"][..], &mix[..]].concat(),
            Duration::from_secs(60),
        )
        .finish();
        report.assert_all_right(&format!("{apply}, kept alive"));
        let after = balancer.stat();
        let given: Vec<u64> = after
            .iter()
            .map(|(name, s)| s.total - before[name].total)
            .collect();
        assert_eq!(given, [2, 2, 2], "{apply}: connections per server");
        let jobs: Vec<u64> = fleet
            .servers
            .iter()
            .map(|server| {
                let stats = server.stats();
                ["sumn", "prime"]
                    .iter()
                    .map(|kind| stats["jobs"][kind]["ok"].as_u64().unwrap_or(0))
                    .sum()
            })
            .collect();

        // One connection per request: each server gets about a third.
        let before = balancer.stat();
        let report = Load::start(
            balancer.addr(),
            &["3", "--requests", "300"],
            Duration::from_secs(60),
        )
        .finish();
        report.assert_all_right(&format!("{apply}, a connection per request"));
        let after = balancer.stat();
        let shares: Vec<f64> = after
            .iter()
            .map(|(name, s)| (s.total - before[name].total) as f64 / 300.0)
            .collect();
        println!(
            "figures: spread apply={apply} kept-alive jobs per server {jobs:?}; \
             connection-per-request shares {shares:.2?}"
        );
        // Not an even third: leastconn favours the server whose sessions
        // end soonest, and how long a closing connection lingers differs
        // between the I/O models and with the machine's load.
        assert!(
            shares.iter().all(|share| *share >= 0.1),
            "{apply}: a server got less than a tenth of 300 connections: {shares:.2?}"
        );
        assert!(
            jobs.iter().all(|n| *n > 0),
            "{apply}: a server got no request: {jobs:?}"
        );
    }
}
