//! `sumclient` against small in-test servers that misbehave on purpose: one
//! that answers wrong, one that stalls once, and none at all.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::{run_client, sum_of, FakeServer};

/// Answers `42` to any request, in either dialect, then closes.
fn answer_42(mut stream: TcpStream) {
    let mut request = [0u8; 64];
    if let Ok(n) = stream.read(&mut request) {
        let line = request[..n].ends_with(b"\n");
        let _ = stream.write_all(if line { b"42\n" } else { b"42" });
    }
}

/// Wrong answers make the exit status 1, and the first one is printed once
/// with its request.
#[test]
fn wrong_answers_reported() {
    let server = FakeServer::start(answer_42);
    let run = run_client(&["2", "--addr", &server.addr(), "--requests", "10"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stdout.contains("(0 ok, 10 wrong, 0 errors)"), "{run:?}");
    let everything = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(everything.matches("wrong answer").count(), 1, "{run:?}");
    assert!(
        everything.contains("first wrong answer: request \"25000\" (seed dialect)"),
        "{run:?}"
    );
    assert!(
        everything.contains("got \"42\", expected \"312512500\""),
        "{run:?}"
    );
}

/// A line-dialect server that answers `sumn` and `ping` right, but stalls
/// for `stall` before answering request number `stall_at` (counted over all
/// connections).
fn stalling_server(stall_at: u64, stall: Duration) -> FakeServer {
    let answered = Arc::new(AtomicU64::new(0));
    FakeServer::start(move |stream| {
        // One write per reply, sent at once: a reply split over two
        // segments would wait for the client's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let mut out = match stream.try_clone() {
            Ok(out) => out,
            Err(_) => return,
        };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if answered.fetch_add(1, Ordering::SeqCst) + 1 == stall_at {
                thread::sleep(stall);
            }
            let reply = match line.split_once(' ') {
                Some(("sumn", n)) => n
                    .parse()
                    .map_or("ERR bad-request".into(), |n| sum_of(n).to_string()),
                _ if line == "ping" => "pong".into(),
                _ => "ERR bad-request".to_owned(),
            };
            if out.write_all(format!("{reply}\n").as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// In an open loop, a 500 ms stall shows in the corrected p99, measured
/// from each request's due time, and not in the uncorrected p99.
#[test]
fn stall_shows_in_corrected_latency() {
    let server = stalling_server(150, Duration::from_millis(500));
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--rate",
        "200",
        "--duration",
        "3s",
        "--keep-alive",
        "--json",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let json = run.json();
    let micros = |section: &str, key: &str| {
        json["overall"][section][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no overall.{section}.{key}: {json}"))
    };
    let corrected = micros("latency_us", "p99");
    let uncorrected = micros("uncorrected_latency_us", "p99");
    assert!(corrected >= 400_000, "corrected p99 {corrected} µs: {json}");
    assert!(
        uncorrected < 100_000,
        "uncorrected p99 {uncorrected} µs: {json}"
    );
    // The stalled request itself shows in both maxima.
    assert!(micros("uncorrected_latency_us", "max") >= 400_000, "{json}");
    let sent = json["overall"]["counts"]["sent"].as_u64().expect("sent");
    assert!(
        (570..=600).contains(&sent),
        "{sent} requests in 3 s at 200/s"
    );
    assert_eq!(json["rate"]["short"], false, "{json}");
}

/// A closed port makes the exit status 2, with a message naming the
/// address.
#[test]
fn closed_port() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").to_string()
    };
    // The listener is dropped: nothing listens on the port any more.
    let run = run_client(&["2", "--addr", &addr, "--requests", "10"]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "sumclient: cannot connect to {addr}: Connection refused"
        )),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
}
