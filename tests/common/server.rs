//! The harness both suites share (each includes this file as its `server`
//! module, next to `conn` and `process`): a guard around one `sumserver`
//! process ([`Server`], started from a [`Launch`]), and bounded polling
//! ([`eventually`]).
//!
//! Nothing here can hang: sockets have [`IO_TIMEOUT`] on reads and writes,
//! every wait has a deadline, and dropping a [`Server`] SIGKILLs and reaps
//! the server and every descendant it was seen with, even when a test
//! panics.

#![allow(dead_code)] // Each suite uses part of the harness.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::conn::Conn;

#[path = "http.rs"]
mod http;
// Not every suite asks for every one.
use crate::process::{bury, Proc};
#[allow(unused_imports)]
pub(crate) use http::{exchange, http_get, scrape};

/// The longest any single read, write or wait may take before a test fails.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the polling loops look again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `done` every few milliseconds until it holds or `within` passes;
/// returns whether it held.
pub(crate) fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// The sum 1 + 2 + … + n, as the server must compute it.
pub(crate) fn sum_of(n: u64) -> u128 {
    u128::from(n) * (u128::from(n) + 1) / 2
}

/// How to start a server: `binary --addr 127.0.0.1:0 <args…>` (no `--addr`
/// of its own when `args` has one).
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    /// The executable (`CARGO_BIN_EXE_sumserver` or `…-faults`).
    pub(crate) binary: &'a str,
    /// Its arguments.
    pub(crate) args: Vec<&'a str>,
    /// Added to its environment (`RUST_LOG` is always removed).
    pub(crate) env: &'a [(&'a str, &'a str)],
    /// Where its stderr goes; `None`: a log file that [`Server::log`] reads.
    pub(crate) stderr: Option<Stdio>,
    /// `RLIMIT_NOFILE` in the server, as `ulimit -n` would set it.
    pub(crate) fd_limit: Option<u64>,
    /// Whether `NO_COLOR=1` is set; otherwise it is removed (logs are plain
    /// anyway whenever stderr is not a terminal).
    pub(crate) no_color: bool,
}

impl<'a> Launch<'a> {
    /// `binary` with `args`, its stderr to a log file.
    pub(crate) fn new(binary: &'a str, args: Vec<&'a str>) -> Self {
        Launch {
            binary,
            args,
            env: &[],
            stderr: None,
            fd_limit: None,
            no_color: false,
        }
    }
}

/// A running `sumserver`, killed (SIGKILL) and reaped with its descendants
/// when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// The server process itself (behind a lock, so that clients may hold
    /// `&Server` while the test waits for it to exit).
    child: Mutex<Child>,
    /// Its pid.
    pid: i32,
    /// Where it listens, from its first line on stdout.
    addr: SocketAddr,
    /// Where it serves `/metrics`, from its second line, when started with
    /// `--metrics`.
    metrics: Option<SocketAddr>,
    /// Its stderr (the logs), printed when a test fails.
    log: PathBuf,
    /// Descendants seen so far (fork server, workers): dropping the server
    /// kills the ones still alive and reaps the ones re-parented to this
    /// process, so nothing outlives the test.
    seen: Mutex<Vec<Proc>>,
}

impl Server {
    /// Starts the server `launch` describes and waits (at most
    /// [`IO_TIMEOUT`]) for its `listening on ADDR` line.
    pub(crate) fn launch(launch: Launch<'_>) -> Server {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "sumserver-test-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = launch.stderr.unwrap_or_else(|| {
            File::create(&log)
                .expect("create the server's log file")
                .into()
        });
        let addr: &[&str] = if launch.args.contains(&"--addr") {
            &[]
        } else {
            &["--addr", "127.0.0.1:0"]
        };
        let mut command = Command::new(launch.binary);
        command
            .args(addr)
            .args(&launch.args)
            .env_remove("RUST_LOG")
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if launch.no_color {
            command.env("NO_COLOR", "1");
        } else {
            command.env_remove("NO_COLOR");
        }
        if let Some(limit) = launch.fd_limit {
            let rlimit = nix::libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: runs in the child between fork and exec, and calls only
            // setrlimit, which is async-signal-safe; `rlimit` is a copy.
            unsafe {
                command.pre_exec(move || {
                    if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("spawn sumserver");

        // Read the first lines on a thread so that the wait is bounded, then
        // keep draining stdout so the server never blocks on a full pipe.
        let wanted = if launch.args.contains(&"--metrics") {
            2
        } else {
            1
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines, lines_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            for _ in 0..wanted {
                let mut line = String::new();
                let _ = lines.send(reader.read_line(&mut line).map(|_| line));
            }
            let _ = io::copy(&mut reader, &mut io::sink());
        });

        // From here on the guard owns the child: a panic kills it.
        let mut server = Server {
            pid: i32::try_from(child.id()).expect("pids fit in i32"),
            child: Mutex::new(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: None,
            log,
            seen: Mutex::new(Vec::new()),
        };
        let next_address = |prefix: &str| -> SocketAddr {
            let line = match lines_rx.recv_timeout(IO_TIMEOUT) {
                Ok(Ok(line)) => line,
                Ok(Err(err)) => panic!("reading the server's stdout: {err}"),
                Err(_) => panic!("the server printed no {prefix:?} line within {IO_TIMEOUT:?}"),
            };
            line.trim_end()
                .strip_prefix(prefix)
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("the server printed {line:?}, not \"{prefix}ADDR\""))
        };
        server.addr = next_address("listening on ");
        server.metrics = (wanted == 2).then(|| next_address("metrics on "));
        assert!(
            server.addr.ip().is_loopback() && server.addr.port() != 0,
            "the server listens on {}",
            server.addr
        );
        server
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it serves `/metrics`.
    ///
    /// # Panics
    ///
    /// If it was started without `--metrics`.
    pub(crate) fn metrics_addr(&self) -> SocketAddr {
        self.metrics.expect("the server was started with --metrics")
    }

    /// `GET /metrics`: the body of a 200 reply.
    ///
    /// # Panics
    ///
    /// On another status, or when the endpoint does not answer in time.
    pub(crate) fn scrape(&self) -> String {
        scrape(self.metrics_addr())
    }

    /// A new TCP connection to the server, with read and write timeouts.
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.addr));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// A new line-dialect connection (nothing is sent yet).
    pub(crate) fn line_conn(&self) -> Conn {
        Conn::new(self.connect())
    }

    /// One seed-dialect exchange: sends `request` as is, returns every byte
    /// received until the server closes the connection.
    pub(crate) fn seed(&self, request: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(request).expect("send a seed request");
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .unwrap_or_else(|err| panic!("seed request {request:?}: no EOF: {err}"));
        reply
    }

    /// Whether a fresh connection gets `pong` for `ping`.
    pub(crate) fn pings(&self) -> bool {
        let Ok(stream) = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT) else {
            return false;
        };
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Conn::new(stream)
            .try_request("ping")
            .is_ok_and(|r| r == "pong")
    }

    /// `stats` on a fresh connection, parsed.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let reply = self.line_conn().request("stats");
        serde_json::from_str(&reply).unwrap_or_else(|err| panic!("stats {reply:?}: {err}"))
    }

    /// What the server logged so far (empty when its stderr went elsewhere
    /// than the log file).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the server process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the server");
    }

    /// Whether the server process is still running.
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// Waits at most `within` for the server to exit, and reaps it.
    ///
    /// # Panics
    ///
    /// If it is still running by then.
    pub(crate) fn wait_exit(&self, within: Duration) -> ExitStatus {
        let mut status = None;
        eventually(within, || {
            status = self.child().try_wait().expect("try_wait on the server");
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("the server is still running after {within:?}"))
    }

    /// The server's descendants now, remembered for the cleanup on drop.
    pub(crate) fn descendants(&self) -> Vec<Proc> {
        let mut found = Vec::new();
        let mut parents = vec![self.pid()];
        while let Some(parent) = parents.pop() {
            for child in Proc::children_of(parent) {
                parents.push(child.pid);
                found.push(child);
            }
        }
        self.remember(&found);
        found
    }

    /// Under `procs`: the fork server (the server's only child) and its live
    /// workers, once there are `workers` of them (waits at most `within`).
    pub(crate) fn process_tree_within(
        &self,
        workers: usize,
        within: Duration,
    ) -> Option<(Proc, Vec<Proc>)> {
        let mut tree = None;
        eventually(within, || {
            if let [fork_server] = Proc::children_of(self.pid())[..] {
                let live: Vec<Proc> = Proc::children_of(fork_server.pid)
                    .into_iter()
                    .filter(|p| !p.is_zombie())
                    .collect();
                if live.len() == workers {
                    tree = Some((fork_server, live));
                    return true;
                }
            }
            false
        });
        if let Some((fork_server, live)) = &tree {
            self.remember(&[*fork_server]);
            self.remember(live);
        }
        tree
    }

    /// [`Server::process_tree_within`] [`IO_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If the tree is not complete by then.
    pub(crate) fn process_tree(&self, workers: usize) -> (Proc, Vec<Proc>) {
        self.process_tree_within(workers, IO_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no fork server with {workers} workers: the server's descendants are {:?}",
                    self.descendants()
                )
            })
    }

    fn remember(&self, procs: &[Proc]) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for p in procs {
            if !seen.contains(p) {
                seen.push(*p);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            self.descendants();
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.child().wait();
        }
        let seen = std::mem::take(self.seen.get_mut().unwrap_or_else(|e| e.into_inner()));
        bury(&seen);
        if thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of the server's stderr ({}) ---",
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = fs::remove_file(&self.log);
        }
    }
}
