//! `sumclient` against the real `sumserver`, under each strategy and in
//! each mode. The server binary must be built (see
//! [`support::sumserver_path`]).

mod support;

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use support::{run_client, run_client_with_env, Client, Server};

/// Runs the check against a server with `apply`: 4 threads, 200
/// requests, every answer right.
fn two_hundred_requests(apply: &str) {
    let server = Server::start(apply);
    let run = run_client(&["4", "--addr", &server.addr(), "--requests", "200"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("200 total requests"), "{run:?}");
    let seconds: f64 = lines
        .next()
        .and_then(|line| line.parse().ok())
        .unwrap_or_else(|| panic!("second line is not the elapsed seconds: {run:?}"));
    assert!(seconds > 0.0 && seconds < 30.0, "{seconds}");
    assert!(
        run.stdout.contains("(200 ok, 0 wrong, 0 errors)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("errors: none"), "{run:?}");
}

/// The seed experiment passes against the inline strategy.
#[test]
fn smoke_inline() {
    two_hundred_requests("inline");
}

/// The seed experiment passes against the exclusive strategy.
#[test]
fn exclusive() {
    two_hundred_requests("exclusive");
}

/// The seed experiment passes against the threads strategy.
#[test]
fn threads() {
    two_hundred_requests("threads");
}

/// The seed experiment passes against the procs strategy.
#[test]
fn procs() {
    two_hundred_requests("procs");
}

/// Kept-alive, pipelined connections with a weighted mix get every answer
/// right, report each kind, and write a .hgrm file plotters can read.
#[test]
fn pipelined_mix() {
    let server = Server::start("threads");
    let hgrm = std::env::temp_dir().join(format!("sumclient-test-{}.hgrm", std::process::id()));
    let hgrm_arg = hgrm.to_str().expect("a UTF-8 temp path").to_owned();
    let run = run_client(&[
        "2",
        "--addr",
        &server.addr(),
        "--requests",
        "400",
        "--keep-alive",
        "--pipeline",
        "8",
        "--mix",
        "sumn:25000=85,prime:1000003=10,ping=4,sleep:1=1",
        "--hgrm",
        &hgrm_arg,
    ]);
    let written = std::fs::read_to_string(&hgrm);
    let _ = std::fs::remove_file(&hgrm);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stdout.starts_with("400 total requests\n"), "{run:?}");
    assert!(
        run.stdout.contains("(400 ok, 0 wrong, 0 errors)"),
        "{run:?}"
    );
    for kind in ["  sumn ", "  prime ", "  ping ", "  sleep "] {
        assert!(run.stdout.contains(kind), "no {kind:?} row: {run:?}");
    }
    let written = written.expect("the .hgrm file was written");
    assert!(
        written.starts_with("       Value   Percentile   TotalCount 1/(1-Percentile)\n\n"),
        "{written}"
    );
    assert!(
        written.contains("Total count    =          400]"),
        "{written}"
    );
}

/// The JSON report parses, and its counts add up overall and per kind.
#[test]
fn json_counts_add_up() {
    let server = Server::start("inline");
    let run = run_client(&[
        "3",
        "--addr",
        &server.addr(),
        "--requests",
        "90",
        "--mix",
        "sumn:1000=2,prime:1000003=1,ping=1",
        "--json",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let json = run.json();
    let counts = &json["overall"]["counts"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{v} is no count"));
    assert_eq!(n(&counts["sent"]), 90);
    assert_eq!(
        n(&counts["ok"]) + n(&counts["wrong"]) + n(&counts["errors"]),
        n(&counts["sent"])
    );
    assert_eq!(n(&json["total_requests"]), 90);
    let kinds = json["kinds"].as_object().expect("kinds is an object");
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    let per_kind: u64 = kinds.values().map(|k| n(&k["counts"]["sent"])).sum();
    assert_eq!(per_kind, 90);
    let latency = &json["overall"]["latency_us"];
    for key in ["p50", "p75", "p90", "p99", "p99_9", "p99_99", "max", "mean"] {
        assert!(latency[key].is_number(), "no {key}: {latency}");
    }
    assert!(n(&latency["p50"]) <= n(&latency["max"]));
    assert_eq!(json["all_right"], true);
}

/// A sweep prints one table row per thread count.
#[test]
fn sweep_table() {
    let server = Server::start("threads");
    let run = run_client(&[
        "--sweep",
        "1,2",
        "--addr",
        &server.addr(),
        "--requests",
        "40",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(
        lines[0].contains("threads") && lines[0].contains("p99"),
        "{run:?}"
    );
    for (line, threads) in lines[1..].iter().zip(["1", "2"]) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns.len(), 7, "{line}");
        assert_eq!((columns[0], columns[1], columns[6]), (threads, "40", "0"));
    }
}

/// With --retries, clients ride through a restart of the real server on the
/// same port (SIGTERM, then a new server) with zero failures: requests told
/// `ERR shutting-down`, cut by the close, or refused while no server listens
/// are sent again. In both connection modes. (12 retries back off for about
/// 4 s in all, room for a slow restart on a loaded machine; by hand, with
/// release binaries, 3 were enough.)
#[test]
fn retries_ride_through_a_restart() {
    for mode in [&["--keep-alive"][..], &[]] {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let server_args = ["--addr", addr.as_str(), "--apply", "threads"];
        let first = Server::start_with(&server_args);
        let mut args = vec![
            "2",
            "--addr",
            &addr,
            "--duration",
            "4s",
            "--job",
            "sleep:5",
            "--retries",
            "12",
            "--json",
        ];
        args.extend_from_slice(mode);
        let client = Client::start(&args);
        thread::sleep(Duration::from_millis(1000));
        let status = first.terminate();
        assert!(status.success(), "{status:?}");
        let second = Server::start_with(&server_args);
        let run = client.finish();
        drop(second);
        assert_eq!(run.code(), 0, "{mode:?}: {run:?}");
        let json = run.json();
        let counts = &json["overall"]["counts"];
        assert_eq!(counts["errors"], 0, "{mode:?}: {json}");
        assert_eq!(counts["wrong"], 0, "{mode:?}: {json}");
        assert!(counts["ok"].as_u64() > Some(100), "{mode:?}: {json}");
        assert!(
            json["retries"]["total"].as_u64() > Some(0),
            "{mode:?}: the restart caused no retry: {json}"
        );
    }
}

/// Every flag can come from the environment as `YSUM_<FLAG>`; the command
/// line wins over it.
#[test]
fn flags_from_the_environment() {
    let server = Server::start("threads");
    let run = run_client_with_env(
        &["2", "--requests", "30"],
        &[
            ("YSUM_ADDR", &server.addr()),
            ("YSUM_REQUESTS", "10"),
            ("YSUM_JOB", "prime:7"),
            ("YSUM_JSON", "true"),
        ],
    );
    assert_eq!(run.code(), 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["total_requests"], 30, "--requests wins: {report}");
    assert_eq!(report["kinds"]["prime"]["counts"]["ok"], 30, "{report}");
}

/// A kept-alive connection's end-of-connection check is answered, not
/// withdrawn: sumclient sends `quit` after it, so the server counts every
/// check `ok` and nothing `cancelled` (a bare end of input would tell it
/// the client left, and it would withdraw a check still queued).
#[test]
fn keep_alive_checks_are_answered() {
    use std::io::{BufRead as _, BufReader, Write as _};
    for io in ["threads", "events"] {
        let server = Server::start_with(&["--io", io, "--apply", "threads", "--workers", "1"]);
        let run = run_client(&[
            "3",
            "--addr",
            &server.addr(),
            "--requests",
            "60",
            "--keep-alive",
            "--job",
            "sleep:2",
        ]);
        assert_eq!(run.code(), 0, "{run:?}");
        assert!(!run.stdout.contains("extra replies"), "{run:?}");
        let stream = std::net::TcpStream::connect(server.addr()).expect("connect");
        (&stream).write_all(b"stats\n").expect("ask for stats");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("stats");
        let stats: serde_json::Value = serde_json::from_str(&line).expect("stats JSON");
        // Each of the 3 connections ends with a `sumn` check.
        assert_eq!(stats["jobs"]["sumn"]["ok"], 3, "{io}: {stats}");
        assert_eq!(stats["jobs"]["sumn"]["cancelled"], 0, "{io}: {stats}");
        assert_eq!(stats["jobs"]["sleep"]["ok"], 60, "{io}: {stats}");
    }
}
