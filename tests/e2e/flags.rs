//! Flags and output: host names in `--addr`, bad log filters refused once
//! and clearly, plain logs off a terminal, the `--help` summary,
//! `--workers 0` where there are no workers, and no test-only job in the
//! shipped binary.

use std::process::{Command, Stdio};

use crate::support::{both_io, Io, Server};

both_io!(a_host_name_is_resolved, exclusive_takes_zero_workers);

/// The shipped binary, as `cargo test --workspace` left it in `target/`.
fn sumserver() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sumserver"));
    command.stdin(Stdio::null());
    command
}

/// `--addr localhost:0` listens on the loopback address it resolves to.
fn a_host_name_is_resolved(io: Io) {
    let server = Server::start(io, "threads", &["--addr", "localhost:0", "--workers", "1"]);
    assert!(server.addr().ip().is_loopback(), "{}", server.addr());
    assert_eq!(server.line_conn().request("sumn 4"), "10");
}

/// `--apply exclusive --workers 0` starts and serves: exclusive has no
/// workers to count.
fn exclusive_takes_zero_workers(io: Io) {
    let server = Server::start(io, "exclusive", &["--workers", "0"]);
    assert_eq!(server.line_conn().request("sumn 4"), "10");
}

/// A bad `--log-level` is refused with exit status 2 and one message that
/// quotes it (`garbage` used to turn every log line off silently; `warn=x`
/// printed its error twice).
#[test]
fn bad_log_filters_are_refused() {
    for filter in ["garbage", "warn=x"] {
        let output = sumserver()
            .args(["--addr", "127.0.0.1:0", "--log-level", filter])
            .output()
            .expect("run sumserver");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{filter}: {stderr}");
        assert!(output.stdout.is_empty(), "{filter}: it never listened");
        let quoted = format!("{filter:?}");
        assert_eq!(stderr.matches(&quoted).count(), 1, "{filter}: {stderr}");
        assert_eq!(stderr.matches("error:").count(), 1, "{filter}: {stderr}");
    }
}

/// The first line of `--help` names both I/O models.
#[test]
fn help_names_both_io_models() {
    let output = sumserver().arg("--help").output().expect("run sumserver");
    let help = String::from_utf8_lossy(&output.stdout);
    let first = help.lines().next().unwrap_or_default();
    assert!(
        first.contains("--io threads") && first.contains("--io events"),
        "{first:?}"
    );
    assert!(help.contains("Exit status"), "{help}");
}

/// Logs written to a file carry no ANSI colour codes, NO_COLOR unset.
#[test]
fn logs_off_a_terminal_are_plain() {
    let mut server = Server::start(Io::Threads, "threads", &["--workers", "1"]);
    assert_eq!(server.line_conn().request("ping"), "pong");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_exit(std::time::Duration::from_secs(5));
    let log = server.log_text();
    assert!(log.contains("sumserver started"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a file: {log:?}");
}

/// The shipped `sumserver`, built by the same `cargo test` that compiled
/// offload's fault-injection job in for the tests, refuses `panic 1` as an
/// unknown command; only the test binary `sumserver-faults` serves it.
#[test]
fn the_shipped_binary_has_no_test_only_job() {
    let server = Server::start(Io::Threads, "threads", &["--workers", "1"]);
    let reply = server.line_conn().request("panic 1");
    assert!(
        reply.starts_with("ERR bad-request unknown command \"panic\""),
        "got {reply:?}"
    );
    let faulty = Server::start_faulty(Io::Threads, "threads", &["--workers", "1"]);
    let reply = faulty.line_conn().request("panic 1");
    assert!(
        reply.starts_with("ERR internal "),
        "sumserver-faults: {reply:?}"
    );
}
