//! The harness of the adversarial suite: the one place that reads
//! `YSUM_SOAK` ([`Scale`]), a guard around one `sumserver` process
//! ([`Server`]), load clients that count every outcome ([`Tally`]), answers
//! checked exactly ([`expected`]), and `/proc` readings ([`Proc`],
//! [`Memory`]).
//!
//! Nothing here can hang: every socket has a read and a write timeout, every
//! wait has a deadline, and dropping a [`Server`] SIGKILLs and reaps the
//! server and every descendant it was seen with, even when a test panics.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use crate::process::{bury, states, Proc};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest a plain read, write or wait of the harness may take.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the polling loops look again.
const POLL: Duration = Duration::from_millis(10);

/// Durations and counts of every case: short for `cargo test`, long when
/// `YSUM_SOAK=1` (what `scripts/soak` sets). This is the only place that
/// reads the variable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    /// Whether these are the long settings.
    pub(crate) soak: bool,
    /// Worker chaos: how long the four clients run while workers are killed.
    pub(crate) chaos_run: Duration,
    /// Runaway jobs: runaway requests per strategy.
    pub(crate) runaways: usize,
    /// Overload: rounds of 2000 connections.
    pub(crate) overload_rounds: usize,
    /// Overload with a full queue: how long the clients press.
    pub(crate) queue_run: Duration,
    /// Slow clients: how many send one byte a second.
    pub(crate) slow_clients: usize,
    /// Slow clients: the server's `--read-timeout`.
    pub(crate) slow_read_timeout: Duration,
    /// Bad input: random garbage lines over TCP.
    pub(crate) garbage_lines: usize,
    /// Panics: how long the clients run with panicking jobs among theirs.
    pub(crate) panic_run: Duration,
    /// Shutdown under load: rounds of SIGTERM per strategy (and twice as
    /// many of SIGKILL).
    pub(crate) shutdown_rounds: usize,
    /// Shutdown under load: how long the clients run before the signal.
    pub(crate) shutdown_after: Duration,
    /// Descriptor exhaustion: bursts of 200 clients.
    pub(crate) fd_bursts: usize,
}

impl Scale {
    /// The settings for this run.
    pub(crate) fn get() -> Scale {
        static SCALE: OnceLock<Scale> = OnceLock::new();
        *SCALE.get_or_init(|| {
            let soak = std::env::var("YSUM_SOAK").is_ok_and(|v| !v.is_empty() && v != "0");
            if soak {
                Scale {
                    soak,
                    chaos_run: Duration::from_secs(60),
                    runaways: 20,
                    overload_rounds: 5,
                    queue_run: Duration::from_secs(10),
                    slow_clients: 500,
                    slow_read_timeout: Duration::from_secs(5),
                    garbage_lines: 10_000,
                    panic_run: Duration::from_secs(10),
                    shutdown_rounds: 5,
                    shutdown_after: Duration::from_secs(2),
                    fd_bursts: 5,
                }
            } else {
                Scale {
                    soak,
                    chaos_run: Duration::from_secs(8),
                    runaways: 3,
                    overload_rounds: 1,
                    queue_run: Duration::from_secs(3),
                    slow_clients: 500,
                    slow_read_timeout: Duration::from_secs(2),
                    garbage_lines: 10_000,
                    panic_run: Duration::from_secs(1),
                    shutdown_rounds: 1,
                    shutdown_after: Duration::from_millis(700),
                    fd_bursts: 2,
                }
            }
        })
    }
}

/// Runs the cases one at a time: each one loads the machine and measures
/// latencies, which a neighbour's load would distort.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints one case's figures on one line, `figures: CASE key=value …`;
/// `scripts/soak` collects these lines into its summary.
pub(crate) fn figures(case: &str, pairs: &[(&str, String)]) {
    let mut line = format!("figures: {case}");
    for (key, value) in pairs {
        line.push_str(&format!(" {key}={value}"));
    }
    println!("{line}");
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

/// A small deterministic generator (xorshift64*), so that a failing run can
/// be repeated: the seed is printed with each case's figures.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is moved off).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The seed of a case: `YSUM_SEED` if set, else the clock.
    pub(crate) fn seed() -> u64 {
        std::env::var("YSUM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The sum 1 + 2 + … + n, exactly.
pub(crate) fn sum_of(n: u64) -> u128 {
    u128::from(n) * (u128::from(n) + 1) / 2
}

/// Whether `n` is prime: Miller–Rabin with the first twelve primes as
/// bases, which is exact for every 64-bit number.
pub(crate) fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mul = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
    let pow = |mut base: u64, mut exp: u64| {
        let mut acc = 1;
        while exp > 0 {
            if exp & 1 == 1 {
                acc = mul(acc, base);
            }
            base = mul(base, base);
            exp >>= 1;
        }
        acc
    };
    let (mut d, mut r) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        r += 1;
    }
    'bases: for a in BASES {
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..r {
            x = mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// The right reply to a `sumn N`, `prime N` or `sleep MS` request line.
pub(crate) fn expected(request: &str) -> String {
    let (name, n) = request.split_once(' ').expect("a job request");
    let n: u64 = n.parse().expect("a number");
    match name {
        "sumn" => sum_of(n).to_string(),
        "prime" => is_prime(n).to_string(),
        "sleep" => "ok".to_owned(),
        _ => panic!("no expected answer for {request:?}"),
    }
}

/// Requests of the usual mix: sums of every size up to 10⁶, primality of
/// numbers up to 10¹⁰ (about 10⁵ divisions at most) and of a few known
/// primes.
pub(crate) fn mixed_request(rng: &mut Rng) -> String {
    const KNOWN_PRIMES: [u64; 5] = [1_000_003, 999_999_937, 4_294_967_291, 9_999_999_967, 2];
    match rng.below(10) {
        0..=4 => format!("sumn {}", rng.below(1_000_001)),
        5..=7 => format!("prime {}", rng.below(10_000_000_001)),
        _ => format!("prime {}", KNOWN_PRIMES[rng.below(5) as usize]),
    }
}

/// Latencies, for percentiles.
#[derive(Debug, Default, Clone)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    /// Adds one.
    pub(crate) fn push(&mut self, took: Duration) {
        self.0.push(took);
    }

    /// Adds all of `other`'s.
    pub(crate) fn merge(&mut self, other: &Latencies) {
        self.0.extend_from_slice(&other.0);
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0..=1), zero when empty.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// The 99th percentile.
    pub(crate) fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The longest.
    pub(crate) fn max(&self) -> Duration {
        self.quantile(1.0)
    }
}

/// `d` in milliseconds with one decimal, for figures.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

/// What a load client saw: every request ends in exactly one of right,
/// wrong, an `ERR` reply (by code) or lost (no reply line at all).
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    /// Requests sent.
    pub(crate) requests: u64,
    /// Replies that were the right answer.
    pub(crate) right: u64,
    /// Replies that were neither the answer nor `ERR …`, with their request.
    pub(crate) wrong: Vec<(String, String)>,
    /// `panic 1` requests answered `ERR internal …`, as they must be.
    pub(crate) panics: u64,
    /// `ERR <code> …` replies by code (but a panic's `ERR internal`).
    pub(crate) errors: BTreeMap<String, u64>,
    /// Requests that got no reply line (timeout, EOF, reset), with why.
    pub(crate) lost: Vec<(String, String)>,
    /// Round-trip time of every request that got a reply.
    pub(crate) latencies: Latencies,
}

impl Tally {
    /// Records the outcome of `request`, which took `took`.
    pub(crate) fn record(&mut self, request: &str, reply: io::Result<String>, took: Duration) {
        self.requests += 1;
        match reply {
            Ok(reply) => {
                self.latencies.push(took);
                if request.starts_with("panic") {
                    if reply.starts_with("ERR internal ") {
                        self.panics += 1;
                        self.right += 1;
                    } else {
                        self.wrong.push((request.to_owned(), reply));
                    }
                } else if let Some(rest) = reply.strip_prefix("ERR ") {
                    let code = rest.split(' ').next().unwrap_or("").to_owned();
                    *self.errors.entry(code).or_default() += 1;
                } else if reply == expected(request) {
                    self.right += 1;
                } else {
                    self.wrong.push((request.to_owned(), reply));
                }
            }
            Err(err) => self.lost.push((request.to_owned(), err.to_string())),
        }
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.right += other.right;
        self.panics += other.panics;
        self.wrong.extend(other.wrong.iter().cloned());
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.lost.extend(other.lost.iter().cloned());
        self.latencies.merge(&other.latencies);
    }

    /// `ERR` replies with this code.
    pub(crate) fn errors_of(&self, code: &str) -> u64 {
        self.errors.get(code).copied().unwrap_or(0)
    }

    /// `ERR` replies with any code but these.
    pub(crate) fn errors_other_than(&self, codes: &[&str]) -> BTreeMap<String, u64> {
        self.errors
            .iter()
            .filter(|(code, _)| !codes.contains(&code.as_str()))
            .map(|(code, n)| (code.clone(), *n))
            .collect()
    }
}

/// Starts `clients` threads that each open a keep-alive connection and send
/// `next_request()`s one at a time until `until`, reading each reply within
/// `reply_within`; returns their merged tally. A lost connection is
/// reconnected.
pub(crate) fn keep_alive_clients(
    server: &Server,
    clients: usize,
    until: Instant,
    reply_within: Duration,
    seed: u64,
    next_request: fn(&mut Rng) -> String,
) -> Tally {
    patient_clients(
        server,
        clients,
        until,
        reply_within,
        seed,
        next_request,
        Duration::ZERO,
    )
}

/// [`keep_alive_clients`] that pause `backoff` after an `ERR` reply, as a
/// polite client does before it tries again.
pub(crate) fn patient_clients(
    server: &Server,
    clients: usize,
    until: Instant,
    reply_within: Duration,
    seed: u64,
    next_request: fn(&mut Rng) -> String,
    backoff: Duration,
) -> Tally {
    let tallies: Vec<Tally> = thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                scope.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(i as u64 * 0x9e37_79b9));
                    let mut tally = Tally::default();
                    let mut conn = server.line_conn();
                    conn.set_read_timeout(reply_within);
                    while Instant::now() < until {
                        let request = next_request(&mut rng);
                        let started = Instant::now();
                        let reply = conn.try_request(&request);
                        let lost = reply.is_err();
                        let refused = reply.as_ref().is_ok_and(|r| r.starts_with("ERR "));
                        tally.record(&request, reply, started.elapsed());
                        if refused {
                            thread::sleep(backoff);
                        }
                        if lost {
                            conn = server.line_conn();
                            conn.set_read_timeout(reply_within);
                        }
                    }
                    tally
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut total = Tally::default();
    for tally in &tallies {
        total.merge(tally);
    }
    total
}

/// Memory of one process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    /// Resident set size now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// Peak resident set size (`VmHWM`).
    pub(crate) peak_kib: u64,
}

impl Memory {
    /// Reads the memory of `pid`.
    ///
    /// # Panics
    ///
    /// If the process is gone.
    pub(crate) fn of(pid: i32) -> Memory {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|err| panic!("/proc/{pid}/status: {err}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

/// `kib` in MiB with one decimal, for figures.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1}MiB", kib as f64 / 1024.0)
}

/// How many descriptors `pid` has open.
pub(crate) fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
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
    /// Its stderr (the logs).
    log: PathBuf,
    /// Descendants seen so far (fork server, workers), buried on drop.
    seen: Mutex<Vec<Proc>>,
}

impl Server {
    /// Starts `sumserver --addr 127.0.0.1:0 --apply <apply> <args…>` and
    /// waits (at most [`IO_TIMEOUT`]) for its `listening on ADDR` line.
    pub(crate) fn start(apply: &str, args: &[&str]) -> Server {
        Server::start_with_fd_limit(apply, args, None)
    }

    /// [`Server::start`] of the test binary `sumserver-faults`, which also
    /// serves the fault-injection job `panic 1`.
    pub(crate) fn start_faulty(apply: &str, args: &[&str]) -> Server {
        Server::start_binary(env!("CARGO_BIN_EXE_sumserver-faults"), apply, args, None)
    }

    /// [`Server::start`] with `RLIMIT_NOFILE` lowered to `fd_limit` in the
    /// server (as `ulimit -n` would).
    pub(crate) fn start_with_fd_limit(apply: &str, args: &[&str], fd_limit: Option<u64>) -> Server {
        Server::start_binary(env!("CARGO_BIN_EXE_sumserver"), apply, args, fd_limit)
    }

    /// Starts `binary` as [`Server::start_with_fd_limit`] says.
    fn start_binary(binary: &str, apply: &str, args: &[&str], fd_limit: Option<u64>) -> Server {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "sumserver-reliability-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).expect("create the server's log file");
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0", "--apply", apply])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(limit) = fd_limit {
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

        let mut server = Server {
            pid: i32::try_from(child.id()).expect("pids fit in i32"),
            child: Mutex::new(child),
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
            .unwrap_or_else(|| panic!("first line on stdout is {line:?}"));
        server
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
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

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new line-dialect connection (nothing is sent yet).
    pub(crate) fn line_conn(&self) -> Conn {
        Conn::new(self.connect())
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

    /// The server's memory now.
    pub(crate) fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// Everything the server logged so far.
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
    pub(crate) fn process_tree(
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

    /// The socket.
    pub(crate) fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sets how long a reply may take.
    pub(crate) fn set_read_timeout(&mut self, within: Duration) {
        self.stream().set_read_timeout(Some(within)).unwrap();
    }

    /// Writes `bytes` as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream().write_all(bytes)
    }

    /// Reads one reply line and returns it without its `\n`; an error on a
    /// timeout, on EOF, on a reset, or on a last line without `\n`.
    pub(crate) fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed; unterminated bytes {:?}",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        String::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Sends `line` and `\n`, returns the reply line or why there is none.
    pub(crate) fn try_request(&mut self, line: &str) -> io::Result<String> {
        self.send(format!("{line}\n").as_bytes())?;
        self.read_line()
    }

    /// Sends `line` and `\n`, returns the reply line.
    ///
    /// # Panics
    ///
    /// If no reply line comes.
    pub(crate) fn request(&mut self, line: &str) -> String {
        self.try_request(line)
            .unwrap_or_else(|err| panic!("request {line:?}: no reply: {err}"))
    }

    /// Reads until the server closes the connection (EOF or reset) and
    /// returns the bytes that came first.
    ///
    /// # Panics
    ///
    /// If the connection is still open after the read timeout.
    pub(crate) fn read_until_closed(&mut self) -> Vec<u8> {
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
        rest
    }
}
