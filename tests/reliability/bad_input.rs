//! Bad input: properties of the request parser (beyond those beside it in
//! `server/src/protocol.rs`), then garbage and hostile clients over TCP. The
//! server must answer each with the reply the protocol specifies, never
//! panic, and answer `ping` afterwards.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use server::protocol::{parse_line, parse_seed, Code, Reject, Request};

use crate::support::{figures, one_at_a_time, sum_of, Rng, Scale, Server, IO_TIMEOUT};

/// Whether `reply` is one line that a terminal shows as it is: no newline,
/// no carriage return, no other control character.
fn is_clean_line(reply: &str) -> bool {
    !reply.chars().any(char::is_control)
}

/// What every rejection must look like.
fn check_reject(reject: &Reject) -> Result<(), TestCaseError> {
    let reply = reject.to_string();
    prop_assert_eq!(reject.code, Code::BadRequest);
    prop_assert!(reply.starts_with("ERR bad-request "), "{}", reply);
    prop_assert!(is_clean_line(&reply), "{:?}", reply);
    Ok(())
}

/// Bytes that look like requests: known and unknown words, numbers in and
/// out of range, odd separators, stray bytes.
fn request_like() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just(b"sumn".to_vec()),
        Just(b"PRIME".to_vec()),
        Just(b"sleep".to_vec()),
        Just(b"ping".to_vec()),
        Just(b"Stats".to_vec()),
        Just(b"quit".to_vec()),
        Just(b"panic".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"0x10".to_vec()),
        Just("١٢".as_bytes().to_vec()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        (0u64..100_000).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let separator = prop_oneof![
        Just(b" ".to_vec()),
        Just(b"  ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\x0b".to_vec()),
        Just(b"\x0c".to_vec()),
        Just(b"\0".to_vec()),
    ];
    proptest::collection::vec((word, separator), 0..4).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(word, sep)| [word, sep])
            .flatten()
            .collect()
    })
}

/// Whether `request` is the test-only `panic` job.
fn is_panic(request: &Request) -> bool {
    matches!(request, Request::Job(job) if job.kind().name() == "panic")
}

/// The properties of one line, whatever its bytes.
fn check_line(line: &[u8]) -> Result<(), TestCaseError> {
    let parsed = parse_line(line);
    match &parsed {
        Err(reject) => check_reject(reject)?,
        Ok(request) => {
            // The same request in any case, with more spaces around.
            let upper = line.to_ascii_uppercase();
            let lower = line.to_ascii_lowercase();
            let spaced = [b" ", line, b" "].concat();
            for variant in [&upper, &lower, &spaced] {
                prop_assert_eq!(&parse_line(variant), &parsed, "{:?}", variant);
            }
            // A job prints back as its canonical form, which parses to it
            // (all but the test-only `panic` job, printed without its
            // argument).
            if let Some(Request::Job(job)) = Some(request).filter(|r| !is_panic(r)) {
                prop_assert_eq!(
                    parse_line(job.to_string().as_bytes()),
                    Ok(Request::Job(*job))
                );
            }
        }
    }
    // A final `\r` changes nothing (a `\r\n` client).
    if !line.ends_with(b"\r") {
        prop_assert_eq!(parse_line(&[line, b"\r"].concat()), parsed);
    }
    Ok(())
}

/// The properties of one seed-dialect read.
fn check_seed(bytes: &[u8]) -> Result<(), TestCaseError> {
    let number = bytes.trim_ascii_end();
    let expected = std::str::from_utf8(number)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    match parse_seed(bytes) {
        Ok(offload::Job::Sumn(n)) => prop_assert_eq!(Some(n), expected),
        Ok(job) => prop_assert!(false, "the seed dialect gave {:?}", job),
        Err(reject) => {
            prop_assert_eq!(expected, None, "{:?} refused", bytes);
            check_reject(&reject)?;
        }
    }
    Ok(())
}

proptest! {
    // Failing inputs are kept beside this file, in regressions/.
    #![proptest_config(ProptestConfig {
        cases: if Scale::get().soak { 100_000 } else { 2_000 },
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Any bytes, newlines included, give a request or one clean
    /// `bad-request` line; requests survive case, spaces and a final `\r`.
    #[test]
    fn any_bytes_parse_to_a_request_or_one_clean_line(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_line(&line)?;
        check_seed(&line)?;
    }

    /// Request-like bytes (known words, numbers at the edges of u64, odd
    /// separators) keep the same properties.
    #[test]
    fn request_like_bytes_keep_the_properties(line in request_like()) {
        check_line(&line)?;
        check_seed(&line)?;
    }
}

/// A random line without `\n`: random bytes, or request-like words.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    const WORDS: [&[u8]; 12] = [
        b"sumn",
        b"prime",
        b"SLEEP",
        b"ping",
        b"stats",
        b"fib",
        b"18446744073709551616",
        b"99999999999999999999999999",
        b"-5",
        b"\0",
        b"\xff\xfe",
        b"\r",
    ];
    let len = rng.below(120) as usize;
    if rng.below(2) == 0 {
        (0..len)
            .map(|_| rng.below(256) as u8)
            .filter(|&b| b != b'\n')
            .collect()
    } else {
        let mut line = Vec::new();
        for _ in 0..rng.below(4) {
            line.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize]);
            line.push(if rng.below(4) == 0 { b'\t' } else { b' ' });
            if rng.below(3) == 0 {
                line.extend_from_slice(rng.below(1000).to_string().as_bytes());
            }
        }
        line
    }
}

/// The reply the server owes `line`, or `None` for a line not to send (one
/// that would close the connection or run long).
fn owed(line: &[u8]) -> Option<String> {
    match parse_line(line) {
        Err(reject) => Some(reject.to_string()),
        Ok(Request::Ping) => Some("pong".to_owned()),
        Ok(Request::Job(offload::Job::Sumn(n))) if n <= 1_000_000 => Some(sum_of(n).to_string()),
        Ok(Request::Job(offload::Job::Prime(n))) if n <= 1_000_000 => {
            Some(crate::support::is_prime(n).to_string())
        }
        Ok(Request::Job(offload::Job::Sleep(ms))) if ms <= 10 => Some("ok".to_owned()),
        Ok(_) => None,
    }
}

/// Lines sent per write: each garbage line is followed by a `ping`.
const BATCH: usize = 100;
/// Connections the garbage is spread over.
const GARBAGE_CONNECTIONS: usize = 4;

/// 10 000 random garbage lines over TCP, each followed by `ping`, all get
/// exactly the reply the protocol specifies (the parser's, or the answer),
/// and each `ping` its `pong`.
#[test]
fn garbage_lines_get_the_specified_replies() {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let seed = Rng::seed();
    let server = Server::start("threads", &["--log-level", "error"]);
    let per_connection = scale.garbage_lines / GARBAGE_CONNECTIONS;
    let started = Instant::now();
    let checked: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..GARBAGE_CONNECTIONS)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(i as u64));
                    let mut conn = server.line_conn();
                    assert_eq!(conn.request("ping"), "pong", "the line dialect first");
                    let mut sent = 0;
                    while sent < per_connection {
                        let mut bytes = Vec::new();
                        let mut owed_replies = Vec::new();
                        while owed_replies.len() < BATCH && sent < per_connection {
                            let line = garbage(&mut rng);
                            let Some(reply) = owed(&line) else { continue };
                            bytes.extend_from_slice(&line);
                            bytes.extend_from_slice(b"\nping\n");
                            owed_replies.push((line, reply));
                            sent += 1;
                        }
                        conn.try_send(&bytes).expect("send a batch");
                        for (line, reply) in &owed_replies {
                            let got = conn
                                .try_read_line()
                                .unwrap_or_else(|e| panic!("{line:?}: no reply ({e})"));
                            assert_eq!(&got, reply, "reply to {:?}", String::from_utf8_lossy(line));
                            assert_eq!(
                                conn.try_read_line().expect("pong"),
                                "pong",
                                "after {line:?}"
                            );
                        }
                    }
                    sent
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("garbage sender"))
            .sum()
    });
    figures(
        "garbage-lines",
        &[
            ("lines", checked.to_string()),
            ("pings", checked.to_string()),
            ("wrong", "0".to_owned()),
            ("took", crate::support::ms(started.elapsed())),
            ("seed", seed.to_string()),
        ],
    );
    assert_eq!(checked, per_connection * GARBAGE_CONNECTIONS);
    assert!(server.pings());
}

/// Closes `stream` with a reset instead of a FIN (`SO_LINGER` 0).
fn reset(stream: std::net::TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket, and a pointer to a live `linger` of the size given.
    let rc = unsafe {
        nix::libc::setsockopt(
            stream.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
    drop(stream);
}

/// Hostile requests: numbers beyond u64, empty lines, NUL bytes, invalid
/// UTF-8, 1 MiB lines in both dialects, `\r` without `\n`, clients that leave
/// mid-request. Each gets its specified reply (or none), and the server
/// answers `ping` after each.
#[test]
fn hostile_requests_leave_the_server_serving() {
    let _serial = one_at_a_time();
    let server = Server::start("threads", &["--read-timeout", "1s", "--log-level", "error"]);
    let mut cases = 0;
    let mut after_each = |what: &str| {
        cases += 1;
        assert!(server.pings(), "no pong after {what}");
    };

    // Lines with a specified `bad-request` (or answer), on one connection.
    let lines: [&[u8]; 19] = [
        b"sumn 18446744073709551616",
        b"prime 99999999999999999999999999999999999999",
        b"sleep 18446744073709551616",
        b"sumn 340282366920938463463374607431768211456",
        b"",
        b"\r",
        b"   ",
        b"\t",
        b"\0",
        b"sumn\0 5",
        b"ping\0",
        b"sumn 5\0",
        b"\xff\xfe",
        b"sumn \xc3\x28",
        b"\xc0\xaf\xed\xa0\x80",
        b"sumn 5\rping",
        b"ping\rsumn 5",
        b"\x1b[31mping",
        b"sumn 25000",
    ];
    let mut conn = server.line_conn();
    assert_eq!(conn.request("ping"), "pong");
    for line in lines {
        conn.try_send(&[line, b"\n"].concat()).unwrap();
        let want = owed(line).expect("cheap");
        assert_eq!(conn.try_read_line().expect("a reply"), want, "{line:?}");
        after_each(&format!("{line:?}"));
    }
    drop(conn);

    // A 1 MiB line: `ERR too-long`, then the connection closes. The client
    // writes from another thread: the server stops reading it.
    for (dialect, fill, want) in [
        ("line", b'x', "ERR too-long "),
        ("seed", b'7', "ERR bad-request number longer than 16 digits"),
    ] {
        let mut conn = server.line_conn();
        let writer = conn.stream().try_clone().unwrap();
        let reply = thread::scope(|scope| {
            scope.spawn(move || {
                let mut writer = writer;
                let _ = writer.write_all(&vec![fill; 1 << 20]);
            });
            conn.read_until_closed()
        });
        assert!(
            reply.starts_with(want),
            "1 MiB {dialect} line: got {reply:?}"
        );
        after_each(&format!("a 1 MiB {dialect} line"));
    }

    // `\r` without `\n`: never a line; too long once it passes the limit.
    let mut conn = server.line_conn();
    conn.try_send(&b"ping\r".repeat(300)).unwrap();
    let reply = conn.read_until_closed();
    assert!(
        reply.starts_with("ERR too-long "),
        "1500 bytes of ping\\r: {reply:?}"
    );
    after_each("ping\\r × 300");
    // And short: the connection waits for the rest, then reaches the read
    // timeout and is closed without a reply.
    let mut conn = server.line_conn();
    conn.try_send(b"ping\r").unwrap();
    let started = Instant::now();
    assert_eq!(conn.read_until_closed(), "", "ping\\r then silence");
    assert!(started.elapsed() < IO_TIMEOUT);
    after_each("ping\\r then silence");

    // Clients that leave mid-request: after part of a line (FIN, half-close
    // or reset), and before the reply to a whole one.
    let mut conn = server.line_conn();
    conn.try_send(b"sumn 12").unwrap();
    drop(conn);
    after_each("a close after part of a line");
    let mut conn = server.line_conn();
    conn.try_send(b"sumn 12").unwrap();
    conn.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read_until_closed(), "", "a half-closed partial line");
    after_each("a half-close after part of a line");
    let mut conn = server.line_conn();
    conn.try_send(b"sumn 1").unwrap();
    reset(conn.stream().try_clone().unwrap());
    drop(conn);
    after_each("a reset after part of a line");
    for close in ["close", "reset"] {
        let mut conn = server.line_conn();
        conn.try_send(b"sumn 3000000\nsumn 3000000\nsumn 3000000\n")
            .unwrap();
        if close == "reset" {
            reset(conn.stream().try_clone().unwrap());
        }
        drop(conn);
        thread::sleep(Duration::from_millis(50));
        after_each(&format!("a {close} before the replies"));
    }
    // The seed dialect, left before its reply.
    let mut stream = server.connect();
    stream.write_all(b"3000000").unwrap();
    drop(stream);
    after_each("a seed request left before its reply");
    let mut stream = server.connect();
    stream.write_all(b"12 \xff\0").unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(
        String::from_utf8_lossy(&reply).starts_with("ERR bad-request "),
        "seed garbage: {reply:?}"
    );
    after_each("seed garbage");

    figures(
        "hostile-requests",
        &[
            ("cases", cases.to_string()),
            ("pings_after", cases.to_string()),
        ],
    );
    let stats = server.stats();
    assert_eq!(stats["connections"]["refused"].as_u64(), Some(0), "{stats}");
}
