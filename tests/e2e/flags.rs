//! Flags and output: host names in `--addr`, bad log filters refused once
//! and clearly, plain logs off a terminal, the `--help` summary,
//! `--workers 0` where there are no workers, and no test-only job in the
//! shipped binary.

use std::process::{Command, Stdio};

use crate::support::{both_io, Io, Server};

both_io!(
    a_host_name_is_resolved,
    exclusive_takes_zero_workers,
    flags_from_the_environment
);

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

/// `YSUM_APPLY=procs` runs procs (a fork server and its workers appear),
/// `YSUM_<FLAG>` sets the other flags too, and the command line wins over
/// the environment.
fn flags_from_the_environment(io: Io) {
    let server = Server::start_with_env(
        io,
        &[
            ("YSUM_APPLY", "procs"),
            ("YSUM_WORKERS", "2"),
            ("YSUM_MAX_LINE", "4"),
        ],
        &["--max-line", "8"],
    );
    let stats = server.stats();
    assert_eq!(stats["strategy"], "procs", "{stats}");
    assert_eq!(stats["workers"]["configured"], 2, "{stats}");
    server.process_tree(2);
    let mut conn = server.line_conn();
    assert_eq!(
        conn.request("sumn 12"),
        "78",
        "--max-line 8, not YSUM_MAX_LINE=4"
    );
    assert!(
        conn.request("sumn 123456789").starts_with("ERR too-long"),
        "--max-line 8 limits a line to 8 bytes"
    );
    let bad = sumserver()
        .env("YSUM_APPLY", "gil")
        .output()
        .expect("run sumserver");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a bad YSUM_APPLY is a usage error"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"gil\""));
}

/// `--apply exclusive --workers 0` starts and serves: exclusive has no
/// workers to count.
fn exclusive_takes_zero_workers(io: Io) {
    let server = Server::start(io, "exclusive", &["--workers", "0"]);
    assert_eq!(server.line_conn().request("sumn 4"), "10");
}

/// `YSUM_ACCEPT_PROXY` takes yes and no as people write them (it used to
/// take only `true` and `false`): a connection without a PROXY header is
/// refused under every yes and served under every no. Any other value is
/// refused at start with exit status 2, naming the variable, not the flag.
#[test]
fn a_boolean_flag_from_the_environment_takes_yes_and_no() {
    for (value, expects_header) in [
        ("on", true),
        ("YES", true),
        ("1", true),
        ("off", false),
        ("No", false),
        ("0", false),
    ] {
        let server = Server::start_with_env(
            Io::Threads,
            &[("YSUM_ACCEPT_PROXY", value)],
            &["--apply", "inline"],
        );
        let mut conn = server.line_conn();
        conn.send("ping\n");
        let reply = conn.read_line();
        if expects_header {
            assert!(reply.starts_with("ERR bad-request "), "{value}: {reply:?}");
        } else {
            assert_eq!(reply, "pong", "YSUM_ACCEPT_PROXY={value}");
        }
    }
    let bad = sumserver()
        .args(["--addr", "127.0.0.1:0"])
        .env("YSUM_ACCEPT_PROXY", "maybe")
        .output()
        .expect("run sumserver");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(bad.stdout.is_empty(), "it never listened");
    assert!(
        stderr.contains(
            "YSUM_ACCEPT_PROXY=\"maybe\" is not a yes or no \
             (write true/false, yes/no, on/off, 1/0)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("--accept-proxy"), "{stderr}");
}

/// A negative duration is refused as one, quoted, with exit status 2 (it
/// was taken for an unknown flag: "unexpected argument '-1'"), from the
/// command line and from the environment alike.
#[test]
fn negative_durations_are_refused_as_such() {
    for (args, env) in [
        (&["--queue-wait", "-1s"][..], None),
        (&["--grace", "-250ms"][..], None),
        (&["--read-timeout=-1s"][..], None),
        (&[][..], Some(("YSUM_JOB_TIMEOUT", "-1s"))),
    ] {
        let mut command = sumserver();
        command.args(["--addr", "127.0.0.1:0"]).args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().expect("run sumserver");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("is not a duration: a duration is never negative"),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
    }
}

/// `--metrics` on a port in use stops the start with one line that names
/// the address and the OS error once (it named the error twice), exit 1.
#[test]
fn a_metrics_port_in_use_is_told_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let output = sumserver()
        .args(["--addr", "127.0.0.1:0", "--metrics", &addr])
        .output()
        .expect("run sumserver");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = format!("sumserver: cannot listen for metrics on {addr}: ");
    assert!(stderr.starts_with(&line), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
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
    for variable in [
        "[env: YSUM_ADDR=]",
        "[env: YSUM_APPLY=]",
        "[env: YSUM_METRICS=]",
    ] {
        assert!(help.contains(variable), "--help names {variable}: {help}");
    }
}

/// Logs written to a file carry no ANSI colour codes, NO_COLOR unset.
#[test]
fn logs_off_a_terminal_are_plain() {
    let server = Server::start(Io::Threads, "threads", &["--workers", "1"]);
    assert_eq!(server.line_conn().request("ping"), "pong");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_exit(std::time::Duration::from_secs(5));
    let log = server.log();
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

/// On a terminal the logs are coloured, unless `NO_COLOR` is set (to
/// anything but the empty string).
#[test]
fn colour_on_a_terminal_unless_no_color() {
    assert!(
        terminal_log(None).contains("\u{1b}["),
        "no colour on a terminal"
    );
    assert!(
        !terminal_log(Some("1")).contains('\u{1b}'),
        "colour despite NO_COLOR"
    );
}

/// Starts the server with its stderr on a pseudo-terminal (and `NO_COLOR`
/// as given), stops it, and returns what it wrote there.
fn terminal_log(no_color: Option<&str>) -> String {
    use std::io::{BufRead, BufReader, ErrorKind, Read};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
        // SAFETY: fcntl on descriptors this function owns. Close-on-exec, so
        // that no other test's child keeps the terminal open; the master
        // non-blocking, so that reading it is bounded below.
        unsafe {
            nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
        }
    }
    // SAFETY: as above, on the master only.
    unsafe {
        let fd = pty.master.as_raw_fd();
        let flags = nix::libc::fcntl(fd, nix::libc::F_GETFL);
        nix::libc::fcntl(fd, nix::libc::F_SETFL, flags | nix::libc::O_NONBLOCK);
    }
    let mut command = sumserver();
    command
        .args(["--addr", "127.0.0.1:0", "--apply", "inline"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(pty.slave));
    match no_color {
        Some(value) => command.env("NO_COLOR", value),
        None => command.env_remove("NO_COLOR"),
    };
    let mut server = crate::support::Reaped(command.spawn().expect("spawn sumserver"));
    // Our copy of the terminal's slave end went into `command`: dropped with
    // it, so that reading the master ends once the server is gone.
    drop(command);
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("read the listening line");
    assert!(first.starts_with("listening on "), "{first:?}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(server.0.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = server.wait(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    // The server is gone: the master yields what it wrote, then EIO (or
    // would block, if some other process still holds the slave end).
    let mut log = Vec::new();
    let mut master = std::fs::File::from(pty.master);
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !String::from_utf8_lossy(&log).contains("sumserver stopped")
    {
        match master.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => log.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => break,
        }
    }
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(log.contains("sumserver started"), "{log:?}");
    log
}

/// `--generate` writes completions for bash (valid to `bash -n`), zsh and
/// fish, and a man page naming every option, from the clap definitions.
#[test]
fn generates_completions_and_a_man_page() {
    let generate = |what: &str| {
        let output = sumserver()
            .args(["--generate", what])
            .output()
            .expect("run sumserver");
        assert!(output.status.success(), "--generate {what}: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let bash = generate("bash");
    assert!(bash.contains("complete -F _sumserver"), "{bash}");
    let checked = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .expect("run bash -n");
    assert!(checked.success(), "bash -n refuses the script");
    assert!(generate("zsh").starts_with("#compdef sumserver"));
    assert!(generate("fish").contains("complete -c sumserver -l apply"));
    let man = generate("man");
    assert!(man.contains(".TH sumserver 1"), "{man}");
    for option in ["apply", "metrics", "log\\-format", "YSUM_APPLY"] {
        assert!(man.contains(option), "the man page names {option}");
    }
    let refused = sumserver()
        .args(["--generate", "man", "--apply", "procs"])
        .output()
        .expect("run sumserver");
    assert_eq!(refused.status.code(), Some(2), "--generate stands alone");
}
