//! The floor servers of the side-by-side table answer like a sumserver
//! answers `sumn 1`; the relay one really makes a round trip to a process
//! of each connection's own, which it stops with the connection; the shared
//! one has a process per core for all, which it stops and reaps when its
//! stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A floor server of the built binary; killed and reaped when dropped.
struct Floor(Child);

impl Floor {
    fn start(mode: &str) -> (Floor, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ysum-bench"))
            .args(["floor-server", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the floor server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect(&line)
            .to_owned();
        (Floor(child), addr)
    }

    /// Pids of this server's children, the echo processes: each is the
    /// child of the connection thread that started it.
    fn echoes(&self) -> Vec<String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.0.id())).unwrap();
        tasks
            .flatten()
            .flat_map(|task| {
                let children = std::fs::read_to_string(task.path().join("children"));
                let children = children.unwrap_or_default();
                children
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `count` requests on one connection, one at a time, and returns the
/// replies.
fn exchange(conn: &mut TcpStream, count: usize) -> Vec<String> {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    (0..count)
        .map(|_| {
            conn.write_all(b"sumn 1\n").unwrap();
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            reply
        })
        .collect()
}

#[test]
fn the_bare_floor_answers_every_line_with_one() {
    let (_floor, addr) = Floor::start("bare");
    let mut conn = TcpStream::connect(&addr).unwrap();
    assert_eq!(exchange(&mut conn, 3), vec!["1\n"; 3]);
}

#[test]
fn the_relay_floor_has_an_echo_per_connection_and_stops_it() {
    let (floor, addr) = Floor::start("relay");
    let mut first = TcpStream::connect(&addr).unwrap();
    let mut second = TcpStream::connect(&addr).unwrap();
    assert_eq!(exchange(&mut first, 3), vec!["1\n"; 3]);
    assert_eq!(exchange(&mut second, 2), vec!["1\n"; 2]);
    let echoes = floor.echoes();
    assert_eq!(echoes.len(), 2, "one echo per connection: {echoes:?}");
    for pid in &echoes {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.ends_with(b"echo\0"),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
    }
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !floor.echoes().is_empty() {
        assert!(
            Instant::now() < deadline,
            "echoes left: {:?}",
            floor.echoes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_shared_floor_has_an_echo_per_core_for_all_and_reaps_them_at_the_end() {
    let (mut floor, addr) = Floor::start("shared");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut conns: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for conn in &mut conns {
        assert_eq!(exchange(conn, 4), vec!["1\n"; 4]);
    }
    let echoes = floor.echoes();
    assert_eq!(
        echoes.len(),
        cores,
        "one echo per core, not per connection: {echoes:?}"
    );
    drop(conns);
    // Closing its stdin stops it, after it has stopped and reaped its echoes.
    drop(floor.0.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = floor.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "it did not stop when its stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    for pid in echoes {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "echo {pid} left behind"
        );
    }
}
