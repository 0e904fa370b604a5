//! The harness of the adversarial suite: the one place that reads
//! `YSUM_SOAK` ([`Scale`]), a guard around one `sumserver` process
//! ([`Server`]), load clients that count every outcome ([`Tally`]), answers
//! checked exactly ([`expected`]), and `/proc` readings ([`Proc`],
//! [`Memory`]).
//!
//! The server guard, the line connection and the bounded waits are shared
//! with the end-to-end suite (`tests/common/server.rs`); this file adds how
//! this suite starts a server (`--apply`, a descriptor limit) and what only
//! it needs.
//!
//! Nothing here can hang: every socket has a read and a write timeout, every
//! wait has a deadline, and dropping a [`Server`] SIGKILLs and reaps the
//! server and every descendant it was seen with, even when a test panics.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use crate::conn::Conn;
pub(crate) use crate::process::{states, Proc};
pub(crate) use crate::server::{eventually, sum_of, Launch, Server, IO_TIMEOUT};

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

/// Makes room for `needed` open descriptors in this process: raises the
/// soft `RLIMIT_NOFILE` to it, within the hard limit. An ordinary user's
/// soft limit is often 1024, which 2000 connections at once exceed (as
/// root, with a shell's higher limit, the test had room by chance).
///
/// # Panics
///
/// If the hard limit is below `needed`, saying how to raise it.
pub(crate) fn room_for_descriptors(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read RLIMIT_NOFILE");
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "this test needs {needed} open descriptors, above the hard limit {hard}: \
         raise it (`ulimit -Hn {needed}` as root, or nofile in /etc/security/limits.conf)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("raise RLIMIT_NOFILE");
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

pub(crate) use crate::prime::is_prime;

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

impl Server {
    /// Starts `sumserver --addr 127.0.0.1:0 --apply <apply> <args…>` and
    /// waits (at most [`IO_TIMEOUT`]) for its `listening on ADDR` line.
    pub(crate) fn start(apply: &str, args: &[&str]) -> Server {
        Server::start_with_fd_limit(apply, args, None)
    }

    /// [`Server::start`] of the test binary `sumserver-faults`, which also
    /// serves the fault-injection job `panic 1`.
    pub(crate) fn start_faulty(apply: &str, args: &[&str]) -> Server {
        Server::start_reliability(env!("CARGO_BIN_EXE_sumserver-faults"), apply, args, None)
    }

    /// [`Server::start`] with `RLIMIT_NOFILE` lowered to `fd_limit` in the
    /// server (as `ulimit -n` would).
    pub(crate) fn start_with_fd_limit(apply: &str, args: &[&str], fd_limit: Option<u64>) -> Server {
        Server::start_reliability(env!("CARGO_BIN_EXE_sumserver"), apply, args, fd_limit)
    }

    /// Starts `binary` with `--apply` and the rest, `NO_COLOR` set.
    fn start_reliability(
        binary: &str,
        apply: &str,
        args: &[&str],
        fd_limit: Option<u64>,
    ) -> Server {
        let mut all = vec!["--apply", apply];
        all.extend_from_slice(args);
        Server::launch(Launch {
            fd_limit,
            no_color: true,
            ..Launch::new(binary, all)
        })
    }

    /// The server's memory now.
    pub(crate) fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }
}
