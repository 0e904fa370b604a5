//! `sumclient` against small in-test servers that misbehave on purpose: one
//! that answers wrong, one that stalls once, one that answers twice, ones
//! that drop connections or shut down, and none at all; sumclient
//! interrupted by SIGINT; and its flags from the environment.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{counts_add_up, run_client, run_client_with_env, sum_of, Client, FakeServer};

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
            // As sumserver: no reply, every answer before it given.
            if line == "quit" {
                return;
            }
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

/// What the scripted server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Answer it right.
    Answer,
    /// Answer it right, twice.
    Twice,
    /// Close the connection without answering.
    Close,
    /// Answer `ERR shutting-down …` and close the connection.
    ShuttingDown,
    /// Answer `ERR busy …`.
    Busy,
}

/// The right reply to a request, as sumserver writes it; a seed request of
/// more than 16 digits is refused, as sumserver refuses it.
fn reply_to(request: &str, seed: bool) -> String {
    let request = request.trim();
    if seed {
        return match request.parse::<u64>() {
            Ok(n) if request.len() <= 16 => sum_of(n).to_string(),
            _ => "ERR bad-request".to_owned(),
        };
    }
    match request.split_once(' ') {
        Some(("sumn", n)) => n
            .parse()
            .map_or("ERR bad-request".into(), |n| sum_of(n).to_string()),
        _ if request == "ping" => "pong".into(),
        _ => "ERR bad-request".to_owned(),
    }
}

/// A server speaking both dialects: `script(connection, request)`, both
/// counted from 0 over the server's life and the connection's, says what to
/// do with each request. Returns the server and its count of connections.
fn scripted_server(
    script: impl Fn(u64, u64) -> Act + Send + Sync + 'static,
) -> (FakeServer, Arc<AtomicU64>) {
    let connections = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&connections);
    let server = FakeServer::start(move |mut stream| {
        let _ = stream.set_nodelay(true);
        let connection = counted.fetch_add(1, Ordering::SeqCst);
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut request = 0;
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            received.extend_from_slice(&chunk[..n]);
            // The seed dialect: digits without a newline, all in one read.
            let seed = !received.contains(&b'\n');
            let lines: Vec<String> = if seed {
                vec![String::from_utf8_lossy(&std::mem::take(&mut received)).into_owned()]
            } else {
                let end = received
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .expect("a newline");
                let complete: Vec<u8> = received.drain(..=end).collect();
                String::from_utf8_lossy(&complete)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            };
            for line in lines {
                if !seed && line.trim() == "quit" {
                    return;
                }
                let act = script(connection, request);
                request += 1;
                let reply = reply_to(&line, seed);
                let end = if seed { "" } else { "\n" };
                let out = match act {
                    Act::Answer => format!("{reply}{end}"),
                    Act::Twice => format!("{reply}{end}{reply}{end}"),
                    Act::Busy => format!("ERR busy the queue is full{end}"),
                    Act::Close => return,
                    Act::ShuttingDown => {
                        let _ =
                            stream.write_all(b"ERR shutting-down the server is shutting down\n");
                        return;
                    }
                };
                if stream.write_all(out.as_bytes()).is_err() {
                    return;
                }
                if seed {
                    return;
                }
            }
        }
    });
    (server, connections)
}

/// An address nothing listens on.
fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// With one of two targets down, every planned request is counted (the
/// unreachable one's as `connect refused` errors), the report breaks the
/// counts down per target in text and JSON, and the exit status is 1; in
/// both connection modes.
#[test]
fn one_target_down_every_request_counted() {
    let (server, _) = scripted_server(|_, _| Act::Answer);
    let (up, down) = (server.addr(), dead_addr());
    for mode in [&[][..], &["--keep-alive"][..]] {
        let mut args = vec!["4", "--addr", &up, "--addr", &down, "--requests", "100"];
        args.extend_from_slice(mode);
        let run = run_client(&args);
        assert_eq!(run.code(), 1, "{run:?}");
        assert_eq!(counts_add_up(&run.stdout), (50, 0, 50), "{run:?}");
        assert!(run.stdout.starts_with("100 total requests\n"), "{run:?}");
        assert!(
            run.stdout.contains("errors: 50 connect refused\n"),
            "{run:?}"
        );
        assert!(run.stdout.contains("by target (ms)"), "{run:?}");
        assert!(
            run.stdout
                .contains(&format!("  {up}: 50 ok, 0 wrong, 0 errors (none)")),
            "{run:?}"
        );
        assert!(
            run.stdout.contains(&format!(
                "  {down}: 0 ok, 0 wrong, 50 errors (50 connect refused)"
            )),
            "{run:?}"
        );
        args.push("--json");
        let json = run_client(&args).json();
        assert_eq!(json["overall"]["counts"]["sent"], 100, "{json}");
        assert_eq!(json["targets"][&up]["counts"]["ok"], 50, "{json}");
        assert_eq!(json["targets"][&down]["counts"]["errors"], 50, "{json}");
        assert_eq!(
            json["targets"][&down]["errors"]["io"]["connect_refused"], 50,
            "{json}"
        );
        assert!(json["targets"][&up]["latency_us"]["p50"].is_u64(), "{json}");
    }
    // For a duration the requests sent are the total, and add up too.
    let run = run_client(&[
        "2",
        "--addr",
        &up,
        "--addr",
        &down,
        "--duration",
        "300ms",
        "--job",
        "ping",
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    let (ok, _, errors) = counts_add_up(&run.stdout);
    assert!(ok > 0 && errors >= 1, "{run:?}");
}

/// A server that sends every answer twice fails the run (exit 1) in every
/// mode: kept alive with one job (where each duplicate looks like the next
/// right answer), pipelined, fresh line-dialect connections, and the seed
/// dialect (where the two answers run together).
#[test]
fn double_answers_fail_the_run() {
    let (server, _) = scripted_server(|_, _| Act::Twice);
    let addr = server.addr();
    for mode in [
        &["--keep-alive"][..],
        &["--pipeline", "4"],
        &["--job", "ping"],
        &["--keep-alive", "--job", "ping"],
    ] {
        let mut args = vec!["2", "--addr", &addr, "--requests", "10"];
        args.extend_from_slice(mode);
        let run = run_client(&args);
        assert_eq!(run.code(), 1, "{mode:?}: {run:?}");
        assert!(run.stdout.contains("extra replies: "), "{mode:?}: {run:?}");
        counts_add_up(&run.stdout);
        args.push("--json");
        let json = run_client(&args).json();
        assert!(json["extra_replies"]["count"].as_u64() > Some(0), "{json}");
        assert_eq!(json["all_right"], false, "{json}");
    }
    let run = run_client(&["2", "--addr", &addr, "--requests", "10"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stdout.contains("(0 ok, 10 wrong, 0 errors)"), "{run:?}");
}

/// The end-of-connection check's own request answered with an error, or
/// with a foreign server's `pong`, is answered, not an extra reply: the run
/// passes (it failed, "extra replies: 1 that no request asked for").
#[test]
fn a_check_answered_otherwise_is_no_extra_reply() {
    // One thread, one connection: requests 0 to 4 are the run's, 5 the
    // check's.
    let (server, _) = scripted_server(
        |_, request| {
            if request == 5 {
                Act::Busy
            } else {
                Act::Answer
            }
        },
    );
    let addr = server.addr();
    let args = ["1", "--addr", &addr, "--requests", "5", "--keep-alive"];
    let run = run_client(&args);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(!run.stdout.contains("extra replies"), "{run:?}");
    // A server that answers `pong` to every line, as a health-check
    // responder might: right for `ping`, and one reply to the check.
    let pong = FakeServer::start(|stream| {
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        for line in BufReader::new(stream).lines() {
            if line.is_err() || out.write_all(b"pong\n").is_err() {
                return;
            }
        }
    });
    let addr = pong.addr();
    for mode in [&["--keep-alive"][..], &["--pipeline", "4"]] {
        let mut args = vec!["2", "--addr", &addr, "--requests", "10", "--job", "ping"];
        args.extend_from_slice(mode);
        args.push("--json");
        let run = run_client(&args);
        assert_eq!(run.code(), 0, "{mode:?}: {run:?}");
        let json = run.json();
        assert_eq!(json["overall"]["counts"]["ok"], 10, "{json}");
        assert_eq!(json["extra_replies"]["count"], 0, "{mode:?}: {json}");
    }
}

/// An honest server passes the same checks: no extra replies, exit 0.
#[test]
fn honest_server_has_no_extra_replies() {
    let (server, _) = scripted_server(|_, _| Act::Answer);
    let addr = server.addr();
    for mode in [
        &["--keep-alive"][..],
        &["--pipeline", "4"],
        &["--job", "ping"],
        &[],
    ] {
        let mut args = vec!["2", "--addr", &addr, "--requests", "10", "--json"];
        args.extend_from_slice(mode);
        let run = run_client(&args);
        assert_eq!(run.code(), 0, "{mode:?}: {run:?}");
        assert_eq!(run.json()["extra_replies"]["count"], 0, "{run:?}");
    }
}

/// `YSUM_KEEP_ALIVE` and `YSUM_JSON` take yes and no as people write them
/// (they used to take only `true` and `false`): counted by the server's
/// connections and seen in the report's format. Any other value is refused
/// with exit status 2, naming the variable, not the flag.
#[test]
fn boolean_flags_from_the_environment_take_yes_and_no() {
    let (server, connections) = scripted_server(|_, _| Act::Answer);
    let addr = server.addr();
    let args = ["2", "--addr", &addr, "--requests", "10"];
    let run = run_client_with_env(&args, &[("YSUM_KEEP_ALIVE", "yes"), ("YSUM_JSON", "1")]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.json()["overall"]["counts"]["ok"], 10, "{run:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 2, "one per thread");
    let run = run_client_with_env(&args, &[("YSUM_KEEP_ALIVE", "Off"), ("YSUM_JSON", "NO")]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stdout.starts_with("10 total requests\n"), "{run:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 12, "one per request");
    for variable in ["YSUM_KEEP_ALIVE", "YSUM_JSON"] {
        let run = run_client_with_env(&args, &[(variable, "maybe")]);
        assert_eq!(run.code(), 2, "{run:?}");
        assert!(
            run.stderr.contains(&format!(
                "{variable}=\"maybe\" is not a yes or no \
                 (write true/false, yes/no, on/off, 1/0)"
            )),
            "{run:?}"
        );
        assert!(!run.stderr.contains("--"), "names no flag: {run:?}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 12, "refused before any");
}

/// A negative duration is refused as one, quoted, with exit status 2 (it
/// was taken for an unknown flag: "unexpected argument '-1'").
#[test]
fn negative_durations_are_refused_as_such() {
    for option in ["--timeout", "--duration", "--warmup"] {
        let run = run_client(&["1", option, "-1s"]);
        assert_eq!(run.code(), 2, "{run:?}");
        assert!(
            run.stderr
                .contains("\"-1s\" is not a duration: a duration is never negative"),
            "{option}: {run:?}"
        );
    }
}

/// Connections closed before any reply are retried with --retries, counted
/// by cause, and the run passes; without --retries they are errors.
#[test]
fn retries_ride_through_closed_connections() {
    let (server, _) = scripted_server(|connection, _| {
        if connection < 3 {
            Act::Close
        } else {
            Act::Answer
        }
    });
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--requests",
        "20",
        "--retries",
        "3",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (20, 0, 0), "{run:?}");
    assert!(run.stdout.contains("retries: 3 (3 closed)\n"), "{run:?}");

    let (server, _) = scripted_server(|connection, _| {
        if connection < 3 {
            Act::Close
        } else {
            Act::Answer
        }
    });
    let run = run_client(&["1", "--addr", &server.addr(), "--requests", "20"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (17, 0, 3), "{run:?}");
    assert!(run.stdout.contains("errors: 3 closed\n"), "{run:?}");
    // Retries run out: a server that never answers fails each request after
    // 1 + 2 attempts.
    let (server, connections) = scripted_server(|_, _| Act::Close);
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--requests",
        "2",
        "--retries",
        "2",
    ]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (0, 0, 2), "{run:?}");
    assert!(run.stdout.contains("retries: 4 (4 closed)\n"), "{run:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 6);
}

/// When a pipelined connection breaks, every request not yet answered on it
/// is sent again on a new one; `ERR shutting-down` is retried too.
#[test]
fn pipelined_requests_resent() {
    let (server, _) = scripted_server(|connection, request| match (connection, request) {
        (0, 2..) => Act::Close,
        _ => Act::Answer,
    });
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--requests",
        "40",
        "--pipeline",
        "4",
        "--retries",
        "1",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (40, 0, 0), "{run:?}");
    let retried = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("retries: "))
        .unwrap_or_else(|| panic!("no retries line: {run:?}"));
    let count: u64 = retried
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!((2..=38).contains(&count), "{run:?}");

    let (server, _) = scripted_server(|connection, _| {
        if connection < 2 {
            Act::ShuttingDown
        } else {
            Act::Answer
        }
    });
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--requests",
        "10",
        "--keep-alive",
        "--retries",
        "2",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (10, 0, 0), "{run:?}");
    assert!(
        run.stdout.contains("retries: 2 (2 ERR shutting-down)\n"),
        "{run:?}"
    );
}

/// A sumn beyond 16 digits goes in the line dialect on a fresh connection
/// (the seed dialect reads at most 16 digits).
#[test]
fn big_sumn_in_the_line_dialect() {
    let (server, _) = scripted_server(|_, _| Act::Answer);
    let addr = server.addr();
    let run = run_client(&[
        "1",
        "--addr",
        &addr,
        "--requests",
        "3",
        "--job",
        "sumn:10000000000000000",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (3, 0, 0), "{run:?}");
    let run = run_client(&[
        "1",
        "--addr",
        &addr,
        "--requests",
        "3",
        "--job",
        "sumn:9999999999999999",
    ]);
    assert_eq!(
        run.code(),
        0,
        "16 digits still go in the seed dialect: {run:?}"
    );
}

/// A bad output path fails at once, before any request is sent.
#[test]
fn bad_output_path_checked_first() {
    let (server, connections) = scripted_server(|_, _| Act::Answer);
    let run = run_client(&[
        "2",
        "--addr",
        &server.addr(),
        "--hgrm",
        "/nonexistent/dir/x.hgrm",
    ]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr
            .contains("could not create \"/nonexistent/dir/x.hgrm\""),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "no request was sent");
}

/// Without N sumclient says N is required, as its usage line shows; with
/// stderr not a terminal no progress bar is drawn.
#[test]
fn n_required_and_no_bar_off_terminal() {
    let run = run_client(&[]);
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(run.stderr.contains("<N>"), "{run:?}");
    assert!(
        run.stderr.contains("Usage: sumclient [OPTIONS] <N>"),
        "{run:?}"
    );
    let help = run_client(&["--help"]);
    assert_eq!(help.code(), 0, "{help:?}");
    assert!(
        help.stdout.contains("Usage: sumclient [OPTIONS] <N>"),
        "{help:?}"
    );

    let (server, _) = scripted_server(|_, _| Act::Answer);
    let run = run_client(&[
        "1",
        "--addr",
        &server.addr(),
        "--duration",
        "2500ms",
        "--job",
        "ping",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stderr.is_empty(), "nothing on stderr: {run:?}");
}

/// Sends SIGINT to a running sumclient.
fn interrupt(client: &Client) {
    let pid = Pid::from_raw(i32::try_from(client.pid()).expect("a pid"));
    kill(pid, Signal::SIGINT).expect("send SIGINT");
}

/// Waits until `connections` reaches `n` (the client is at work), at most
/// the test deadline.
fn wait_for_connections(connections: &AtomicU64, n: u64) {
    let deadline = Instant::now() + support::DEADLINE;
    while connections.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the client never connected");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Ctrl-C stops the run: the partial report is printed, marked as
/// interrupted, its counts add up, and the exit status is 130.
#[test]
fn ctrl_c_prints_partial_report() {
    let (server, connections) = scripted_server(|_, _| Act::Answer);
    let client = Client::start(&[
        "2",
        "--addr",
        &server.addr(),
        "--duration",
        "60s",
        "--rate",
        "200",
        "--keep-alive",
        "--job",
        "ping",
    ]);
    wait_for_connections(&connections, 2);
    thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    interrupt(&client);
    let run = client.finish();
    assert_eq!(run.code(), 130, "{run:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "{:?}",
        sent.elapsed()
    );
    let (ok, wrong, errors) = counts_add_up(&run.stdout);
    assert!(ok > 0 && wrong == 0 && errors == 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "interrupted by Ctrl-C: the figures cover the {ok} requests made\n"
        )),
        "{run:?}"
    );
}

/// A request still in flight when Ctrl-C's grace runs out is counted as
/// interrupted; a second Ctrl-C quits at once, without a report.
#[test]
fn ctrl_c_grace_then_second_ctrl_c() {
    let silent = || {
        let connections = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&connections);
        let server = FakeServer::start(move |mut stream| {
            counted.fetch_add(1, Ordering::SeqCst);
            // Read and never answer, until the client goes.
            let mut sink = [0u8; 256];
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                if let Ok(0) = stream.read(&mut sink) {
                    return;
                }
            }
        });
        (server, connections)
    };
    let (server, connections) = silent();
    let args = [
        "1",
        "--addr",
        &server.addr(),
        "--keep-alive",
        "--job",
        "ping",
        "--timeout",
        "60s",
    ];
    let client = Client::start(&args);
    wait_for_connections(&connections, 1);
    interrupt(&client);
    let run = client.finish();
    assert_eq!(run.code(), 130, "{run:?}");
    assert_eq!(counts_add_up(&run.stdout), (0, 0, 1), "{run:?}");
    assert!(run.stdout.contains("errors: 1 interrupted\n"), "{run:?}");

    let (server, connections) = silent();
    let args = [
        "1",
        "--addr",
        &server.addr(),
        "--keep-alive",
        "--job",
        "ping",
        "--timeout",
        "60s",
    ];
    let client = Client::start(&args);
    wait_for_connections(&connections, 1);
    interrupt(&client);
    thread::sleep(Duration::from_millis(100));
    interrupt(&client);
    let run = client.finish();
    assert_eq!(run.code(), 130, "{run:?}");
    assert!(
        run.stdout.is_empty(),
        "a second Ctrl-C prints no report: {run:?}"
    );
}
