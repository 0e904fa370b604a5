//! One smoke test per strategy: the seed dialect, every line command,
//! `stats`, 1000 pipelined requests, a request written byte by byte, and the
//! `bad-request` replies, all against one server.

use std::time::Duration;

use serde_json::Value;

use crate::support::{both_io, sum_of, Io, Server};

both_io!(smoke_inline, smoke_exclusive, smoke_threads, smoke_procs);

/// `--apply inline` serves both dialects and every command correctly.
fn smoke_inline(io: Io) {
    smoke(io, "inline");
}

/// `--apply exclusive` serves both dialects and every command correctly.
fn smoke_exclusive(io: Io) {
    smoke(io, "exclusive");
}

/// `--apply threads` serves both dialects and every command correctly.
fn smoke_threads(io: Io) {
    smoke(io, "threads");
}

/// `--apply procs` serves both dialects and every command correctly.
fn smoke_procs(io: Io) {
    smoke(io, "procs");
}

fn smoke(io: Io, apply: &str) {
    let server = Server::start(io, apply, &[]);
    seed_dialect(&server);
    line_commands(&server, apply);
    pipelining(&server);
    byte_at_a_time(&server);
    bad_requests(&server);
}

/// A bare number, no newline: the sum, no terminator, then EOF.
fn seed_dialect(server: &Server) {
    let cases: [(&[u8], &[u8]); 5] = [
        (b"25000", b"312512500"),
        (b"25000\n", b"312512500"),
        (b"25000\r\n", b"312512500"),
        (b"0", b"0"),
        (b"1", b"1"),
    ];
    for (request, expected) in cases {
        let reply = server.seed(request);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected),
            "seed request {:?}",
            String::from_utf8_lossy(request)
        );
    }
    let reply = server.seed(b"12x");
    assert!(
        reply.starts_with(b"ERR bad-request "),
        "seed request \"12x\" got {:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// Every command of the line dialect, any case, `\n` or `\r\n`; then `quit`.
fn line_commands(server: &Server, apply: &str) {
    let mut conn = server.line_conn();
    for (request, expected) in [
        ("ping", "pong"),
        ("PiNg", "pong"),
        ("sumn 25000", "312512500"),
        ("sumn 0", "0"),
        ("SUMN 10", "55"),
        ("Sumn 100\r", "5050"),
        ("prime 1000003", "true"),
        ("prime 1000001", "false"),
        ("PRIME 2", "true"),
        ("prime 1", "false"),
        // u64::MAX is accepted (and divisible by 3).
        ("prime 18446744073709551615", "false"),
        ("sleep 20", "ok"),
        ("sleep 0", "ok"),
        ("Sleep 1\r", "ok"),
    ] {
        assert_eq!(conn.request(request), expected, "request {request:?}");
    }
    check_stats(&conn.request("stats"), apply);
    conn.send("quit\n");
    assert_eq!(
        conn.read_until_closed(),
        "",
        "quit must close without a reply"
    );
}

/// The `stats` line is one JSON object with the documented shape.
fn check_stats(line: &str, apply: &str) {
    let stats: Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("stats {line:?}: {err}"));
    let field = |path: &str| -> &Value {
        stats
            .pointer(path)
            .unwrap_or_else(|| panic!("stats has no {path}: {line}"))
    };
    let count = |path: &str| -> u64 {
        field(path)
            .as_u64()
            .unwrap_or_else(|| panic!("stats {path} is not a count: {line}"))
    };
    assert!(
        field("/uptime_s").as_f64().is_some_and(|t| t >= 0.0),
        "{line}"
    );
    assert_eq!(field("/strategy").as_str(), Some(apply), "{line}");
    assert!(count("/connections/open") >= 1, "{line}");
    assert!(
        count("/connections/total") >= count("/connections/open"),
        "{line}"
    );
    count("/connections/refused");
    for key in ["configured", "alive", "busy", "respawned"] {
        count(&format!("/workers/{key}"));
    }
    for kind in ["sumn", "prime", "sleep"] {
        for outcome in [
            "ok",
            "busy",
            "timeout",
            "worker_lost",
            "panicked",
            "shutting_down",
            "pool_down",
        ] {
            count(&format!("/jobs/{kind}/{outcome}"));
        }
        for histogram in ["queue_wait_us", "run_us"] {
            let [p50, p99, max] =
                ["p50", "p99", "max"].map(|p| count(&format!("/jobs/{kind}/{histogram}/{p}")));
            assert!(p50 <= p99 && p99 <= max, "{kind} {histogram}: {line}");
        }
    }
    assert!(count("/jobs/sumn/ok") >= 3, "{line}");
    assert!(count("/jobs/prime/ok") >= 5, "{line}");
    assert!(count("/jobs/sleep/ok") >= 3, "{line}");
}

/// 1000 requests written at once are answered in order.
fn pipelining(server: &Server) {
    let mut conn = server.line_conn();
    let requests: String = (0..1000).map(|i| format!("sumn {i}\n")).collect();
    conn.send(&requests);
    for i in 0..1000 {
        assert_eq!(conn.read_line(), sum_of(i).to_string(), "reply {i}");
    }
    assert_eq!(conn.request("ping"), "pong");
}

/// A request dribbled in one byte at a time gets the same answer.
fn byte_at_a_time(server: &Server) {
    let mut conn = server.line_conn();
    conn.send_slowly("sumn 25000\n", Duration::from_millis(2));
    assert_eq!(conn.read_line(), "312512500");
    conn.send_slowly("ping\r\n", Duration::from_millis(2));
    assert_eq!(conn.read_line(), "pong");
}

/// Malformed requests get `ERR bad-request …` and the connection stays usable.
fn bad_requests(server: &Server) {
    let mut conn = server.line_conn();
    assert_eq!(conn.request("ping"), "pong");
    for request in [
        "fib 3",
        "sumn",
        "sumn 1 2",
        "sumn abc",
        "sumn 18446744073709551616",
        "sumn -1",
        "sumn 1.5",
        "",
        "prime",
        "prime x",
        "sleep 60001",
        "sleep",
        "ping 1",
    ] {
        let reply = conn.request(request);
        assert!(
            reply.starts_with("ERR bad-request "),
            "request {request:?} got {reply:?}"
        );
        if request == "fib 3" {
            assert!(reply.contains("\"fib\""), "detail must quote: {reply:?}");
        }
        assert_eq!(conn.request("ping"), "pong", "after {request:?}");
    }
}
