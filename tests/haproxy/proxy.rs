//! `sumserver --accept-proxy` behind HAProxy's `send-proxy-v2`.

use crate::fleet::Fleet;
use crate::one_at_a_time;
use crate::support::{eventually, Conn, Io, IO_TIMEOUT};

/// With the config's PROXY variant, HAProxy's health checks (a LOCAL
/// header) pass, requests are served, each server logs the real client
/// (this test's own address and port, not HAProxy's), and a connection
/// straight to a server without a header is refused.
fn the_real_client_is_logged(io: Io) {
    let _serial = one_at_a_time();
    let fleet = Fleet::start(
        &[io; 2],
        "threads",
        &["--accept-proxy", "--log-level", "debug"],
        true,
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        let stream = fleet.balancer.connect();
        let local = stream.local_addr().unwrap();
        let mut conn = Conn::new(stream);
        assert_eq!(conn.request("sumn 25000"), "312512500");
        assert_eq!(conn.request("ping"), "pong");
        clients.push((local, conn));
    }
    for (local, _) in &clients {
        let named = format!("client={local}");
        assert!(
            eventually(IO_TIMEOUT, || fleet
                .servers
                .iter()
                .any(|s| s.log().contains(&named))),
            "no server logged {named}"
        );
    }

    let mut direct = fleet.servers[0].line_conn();
    direct.send("ping\n");
    let reply = direct.read_line();
    assert!(reply.starts_with("ERR bad-request "), "{reply:?}");
    assert_eq!(direct.read_until_closed(), "");
    fleet.balancer.wait_all_up(2);
}

mod the_real_client_is_logged {
    use crate::support::Io;

    /// With a thread per connection.
    #[test]
    #[cfg_attr(
        no_haproxy,
        ignore = "haproxy not installed: apt-get install -y haproxy"
    )]
    fn threads() {
        super::the_real_client_is_logged(Io::Threads);
    }

    /// With one event loop.
    #[test]
    #[cfg_attr(
        no_haproxy,
        ignore = "haproxy not installed: apt-get install -y haproxy"
    )]
    fn events() {
        super::the_real_client_is_logged(Io::Events);
    }
}
