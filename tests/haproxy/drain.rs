//! Draining a server from HAProxy's admin socket.

use crate::balancer::BACKEND;
use crate::fleet::Fleet;
use crate::one_at_a_time;
use crate::support::{eventually, Conn, Io, IO_TIMEOUT};

/// `set server sumservers/s1 state drain`: s1 gets no new connection while
/// the ones it has keep being served until they close; `state ready` brings
/// it back.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn drained_server_finishes_its_connections_and_gets_no_new_ones() {
    let _serial = one_at_a_time();
    let fleet = Fleet::start(
        &[Io::Threads, Io::Events, Io::Threads],
        "threads",
        &[],
        false,
    );
    let balancer = &fleet.balancer;
    let current = || -> Vec<u64> { balancer.stat().values().map(|s| s.current).collect() };
    assert!(
        eventually(IO_TIMEOUT, || current() == [0, 0, 0]),
        "sessions before the test: {:?}",
        current()
    );

    // One kept-alive connection on each server (leastconn).
    let mut old: Vec<Conn> = (0..3).map(|_| Conn::new(balancer.connect())).collect();
    for conn in &mut old {
        assert_eq!(conn.request("ping"), "pong");
    }
    assert_eq!(current(), [1, 1, 1]);

    let answer = balancer.admin(&format!("set server {BACKEND}/s1 state drain"));
    assert_eq!(answer.trim(), "", "the admin socket refused: {answer}");
    balancer.wait_status("s1", "DRAIN", IO_TIMEOUT);

    // New connections go elsewhere.
    let before = balancer.stat();
    let mut new: Vec<Conn> = (0..6).map(|_| Conn::new(balancer.connect())).collect();
    for conn in &mut new {
        assert_eq!(conn.request("sumn 100"), "5050");
    }
    let after = balancer.stat();
    let given: Vec<u64> = after
        .iter()
        .map(|(name, s)| s.total - before[name].total)
        .collect();
    assert_eq!(
        given[0], 0,
        "the drained server got new connections: {given:?}"
    );
    assert_eq!(current(), [1, 4, 4]);

    // Its own connection is still served.
    for _ in 0..20 {
        for conn in &mut old {
            assert_eq!(conn.request("sumn 25000"), "312512500");
        }
    }
    drop(old);
    let emptied = eventually(IO_TIMEOUT, || current()[0] == 0);
    assert!(emptied, "s1 still holds connections: {:?}", current());

    // Ready again: the next connection goes to the emptiest server, s1.
    let answer = balancer.admin(&format!("set server {BACKEND}/s1 state ready"));
    assert_eq!(answer.trim(), "", "the admin socket refused: {answer}");
    balancer.wait_status("s1", "UP", IO_TIMEOUT);
    let mut back = Conn::new(balancer.connect());
    assert_eq!(back.request("ping"), "pong");
    assert_eq!(current()[0], 1, "{:?}", balancer.stat());
    drop(new);
}
