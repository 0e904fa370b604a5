//! The harness: a guard around a real `sumserver` process ([`Server`]), a
//! bounded run of `sumclient` ([`run_client`]), and small in-test servers on
//! 127.0.0.1 ([`FakeServer`]).
//!
//! Nothing here can hang: every wait has a deadline, and dropping a guard
//! kills and reaps its process (or stops its thread), even when a test
//! panics.

#![allow(dead_code)] // Each test file uses part of the harness.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest a server may take to start, or a client run to finish.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Kills (SIGKILL) and reaps a child process when dropped.
#[derive(Debug)]
pub(crate) struct Reaped(pub(crate) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `sumserver` binary, beside this test's own: `target/debug/deps/<test>`
/// → `target/debug/sumserver`.
///
/// Cargo builds another package's binary only when asked: `cargo test
/// --workspace` does (the server's own end-to-end tests need it), and so
/// does `cargo build -p ysum-server`. A test cannot build it, so when it is
/// missing the test fails saying so, rather than skipping silently.
pub(crate) fn sumserver_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join("sumserver");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p ysum-server`, \
         or run `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A running `sumserver` on 127.0.0.1, killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// The process.
    child: Reaped,
    /// Where it listens, from its first line on stdout.
    addr: SocketAddr,
    /// Where it serves `/metrics`, from its second line, when started with
    /// `--metrics`.
    metrics: Option<SocketAddr>,
}

impl Server {
    /// Starts `sumserver --addr 127.0.0.1:0 --apply <apply>` and waits for
    /// its `listening on ADDR` line.
    pub(crate) fn start(apply: &str) -> Server {
        Server::start_with(&["--apply", apply])
    }

    /// Starts `sumserver --addr 127.0.0.1:0 --log-level warn <args>` (no
    /// `--addr` of its own when `args` has one) and waits for its `listening
    /// on ADDR` line.
    pub(crate) fn start_with(args: &[&str]) -> Server {
        let own_addr: &[&str] = if args.contains(&"--addr") {
            &[]
        } else {
            &["--addr", "127.0.0.1:0"]
        };
        let mut child = Command::new(sumserver_path())
            .args(own_addr)
            .args(["--log-level", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sumserver");
        let stdout = child.stdout.take().expect("stdout is piped");
        let child = Reaped(child);
        // Read the first lines on a thread so that the wait is bounded, then
        // keep draining stdout so the server never blocks on a full pipe.
        let wanted = if args.contains(&"--metrics") { 2 } else { 1 };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            for _ in 0..wanted {
                let mut line = String::new();
                let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            }
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let next_address = |prefix: &str| -> SocketAddr {
            let line = match rx.recv_timeout(DEADLINE) {
                Ok(Ok(line)) => line,
                Ok(Err(err)) => panic!("reading sumserver's stdout: {err}"),
                Err(_) => panic!("sumserver printed no {prefix:?} line within {DEADLINE:?}"),
            };
            line.trim_end()
                .strip_prefix(prefix)
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("sumserver printed {line:?}, not {prefix:?} ADDR"))
        };
        let addr = next_address("listening on ");
        let metrics = (wanted == 2).then(|| next_address("metrics on "));
        Server {
            child,
            addr,
            metrics,
        }
    }

    /// Where it serves `/metrics`.
    ///
    /// # Panics
    ///
    /// If it was started without `--metrics`.
    pub(crate) fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("the server was started with --metrics")
    }

    /// The address it listens on, as `127.0.0.1:PORT`.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Sends SIGTERM (a graceful shutdown) and waits for the exit, at most
    /// [`DEADLINE`].
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.0.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for sumserver") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sumserver still running after SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a `sumclient` run printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Everything on stdout.
    pub(crate) stdout: String,
    /// Everything on stderr.
    pub(crate) stderr: String,
}

impl Run {
    /// The exit code (a signal is a failure of the test).
    pub(crate) fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("sumclient died by a signal: {self:?}"))
    }

    /// stdout parsed as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", self.stdout))
    }
}

/// Runs `sumclient <args>` to its end, killing it after [`DEADLINE`].
pub(crate) fn run_client(args: &[&str]) -> Run {
    Client::start(args).finish()
}

/// [`run_client`] with `env` added to sumclient's environment.
pub(crate) fn run_client_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    Client::start_with_env(args, env).finish()
}

/// A `sumclient` process still running, its output read on threads; killed
/// and reaped if dropped before [`Client::finish`].
#[derive(Debug)]
pub(crate) struct Client {
    /// The process.
    child: Reaped,
    /// Its arguments, for messages.
    args: Vec<String>,
    /// Reading its stdout to the end.
    stdout: JoinHandle<String>,
    /// Reading its stderr to the end.
    stderr: JoinHandle<String>,
}

impl Client {
    /// Starts `sumclient <args>`, stdin closed, stdout and stderr piped
    /// (so stderr is not a terminal).
    pub(crate) fn start(args: &[&str]) -> Client {
        Client::start_with_env(args, &[])
    }

    /// [`Client::start`] with `env` added to its environment.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sumclient"))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sumclient");
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        Client {
            child: Reaped(child),
            args: args.iter().map(ToString::to_string).collect(),
            stdout,
            stderr,
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Waits for its end, at most [`DEADLINE`].
    pub(crate) fn finish(mut self) -> Run {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for sumclient") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "sumclient {:?} still running after {DEADLINE:?}",
                self.args
            );
            thread::sleep(Duration::from_millis(10));
        };
        Run {
            status,
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr.join().expect("stderr reader"),
        }
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// An in-test server on 127.0.0.1: each connection is handed to `serve` on
/// its own thread. Dropping it stops accepting and waits for the accept
/// thread.
#[derive(Debug)]
pub(crate) struct FakeServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Raised to stop the accept loop.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts accepting; `serve` gets each connection, with read and write
    /// timeouts already set so that no handler can hang.
    pub(crate) fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let thread = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                    let serve = Arc::clone(&serve);
                    thread::spawn(move || serve(stream));
                }
            }
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on, as `127.0.0.1:PORT`.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads `(OK ok, WRONG wrong, ERRORS errors)` and the first line's total
/// from a text report, and checks they add up.
pub(crate) fn counts_add_up(stdout: &str) -> (u64, u64, u64) {
    let total: u64 = stdout
        .lines()
        .next()
        .and_then(|line| line.strip_suffix(" total requests"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total on the first line: {stdout}"));
    let inside = stdout
        .split_once("requests/s (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .unwrap_or_else(|| panic!("no counts: {stdout}"));
    let numbers: Vec<u64> = inside
        .split(", ")
        .map(|part| {
            part.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad count {part:?}: {stdout}"))
        })
        .collect();
    let [ok, wrong, errors] = numbers[..] else {
        panic!("not three counts: {stdout}")
    };
    assert_eq!(ok + wrong + errors, total, "counts do not add up: {stdout}");
    (ok, wrong, errors)
}

/// The sum 1 + … + n, as a server must answer it.
pub(crate) fn sum_of(n: u64) -> u128 {
    u128::from(n) * (u128::from(n) + 1) / 2
}
