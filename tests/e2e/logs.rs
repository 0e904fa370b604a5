//! Log formats and the access log: `--log-format json` writes nothing but
//! JSON lines to stderr, even the last words of a server that cannot
//! start; `access=debug` logs one line per request with the client's
//! address, the request's kind, its outcome and its time; the start-up
//! line counts workers only where there are some.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{both_io, eventually, Io, Server, IO_TIMEOUT};

both_io!(json_lines_only, access_log_in_text);

/// The start-up line gives the worker count under `threads` and `procs`,
/// which run that many workers, and none under `inline` and `exclusive`,
/// which run none (it said `workers=2` there, the `--workers` default on
/// two cores).
#[test]
fn workers_logged_only_where_there_are_workers() {
    for (apply, logged) in [
        ("threads", Some("workers=3")),
        ("procs", Some("workers=3")),
        ("inline", None),
        ("exclusive", None),
    ] {
        let server = Server::start(Io::Threads, apply, &["--workers", "3"]);
        assert!(
            eventually(IO_TIMEOUT, || server.log().contains("sumserver started")),
            "{apply}: {}",
            server.log()
        );
        let log = server.log();
        let started = log
            .lines()
            .find(|line| line.contains("sumserver started"))
            .unwrap_or_default();
        assert!(started.contains(&format!("apply={apply}")), "{started}");
        match logged {
            Some(workers) => assert!(started.contains(workers), "{apply}: {started}"),
            None => assert!(!started.contains("workers="), "{apply}: {started}"),
        }
    }
}

/// Requests of every kind, and the outcomes the access log must show.
fn send_requests(server: &Server) {
    let mut conn = server.line_conn();
    assert_eq!(conn.request("ping"), "pong");
    assert_eq!(conn.request("sumn 10"), "55");
    assert_eq!(conn.request("prime 7"), "true");
    assert!(conn.request("fib 3").starts_with("ERR bad-request"));
    conn.request("stats");
    assert_eq!(server.seed(b"10"), b"55");
}

/// Under `--log-format json` every line on stderr is a JSON object with a
/// level and a timestamp, the access lines among them, through a whole
/// run: start, requests, a graceful stop.
fn json_lines_only(io: Io) {
    let server = Server::start(
        io,
        "procs",
        &[
            "--workers",
            "1",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
    );
    send_requests(&server);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"))
        })
        .collect();
    assert!(lines.len() > 6, "{log}");
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "access").collect();
    let kinds: Vec<&str> = access
        .iter()
        .filter_map(|l| l["request"].as_str())
        .collect();
    for kind in ["ping", "sumn", "prime", "invalid", "stats"] {
        assert!(
            kinds.contains(&kind),
            "no access line for {kind}: {kinds:?}"
        );
    }
    let bad = access
        .iter()
        .find(|l| l["request"] == "invalid")
        .expect("the bad request");
    assert_eq!(bad["outcome"], "bad-request", "{bad}");
    assert!(
        bad["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{bad}"
    );
    assert!(bad["took_us"].is_u64(), "{bad}");
    assert!(
        lines.iter().any(|l| l["message"] == "sumserver stopped"),
        "{log}"
    );
}

/// With text logs, `--log-level info,access=debug` turns the access log on
/// and nothing else at debug: one line per request.
fn access_log_in_text(io: Io) {
    let server = Server::start(io, "threads", &["--log-level", "info,access=debug"]);
    send_requests(&server);
    let mut log = String::new();
    // Six requests: the log thread writes them shortly.
    let complete = eventually(Duration::from_secs(5), || {
        log = server.log();
        log.lines().filter(|l| l.contains("access")).count() >= 6
    });
    assert!(complete, "{log}");
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access:")).collect();
    assert_eq!(access.len(), 6, "one line per request: {log}");
    for line in &access {
        assert!(
            line.contains("DEBUG") && line.contains("peer=127.0.0.1:"),
            "{line}"
        );
        assert!(line.contains("took_us="), "{line}");
    }
    let outcomes = [
        "request=\"ping\"",
        "request=\"prime\"",
        "outcome=\"bad-request\"",
    ];
    for wanted in outcomes {
        assert!(access.iter().any(|l| l.contains(wanted)), "{wanted}: {log}");
    }
    assert_eq!(
        access
            .iter()
            .filter(|l| l.contains("request=\"sumn\""))
            .count(),
        2,
        "sumn in the line dialect and in the seed dialect: {log}"
    );
    assert!(
        !log.contains("DEBUG server"),
        "only the access log is at debug: {log}"
    );
}

/// A server that cannot start says why in one JSON line under
/// `--log-format json`.
#[test]
fn last_words_in_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("address").to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_sumserver"))
        .args(["--addr", &addr, "--log-format", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("run sumserver");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"));
        assert!(value["level"].is_string(), "{value}");
    }
    assert!(stderr.contains("could not listen on"), "{stderr}");
}
