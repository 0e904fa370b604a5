//! Signals and start-up: `listening on` only once the server can be
//! stopped; SIGHUP is a graceful shutdown; a second SIGINT/SIGTERM during
//! the grace period stops at once; requests the grace period cuts short are
//! told `ERR shutting-down`, and the exit status says so.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{both_io, Io, Reaped, Server};

both_io!(
    no_listening_line_without_threads,
    sighup_is_a_graceful_shutdown,
    a_second_signal_stops_at_once,
    requests_cut_short_are_told
);

/// With no thread to be had (`RLIMIT_NPROC` 1, as user `nobody` when run
/// as root, whose limit the kernel does not enforce), the server cannot
/// start its signal thread: it must say so and exit 1 without ever printing
/// `listening on` (it used to print it, then exit).
fn no_listening_line_without_threads(io: Io) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sumserver"));
    command
        .args([
            "--addr",
            "127.0.0.1:0",
            "--io",
            io.name(),
            "--apply",
            "inline",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the child between fork and exec and calls only
    // getuid, setgid, setuid and setrlimit, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            use nix::libc;
            if libc::getuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(io::Error::last_os_error());
            }
            let one = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &one) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = Reaped(command.spawn().expect("spawn sumserver"));
    let status = server.wait(Duration::from_secs(10));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = server
        .0
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let _ = server
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert_eq!(stdout, "", "printed before it could be stopped");
    assert!(stderr.starts_with("sumserver: "), "{stderr:?}");
}

/// SIGHUP (a closed terminal) lets the request in flight finish, is logged,
/// and the server exits 0.
fn sighup_is_a_graceful_shutdown(io: Io) {
    let server = Server::start(io, "threads", &["--grace", "5s", "--workers", "2"]);
    let mut conn = server.line_conn();
    conn.send("sleep 400\n");
    thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGHUP);
    assert_eq!(conn.read_line(), "ok", "the request in flight finishes");
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(server.log().contains("SIGHUP"), "the signal is logged");
}

/// A second SIGTERM during a long grace period ends the server at once,
/// with status 128 + 15.
fn a_second_signal_stops_at_once(io: Io) {
    let server = Server::start(io, "threads", &["--grace", "30s", "--workers", "2"]);
    let mut conn = server.line_conn();
    conn.send("sleep 20000\n");
    thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    println!(
        "figures: {io:?}: exited {:?} after the second SIGTERM, {status}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(143), "exit status {status}");
}

/// Jobs still running when `--grace` runs out get `ERR shutting-down`
/// under inline and threads, and the server exits 3.
fn requests_cut_short_are_told(io: Io) {
    for apply in ["inline", "threads"] {
        let server = Server::start(io, apply, &["--grace", "300ms", "--workers", "2"]);
        let mut conn = server.line_conn();
        conn.send("sleep 5000\n");
        thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        let reply = conn.read_line();
        let told = signalled.elapsed();
        assert!(
            reply.starts_with("ERR shutting-down "),
            "{apply}: got {reply:?}"
        );
        let status = server.wait_exit(Duration::from_secs(5));
        println!("figures: {io:?} × {apply}: `{reply}` {told:?} after SIGTERM with --grace 300ms; {status}");
        assert_eq!(status.code(), Some(3), "{apply}: exit status {status}");
    }
}
