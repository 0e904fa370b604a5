//! `--accept-proxy`: every connection starts with a PROXY protocol header
//! (v1 text or v2 binary), whose client is the one logged; a connection
//! without one is refused with `ERR bad-request`.

use std::io::Read;
use std::time::Duration;

use crate::support::{both_io, eventually, Io, Server, IO_TIMEOUT};

both_io!(
    proxy_headers_name_the_client,
    connections_without_a_header_are_refused,
);

/// The version 2 header HAProxy's `send-proxy-v2` sends for an IPv4
/// client, by hand: signature, version 2 + PROXY, TCP over IPv4, 12 bytes
/// of addresses and ports.
fn v2_header(client: [u8; 4], client_port: u16, server_port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    header.extend_from_slice(&client);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&client_port.to_be_bytes());
    header.extend_from_slice(&server_port.to_be_bytes());
    header
}

/// A v1 header, a v2 header (before the seed dialect), a v2 LOCAL header
/// (a health check) and a header that arrives a byte at a time: each is
/// followed by ordinary requests, and the clients named are in the log.
fn proxy_headers_name_the_client(io: Io) {
    let server = Server::start(io, "threads", &["--accept-proxy", "--log-level", "debug"]);

    let mut v1 = server.line_conn();
    v1.send("PROXY TCP4 203.0.113.7 127.0.0.1 40000 10000\r\n");
    assert_eq!(v1.request("ping"), "pong");
    assert_eq!(v1.request("sumn 10"), "55");

    let mut seed = server.connect();
    let mut request = v2_header([198, 51, 100, 9], 1234, 10000);
    request.extend_from_slice(b"25000");
    std::io::Write::write_all(&mut seed, &request).unwrap();
    let mut reply = String::new();
    seed.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "312512500", "the seed dialect after a v2 header");

    let mut local = server.line_conn();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    local.send(&String::from_utf8(header).unwrap());
    assert_eq!(local.request("ping"), "pong", "after a LOCAL header");

    let mut slow = server.line_conn();
    slow.send_slowly(
        "PROXY TCP4 192.0.2.55 127.0.0.1 4242 10000\r\n",
        Duration::from_millis(1),
    );
    assert_eq!(slow.request("prime 1000003"), "true");

    for client in ["203.0.113.7:40000", "198.51.100.9:1234", "192.0.2.55:4242"] {
        assert!(
            eventually(IO_TIMEOUT, || server.log().contains(client)),
            "the log does not name {client}:\n{}",
            server.log()
        );
    }
}

/// Without a header (or with a bad one) a connection gets `ERR
/// bad-request`, quoting what it sent up to the byte that cannot begin a
/// header, and is closed; the server serves the next one.
fn connections_without_a_header_are_refused(io: Io) {
    let server = Server::start(io, "threads", &["--accept-proxy"]);
    for (sent, quoted) in [
        ("ping\n", "began with \"p\""),
        ("25000", "began with \"2\""),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end in \\r\\n"),
        ("PROXY TCP4 1.2.3.4\r\n", "bad PROXY v1 header"),
    ] {
        let mut conn = server.line_conn();
        conn.send(sent);
        let reply = conn.read_line();
        assert!(
            reply.starts_with("ERR bad-request ") && reply.contains(quoted),
            "{sent:?} got {reply:?}"
        );
        assert_eq!(conn.read_until_closed(), "", "{sent:?}: then closed");
    }
    let mut good = server.line_conn();
    good.send("PROXY UNKNOWN\r\n");
    assert_eq!(good.request("ping"), "pong");
}
