//! What only `--io events` can show: the reactor does not wait for jobs
//! under `threads` and `procs`, stalls under `inline` (as the readings warn),
//! and keeps each connection's replies in request order.

use std::time::{Duration, Instant};

use crate::support::{Conn, Io, Server};

/// Under `threads`, a `sleep 2000` on one connection leaves the reactor
/// free: `ping` on another connection answers within 50 ms.
#[test]
fn reactor_never_blocks_on_a_job_threads() {
    ping_beside_a_sleep("threads");
}

/// Under `procs`, a `sleep 2000` on one connection leaves the reactor free:
/// `ping` on another connection answers within 50 ms.
#[test]
fn reactor_never_blocks_on_a_job_procs() {
    ping_beside_a_sleep("procs");
}

fn ping_beside_a_sleep(apply: &str) {
    let server = Server::start(Io::Events, apply, &["--workers", "2"]);
    let mut sleeper = server.line_conn();
    let mut pinger = server.line_conn();
    assert_eq!(pinger.request("ping"), "pong", "connected");
    sleeper.send("sleep 2000\n");
    std::thread::sleep(Duration::from_millis(100));
    for round in 0..5 {
        let started = Instant::now();
        assert_eq!(pinger.request("ping"), "pong");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "{apply}: ping {round} took {took:?} beside a running sleep"
        );
    }
    assert_eq!(sleeper.read_line(), "ok");
}

/// Under `inline` the reactor runs the job itself: a `ping` beside a
/// `sleep 500` waits for the sleep. The stall the readings warn of.
#[test]
fn inline_stalls_the_reactor() {
    let server = Server::start(Io::Events, "inline", &[]);
    let mut sleeper = server.line_conn();
    let mut pinger = server.line_conn();
    assert_eq!(pinger.request("ping"), "pong", "connected");
    sleeper.send("sleep 500\n");
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(pinger.request("ping"), "pong");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "ping answered after {:?}: no stall?",
        started.elapsed()
    );
    assert_eq!(sleeper.read_line(), "ok");
}

/// Pipelined requests after a slow job are answered after it, in order, as
/// in the threaded mode, under `threads` and `procs`.
#[test]
fn pipelined_replies_keep_order_after_a_slow_job() {
    for apply in ["threads", "procs"] {
        let server = Server::start(Io::Events, apply, &["--workers", "2"]);
        let mut conn = server.line_conn();
        let started = Instant::now();
        conn.send("sleep 300\nping\nsumn 3\nfib\nsleep 1\nprime 7\n");
        assert_eq!(conn.read_line(), "ok", "{apply}");
        assert!(started.elapsed() >= Duration::from_millis(300), "{apply}");
        assert_eq!(conn.read_line(), "pong", "{apply}");
        assert_eq!(conn.read_line(), "6", "{apply}");
        assert!(conn.read_line().starts_with("ERR bad-request "), "{apply}");
        assert_eq!(conn.read_line(), "ok", "{apply}");
        assert_eq!(conn.read_line(), "true", "{apply}");
    }
}

/// A client that sends requests but never reads replies is not read from
/// once its replies back up, so the server holds neither its requests nor
/// its replies in memory; the others are served meanwhile.
#[test]
fn a_client_that_does_not_read_backs_up_alone() {
    let server = Server::start(Io::Events, "threads", &[]);
    let stream = server.connect();
    let closer = stream.try_clone().expect("clone the socket");
    let mut sender = stream.try_clone().expect("clone the socket");
    let mut flooder = Conn::new(stream);
    // 100 000 unknown commands of 70 bytes, each answered with a bad-request
    // line twice as long: 7 MB in, 15 MB out, beyond what the socket buffers
    // hold, so the reactor must stop reading this client.
    let line = format!("{}\n", "x".repeat(69));
    let requests = line.repeat(100_000);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // Blocks once the server stops reading; fails once shut below.
        let _ = sender.write_all(requests.as_bytes());
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut other = server.line_conn();
    let started = Instant::now();
    assert_eq!(other.request("ping"), "pong");
    assert_eq!(other.request("sumn 10"), "55");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the others waited {:?}",
        started.elapsed()
    );
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("read the server's status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    assert!(rss_kib < 64 * 1024, "the server holds {rss_kib} KiB");
    let first = flooder.read_line();
    assert!(first.starts_with("ERR bad-request "), "{first:?}");
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
}

/// A connection made while an `inline` reactor is stalled in a job sits
/// unaccepted in the kernel's queue. SIGTERM stops the listening at once,
/// though the reactor is still in the job: that connection ends without a
/// byte (nothing was read from it; its client may send its request again
/// elsewhere) and new connects are refused, long before the job ends.
#[test]
fn shutdown_stops_accepting_while_the_reactor_is_stalled() {
    let server = Server::start(Io::Events, "inline", &["--grace", "5s"]);
    let mut sleeper = server.line_conn();
    assert_eq!(sleeper.request("ping"), "pong", "connected");
    sleeper.send("sleep 1500\n");
    std::thread::sleep(Duration::from_millis(100));
    let mut late = server.line_conn();
    late.send("ping\n");
    let signalled = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(late.read_until_closed(), "", "the unaccepted connection");
    let refused = crate::support::eventually(Duration::from_secs(1), || {
        std::net::TcpStream::connect(server.addr())
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(refused, "connects are still taken after SIGTERM");
    assert!(
        signalled.elapsed() < Duration::from_millis(1000),
        "the listening stopped only after {:?}, with the job",
        signalled.elapsed()
    );
    assert_eq!(sleeper.read_line(), "ok", "the job read before the signal");
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// `--grace` bounds a shutdown even when the reactor itself is running the
/// job (`inline`): the job is cut short when the grace period ends, its
/// client told so, and the exit status (3) says a request was cut.
#[test]
fn grace_bounds_a_job_run_by_the_reactor() {
    let server = Server::start(Io::Events, "inline", &["--grace", "1s"]);
    let mut sleeper = server.line_conn();
    assert_eq!(sleeper.request("ping"), "pong", "connected");
    sleeper.send("sleep 10000\n");
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let reply = sleeper.read_line();
    assert!(reply.starts_with("ERR shutting-down "), "got {reply:?}");
    let status = server.wait_exit(Duration::from_secs(8));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(3), "exit status {status}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM with --grace 1s"
    );
}

/// Requests read before a shutdown are all answered, even when a stalled
/// reactor left many of them waiting in a connection's buffer.
#[test]
fn pipelined_requests_read_before_shutdown_are_answered() {
    const PINGS: usize = 800;
    let server = Server::start(Io::Events, "inline", &["--grace", "5s"]);
    let mut sleeper = server.line_conn();
    let mut pinger = server.line_conn();
    assert_eq!(pinger.request("ping"), "pong", "connected");
    pinger.send(&"ping\n".repeat(PINGS));
    sleeper.send("sleep 500\n");
    std::thread::sleep(Duration::from_millis(100));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    for i in 0..PINGS {
        assert_eq!(pinger.read_line(), "pong", "ping {i} of {PINGS}");
    }
    assert_eq!(sleeper.read_line(), "ok");
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// The replies ready in one turn leave in one write: 1000 pipelined quick
/// inline jobs reach the client in a few TCP data segments. Written one
/// `sendto` per reply (`TCP_NODELAY`), they came in 373–388 segments (the
/// kernel's autocorking merges some); now in 4.
#[test]
fn replies_of_a_turn_leave_together() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    const JOBS: usize = 1000;
    let server = Server::start(Io::Events, "inline", &[]);
    let mut stream = server.connect();
    stream
        .write_all("sumn 5\n".repeat(JOBS).as_bytes())
        .expect("send");
    let mut replies = Vec::new();
    let mut chunk = [0u8; 65536];
    while replies.iter().filter(|&&b| b == b'\n').count() < JOBS {
        let n = stream.read(&mut chunk).expect("read the replies");
        assert!(n > 0, "closed after {} bytes", replies.len());
        replies.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(replies, "15\n".repeat(JOBS).as_bytes());
    // SAFETY: getsockopt into a zeroed tcp_info of the size passed, on a
    // socket this test owns.
    let segments = unsafe {
        let mut info: nix::libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
        let got = nix::libc::getsockopt(
            stream.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        );
        assert_eq!(got, 0, "TCP_INFO");
        info.tcpi_data_segs_in
    };
    println!("figures: {JOBS} pipelined inline replies came in {segments} TCP data segments");
    assert!(
        (segments as usize) < JOBS / 10,
        "{segments} data segments for {JOBS} replies: written one by one"
    );
}

/// A connection reads no further once a read came back short (the socket
/// was empty), until its next event: a request that comes in pieces is
/// still answered, each piece bringing its event, and requests whose end of
/// input came with them (its event says so), after a `quit` that asks for
/// their answers first, are answered and the connection closed at once, not
/// at the read timeout. Under `procs` and `inline`, whose replies reach the
/// reactor by different paths.
#[test]
fn short_reads_wait_for_the_next_event_and_see_the_end() {
    for apply in ["procs", "inline"] {
        let server = Server::start(Io::Events, apply, &["--workers", "2"]);
        let mut conn = server.line_conn();
        conn.send_slowly("sumn 10\nsu", Duration::from_millis(30));
        assert_eq!(conn.read_line(), "55", "{apply}");
        std::thread::sleep(Duration::from_millis(50));
        conn.send("mn 20\n");
        assert_eq!(conn.read_line(), "210", "{apply}");

        for round in 0..20 {
            let mut conn = server.line_conn();
            conn.send(&format!("sumn {round}\nping\nquit\n"));
            conn.stream().shutdown(std::net::Shutdown::Write).unwrap();
            let started = Instant::now();
            let rest = conn.read_until_closed();
            let sum = round * (round + 1) / 2;
            assert_eq!(rest, format!("{sum}\npong\n"), "{apply}, round {round}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{apply}: closed after {:?}",
                started.elapsed()
            );
        }
    }
}
