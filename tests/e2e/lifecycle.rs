//! Connections and the server's life: `--max-connections`, `--read-timeout`,
//! graceful shutdown on SIGTERM, and the 2009 Python client.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{both_io, eventually, states, Conn, Io, Reaped, Server};

both_io!(
    a_connection_costs_one_descriptor,
    connections_over_the_limit_are_refused,
    idle_connections_are_closed,
    sigterm_drains_in_flight_requests_inline,
    sigterm_drains_in_flight_requests_threads,
    sigterm_drains_in_flight_requests_procs,
    sigterm_closes_idle_connections_and_refuses_new_ones,
    python_seed_client_is_served,
);

/// With `--max-connections 2` and two connections open, a third gets
/// `ERR busy too many connections` and EOF; once one closes, a new one is
/// served.
fn connections_over_the_limit_are_refused(io: Io) {
    let server = Server::start(io, "threads", &["--max-connections", "2"]);
    let mut first = server.line_conn();
    let mut second = server.line_conn();
    assert_eq!(first.request("ping"), "pong");
    assert_eq!(second.request("ping"), "pong");

    let mut third = server.line_conn();
    assert_eq!(third.read_line(), "ERR busy too many connections");
    assert_eq!(
        third.read_until_closed(),
        "",
        "the refused connection closes"
    );

    let stats: serde_json::Value = serde_json::from_str(&first.request("stats")).unwrap();
    assert!(
        stats["connections"]["refused"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "refusal not counted: {stats}"
    );

    // Closing one frees its slot (the server may take a moment to notice).
    drop(second);
    let served = eventually(Duration::from_secs(3), || {
        let mut conn = server.line_conn();
        // A refused connection speaks first; an accepted one waits for us.
        if conn.has_input_within(Duration::from_millis(100)) {
            assert_eq!(conn.read_line(), "ERR busy too many connections");
            return false;
        }
        assert_eq!(conn.request("ping"), "pong");
        true
    });
    assert!(served, "no slot came free after a connection closed");
    assert_eq!(first.request("ping"), "pong");
}

/// With `--read-timeout 300ms`, a silent connection and one stuck in a
/// partial line are closed, while one that keeps talking stays open.
fn idle_connections_are_closed(io: Io) {
    let server = Server::start(io, "threads", &["--read-timeout", "300ms"]);
    let mut silent = server.line_conn();
    let mut partial = server.line_conn();
    partial.send("pin");
    let started = Instant::now();
    thread::scope(|scope| {
        let talker = scope.spawn(|| {
            let mut talking = server.line_conn();
            for _ in 0..8 {
                thread::sleep(Duration::from_millis(100));
                assert_eq!(talking.request("ping"), "pong", "a busy connection stays");
            }
        });
        for (name, conn) in [("silent", &mut silent), ("partial", &mut partial)] {
            assert_eq!(conn.read_until_closed(), "", "{name} connection");
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(200) && took < Duration::from_secs(2),
                "{name} connection closed after {took:?}"
            );
        }
        talker.join().expect("talking connection");
    });
}

/// SIGTERM under `inline` lets in-flight requests finish, then exits 0 (with
/// `--io events`, requests the stalled reactor had not read yet are refused).
fn sigterm_drains_in_flight_requests_inline(io: Io) {
    sigterm_drains(io, "inline", &[]);
}

/// SIGTERM under `threads` lets in-flight requests finish, then exits 0.
fn sigterm_drains_in_flight_requests_threads(io: Io) {
    sigterm_drains(io, "threads", &["--workers", "4"]);
}

/// SIGTERM under `procs` lets in-flight requests finish, exits 0 and leaves
/// no fork server or worker behind.
fn sigterm_drains_in_flight_requests_procs(io: Io) {
    sigterm_drains(io, "procs", &["--workers", "4"]);
}

fn sigterm_drains(io: Io, apply: &str, workers: &[&str]) {
    let mut args = vec!["--grace", "5s"];
    args.extend_from_slice(workers);
    let server = Server::start(io, apply, &args);
    let tree = if apply == "procs" {
        let (fork_server, workers) = server.process_tree(4);
        [vec![fork_server], workers].concat()
    } else {
        server.descendants()
    };

    let mut conns: Vec<Conn> = (0..4).map(|_| server.line_conn()).collect();
    for conn in &mut conns {
        conn.send("sleep 500\n");
    }
    thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);

    let stalled = io == Io::Events && apply == "inline";
    for (i, conn) in conns.iter_mut().enumerate() {
        if stalled {
            // The reactor ran another connection's sleep itself and may not
            // have read this request when the signal came: then it is not
            // answered, and its connection closes without a byte (its
            // client may send it again elsewhere).
            let everything = conn.read_until_closed();
            assert!(
                everything == "ok\n" || everything.is_empty(),
                "request {i}: {everything:?}"
            );
            continue;
        }
        assert_eq!(conn.read_line(), "ok", "in-flight request {i}");
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    for conn in &mut conns {
        assert_eq!(
            conn.read_until_closed(),
            "",
            "closed once the server is gone"
        );
    }
    assert!(
        eventually(Duration::from_secs(1), || tree
            .iter()
            .all(|p| p.has_exited())),
        "descendants still running after the server exited: {:?}",
        states(&tree)
    );
}

/// On SIGTERM the server stops accepting at once (a connect is refused, so
/// a balancer tries another server), closes an idle kept-alive connection
/// without a byte (between requests: its client's next request goes
/// elsewhere), and still answers a request in flight before closing its
/// connection too.
fn sigterm_closes_idle_connections_and_refuses_new_ones(io: Io) {
    let server = Server::start(io, "threads", &["--grace", "5s", "--workers", "2"]);
    let mut idle = server.line_conn();
    assert_eq!(idle.request("ping"), "pong");
    let mut in_flight = server.line_conn();
    in_flight.send("sleep 1500\n");
    thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);

    assert!(
        eventually(Duration::from_secs(1), || std::net::TcpStream::connect(
            server.addr()
        )
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)),
        "the server still accepts connections after SIGTERM"
    );
    assert_eq!(idle.read_until_closed(), "", "the idle connection closes");
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "the idle connection was closed only after {:?}",
        signalled.elapsed()
    );
    assert_eq!(in_flight.read_line(), "ok");
    assert_eq!(in_flight.read_until_closed(), "", "then closes");
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

/// The 2009 Python client (if `python3` is on PATH) gets 312512500 three
/// times in a row.
fn python_seed_client_is_served(io: Io) {
    const CLIENT: &str = r#"
import sys; from socket import *
for _ in range(3):
    s = socket(AF_INET, SOCK_STREAM); s.connect(("127.0.0.1", int(sys.argv[1])))
    s.send(str(25000).encode("ascii")); print(s.recv(128).decode()); s.close()
"#;
    let Some(python) = on_path("python3") else {
        eprintln!("python3 is not on PATH: skipped");
        return;
    };
    let server = Server::start(io, "procs", &[]);
    let child = Command::new(python)
        .arg("-c")
        .arg(CLIENT)
        .arg(server.addr().port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut client = Reaped(child);
    let status = client.wait(Duration::from_secs(20));
    let mut stdout = String::new();
    let mut stderr = String::new();
    client
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    client
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "python3 failed: {status}\n{stderr}");
    assert_eq!(stdout, "312512500\n".repeat(3), "stderr: {stderr}");
}

/// The first `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// An open connection holds one descriptor in the server, in either I/O
/// model: how many clients fit under `ulimit -n` depends on it.
fn a_connection_costs_one_descriptor(io: Io) {
    const CLIENTS: usize = 20;
    let server = Server::start(io, "threads", &["--workers", "2"]);
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .expect("the server's /proc/PID/fd")
            .count()
    };
    let mut first = server.line_conn();
    assert_eq!(first.request("ping"), "pong");
    let before = descriptors();
    let mut clients: Vec<Conn> = (0..CLIENTS).map(|_| server.line_conn()).collect();
    for client in &mut clients {
        assert_eq!(client.request("ping"), "pong");
    }
    assert_eq!(
        descriptors() - before,
        CLIENTS,
        "descriptors for {CLIENTS} connections"
    );
}
