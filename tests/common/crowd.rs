//! Many clients at once, for the tests of withdrawal and fair share (each
//! suite that needs it includes this file as its `crowd` module): clients
//! that send a job and go away, clients that send one and wait, and a
//! client from another loopback address (`127.0.0.2`: all of 127/8 is
//! loopback), which the server counts apart.

#![allow(dead_code)] // Each suite uses part of it.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::conn::Conn;
use crate::server::IO_TIMEOUT;

/// A connection to `to` from `source` (any port).
pub(crate) fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )
    .expect("bind the source");
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 server: {to}")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// `count` clients from 127.0.0.1 each send `line` and keep their
/// connection open, waiting.
pub(crate) fn hold(to: SocketAddr, count: usize, line: &str) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = connect_from(Ipv4Addr::LOCALHOST, to);
            stream.write_all(line.as_bytes()).expect("send");
            stream
        })
        .collect()
}

/// `count` clients from 127.0.0.1 each send `line`, then all close at
/// once, without reading.
pub(crate) fn abandon(to: SocketAddr, count: usize, line: &str) {
    let held = hold(to, count, line);
    // Let the server read them all before they go.
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
}

/// Asks `sumn 10` from 127.0.0.1 and asserts that the right answer comes
/// less than `limit` after `since` (when a crowd closed or was sent): a
/// client on another address is not held behind the crowd.
pub(crate) fn assert_answered_within(to: SocketAddr, since: Instant, limit: Duration) {
    let (reply, _) = ask_from(Ipv4Addr::LOCALHOST, to, "sumn 10");
    assert_eq!(reply, "55");
    let took = since.elapsed();
    assert!(took < limit, "answered {took:?} after the crowd");
}

/// Sends `line` from `source` and returns the reply with how long it took.
pub(crate) fn ask_from(source: Ipv4Addr, to: SocketAddr, line: &str) -> (String, Duration) {
    let mut conn = Conn::new(connect_from(source, to));
    let started = Instant::now();
    let reply = conn.request(line);
    (reply, started.elapsed())
}
