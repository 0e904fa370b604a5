//! The harness: a guard around one `sumserver` process ([`Server`]), a
//! line-dialect connection ([`Conn`]), and `/proc` helpers ([`Proc`]) to find
//! the fork server and the workers of the `procs` strategy.
//!
//! Nothing here can hang: sockets have [`IO_TIMEOUT`] on reads and writes,
//! every wait has a deadline, and dropping a [`Server`] SIGKILLs and reaps the
//! server and every descendant it was seen with, even when a test panics.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use crate::process::{bury, states, Proc};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest any single read, write or wait may take before a test fails.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the polling loops look again.
const POLL: Duration = Duration::from_millis(10);

/// The sum 1 + 2 + … + n, as the server must compute it.
pub(crate) fn sum_of(n: u64) -> u128 {
    u128::from(n) * (u128::from(n) + 1) / 2
}

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

/// The server's I/O model, `--io`: every protocol test runs under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// A blocking thread per connection.
    Threads,
    /// One reactor thread for every connection.
    Events,
}

impl Io {
    /// The name after `--io`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Io::Threads => "threads",
            Io::Events => "events",
        }
    }
}

/// Turns each scenario `fn name(io: Io)` into two tests, `name::threads`
/// and `name::events`, one per I/O model.
macro_rules! both_io {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            /// The scenario with a thread per connection.
            #[test]
            fn threads() {
                super::$name($crate::support::Io::Threads);
            }

            /// The scenario with one event loop.
            #[test]
            fn events() {
                super::$name($crate::support::Io::Events);
            }
        }
    )+};
}
pub(crate) use both_io;

/// A running `sumserver`, killed (SIGKILL) and reaped with its descendants
/// when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// The server process itself.
    child: Child,
    /// Where it listens, from its first line on stdout.
    addr: SocketAddr,
    /// Its stderr (the logs), printed when a test fails.
    log: PathBuf,
    /// Descendants seen so far (fork server, workers): dropping the server
    /// kills the ones still alive and reaps the ones re-parented to this
    /// process, so nothing outlives the test.
    seen: Mutex<Vec<Proc>>,
}

impl Server {
    /// Starts `sumserver --addr 127.0.0.1:0 --io <io> --apply <apply>
    /// <extra_args…>` and waits (at most [`IO_TIMEOUT`]) for its
    /// `listening on ADDR` line.
    pub(crate) fn start(io: Io, apply: &str, extra_args: &[&str]) -> Server {
        Server::start_from(env!("CARGO_BIN_EXE_sumserver"), io, apply, extra_args, None)
    }

    /// [`Server::start`] of the test binary `sumserver-faults`, which also
    /// serves the fault-injection job `panic 1`.
    pub(crate) fn start_faulty(io: Io, apply: &str, extra_args: &[&str]) -> Server {
        Server::start_from(
            env!("CARGO_BIN_EXE_sumserver-faults"),
            io,
            apply,
            extra_args,
            None,
        )
    }

    /// [`Server::start`] with the server's stderr set to `stderr` (a broken
    /// pipe, `/dev/full`…) instead of a log file.
    pub(crate) fn start_with_stderr(
        io: Io,
        apply: &str,
        extra_args: &[&str],
        stderr: Stdio,
    ) -> Server {
        Server::start_from(
            env!("CARGO_BIN_EXE_sumserver"),
            io,
            apply,
            extra_args,
            Some(stderr),
        )
    }

    /// Starts `binary`; its stderr goes to a log file unless `stderr` says.
    fn start_from(
        binary: &str,
        io: Io,
        apply: &str,
        extra_args: &[&str],
        stderr: Option<Stdio>,
    ) -> Server {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "sumserver-e2e-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = stderr.unwrap_or_else(|| {
            File::create(&log)
                .expect("create the server's log file")
                .into()
        });
        // `--addr` among the extra arguments replaces the default.
        let addr: &[&str] = if extra_args.contains(&"--addr") {
            &[]
        } else {
            &["--addr", "127.0.0.1:0"]
        };
        let mut child = Command::new(binary)
            .args(addr)
            .args(["--io", io.name(), "--apply", apply])
            .args(extra_args)
            // Without NO_COLOR: logs are plain whenever stderr is not a
            // terminal (the flags test relies on it).
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sumserver");

        // Read the first line on a thread so that the wait is bounded, then
        // keep draining stdout so the server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (first_line, first_line_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = first_line.send(reader.read_line(&mut line).map(|_| line));
            let _ = io::copy(&mut reader, &mut io::sink());
        });

        // From here on the guard owns the child: a panic kills it.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            seen: Mutex::new(Vec::new()),
        };
        let line = match first_line_rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => panic!("reading the server's stdout: {err}"),
            Err(_) => panic!("the server printed no line within {IO_TIMEOUT:?}"),
        };
        server.addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| {
                panic!("first line on stdout is {line:?}, not \"listening on 127.0.0.1:PORT\"")
            });
        assert!(
            server.addr.ip().is_loopback() && server.addr.port() != 0,
            "the server listens on {}",
            server.addr
        );
        server
    }

    /// What the server logged so far (empty when its stderr went
    /// elsewhere than the log file).
    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new TCP connection to the server, with read and write timeouts.
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the server");
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

    /// `stats` on a fresh connection, parsed.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let reply = self.line_conn().request("stats");
        serde_json::from_str(&reply).unwrap_or_else(|err| panic!("stats {reply:?}: {err}"))
    }

    /// Sends `signal` to the server process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the server");
    }

    /// Waits at most `within` for the server to exit, and reaps it.
    ///
    /// # Panics
    ///
    /// If it is still running by then.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut status = None;
        eventually(within, || {
            status = self.child.try_wait().expect("try_wait on the server");
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

    /// Under `procs`: the fork server (the server's only child) and its
    /// `workers` children, once all of them are up (waits at most
    /// [`IO_TIMEOUT`]).
    pub(crate) fn process_tree(&self, workers: usize) -> (Proc, Vec<Proc>) {
        let mut tree = None;
        let complete = eventually(IO_TIMEOUT, || {
            let children = Proc::children_of(self.pid());
            if let [fork_server] = children[..] {
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
        assert!(
            complete,
            "no fork server with {workers} workers: the server's descendants are {:?}",
            self.descendants()
        );
        let (fork_server, live) = tree.expect("found");
        self.remember(&[fork_server]);
        self.remember(&live);
        (fork_server, live)
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
        if let Ok(None) = self.child.try_wait() {
            self.descendants();
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
            let _ = self.child.wait();
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

/// A child process other than the server (e.g. `python3`), SIGKILLed and
/// reaped when dropped.
#[derive(Debug)]
pub(crate) struct Reaped(pub(crate) Child);

impl Reaped {
    /// Waits at most `within` for the process to exit.
    ///
    /// # Panics
    ///
    /// If it is still running by then.
    pub(crate) fn wait(&mut self, within: Duration) -> ExitStatus {
        let mut status = None;
        eventually(within, || {
            status = self.0.try_wait().expect("try_wait");
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("child {} still running after {within:?}", self.0.id()))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A line-dialect connection: requests are lines, replies are lines.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Wraps a connected stream (timeouts already set).
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// Writes `text` as is (add the `\n` yourself).
    pub(crate) fn send(&mut self, text: &str) {
        let mut stream = self.reader.get_ref();
        stream
            .write_all(text.as_bytes())
            .unwrap_or_else(|err| panic!("send {text:?}: {err}"));
    }

    /// Writes `text` one byte at a time, `pause` apart.
    pub(crate) fn send_slowly(&mut self, text: &str, pause: Duration) {
        for byte in text.as_bytes() {
            let mut stream = self.reader.get_ref();
            stream.write_all(&[*byte]).expect("send one byte");
            stream.flush().expect("flush");
            thread::sleep(pause);
        }
    }

    /// Reads one reply line and returns it without its `\n`.
    ///
    /// # Panics
    ///
    /// On a timeout, on EOF, or on a last line without `\n`.
    pub(crate) fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let read = self.reader.read_until(b'\n', &mut line);
        let text = String::from_utf8_lossy(&line).into_owned();
        match read {
            Ok(_) if line.ends_with(b"\n") => {
                line.pop();
                String::from_utf8(line).unwrap_or_else(|_| panic!("reply not UTF-8: {text:?}"))
            }
            Ok(_) => panic!("connection closed; bytes of an unterminated reply: {text:?}"),
            Err(err) => panic!("no reply line within {IO_TIMEOUT:?} ({err}); got {text:?}"),
        }
    }

    /// Sends `line` and `\n`, returns the reply line.
    pub(crate) fn request(&mut self, line: &str) -> String {
        self.send(&format!("{line}\n"));
        self.read_line()
    }

    /// Reads until the server closes the connection (EOF or reset) and
    /// returns the bytes that came first.
    ///
    /// # Panics
    ///
    /// If the connection is still open after [`IO_TIMEOUT`].
    pub(crate) fn read_until_closed(&mut self) -> String {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(err) => panic!(
                "the connection is still open ({err}); got {:?}",
                String::from_utf8_lossy(&rest)
            ),
        }
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Whether the server sends something (or closes) within `within`,
    /// without consuming it.
    pub(crate) fn has_input_within(&mut self, within: Duration) -> bool {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(within)).unwrap();
        let ready = match self.reader.fill_buf() {
            Ok(_) => true,
            Err(err) => !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(IO_TIMEOUT))
            .unwrap();
        ready
    }
}
