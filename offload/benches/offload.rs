//! `cargo bench -p ysum-offload`: what a job costs under each strategy, next to
//! the floors it cannot beat. One run prints every figure side by side:
//!
//! - the round trip of a tiny job (`sumn 1`) through each strategy;
//! - a bare request/reply ping-pong between two processes over a Unix
//!   socketpair (the same `SOCK_SEQPACKET` sockets ipc-channel uses): the
//!   floor under `procs`;
//! - Python's `multiprocessing.Pool.apply` round trip, when `python3` is here;
//! - `sumn 25000` (the seed's job) and `sumn` at about 5 ms;
//! - `sumn` at 1, 2, 4 and 8 million steps: time per step stays flat, so the
//!   loop was not folded into a formula;
//! - `sumn` with and without its yield points: what the checks cost.
//! - `--broker-secret-file`: what signing and checking a job and its reply
//!   cost (HMAC-SHA256, the four MACs of one remote job).
//!
//! Each figure is the median of 9 samples of about 0.2 s; `--quick` takes 3
//! shorter samples.
//!
//! The socketpair floor and Python's `Pool.apply` are also measured by
//! `scripts/bench` (`scripts/harness/src/floors.rs`), for its results file.
//! Each keeps its own 30 lines of fork-and-echo on purpose: this bench must
//! set the floor beside the strategies in the same process, moments apart,
//! for the "procs adds ×floor" line to mean anything, and sharing the code
//! would take a library crate that both offload's benches and the bench
//! binary depend on (the harness is a binary, and offload must not depend on
//! it) — a workspace member and a dependency edge for less than the code it
//! would hold. Nor does a benchmark crate such as criterion fit: the echo
//! process must be forked while this process has one thread, before any
//! harness starts its own.

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{fork, ForkResult};
use offload::job::{sumn_with_yield_every, Cancel, YIELD_EVERY};
use offload::{Job, Strategy, StrategyConfig, StrategyKind};

struct Sampler {
    samples: usize,
    sample_time: Duration,
}

impl Sampler {
    /// Median time of one call of `op`, in nanoseconds.
    fn median_ns(&self, mut op: impl FnMut()) -> f64 {
        // Calibrate: how many calls fill one sample.
        let mut calls = 1u64;
        loop {
            let started = Instant::now();
            for _ in 0..calls {
                op();
            }
            if started.elapsed() >= self.sample_time / 4 || calls >= 1 << 30 {
                calls = (calls * 4).max(1);
                break;
            }
            calls *= 2;
        }
        let mut per_call: Vec<f64> = (0..self.samples)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..calls {
                    op();
                }
                started.elapsed().as_nanos() as f64 / calls as f64
            })
            .collect();
        per_call.sort_by(f64::total_cmp);
        per_call[per_call.len() / 2]
    }
}

fn show(label: &str, ns: f64) {
    if ns >= 1e6 {
        println!("{label:<52} {:>10.3} ms", ns / 1e6);
    } else {
        println!("{label:<52} {:>10.2} µs", ns / 1e3);
    }
}

/// Forks an echo process on a socketpair; returns our end and its pid. Must
/// run while the process has one thread.
fn start_echo() -> (OwnedFd, nix::unistd::Pid) {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    // SAFETY: called first in main, before any thread exists.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ours);
            let mut buf = [0u8; 64];
            while let Ok(n) = recv(theirs.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                if n == 0 || send(theirs.as_raw_fd(), &buf[..n], MsgFlags::empty()).is_err() {
                    break;
                }
            }
            // SAFETY: leaving a forked child without running the parent's
            // exit handlers.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => (ours, child),
    }
}

fn python_pool_apply_us() -> Option<f64> {
    let script = "\
import multiprocessing, time
def tiny(n):
    return n
if __name__ == '__main__':
    with multiprocessing.Pool(2) as pool:
        for _ in range(300):
            pool.apply(tiny, (1,))
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(1000):
                pool.apply(tiny, (1,))
            rounds.append((time.perf_counter() - start) / 1000 * 1e6)
        rounds.sort()
        print(rounds[2])
";
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn main() {
    // `procs` starts its fork servers from this executable: they turn off
    // here, before the benchmark.
    offload::fork_server_main_if_requested();
    let quick = std::env::args().any(|a| a == "--quick");
    // The echo's fork first, while this process has a single thread.
    let (echo, echo_pid) = start_echo();

    let sampler = if quick {
        Sampler {
            samples: 3,
            sample_time: Duration::from_millis(60),
        }
    } else {
        Sampler {
            samples: 9,
            sample_time: Duration::from_millis(200),
        }
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "offload benchmark: {cores} cores, {cpu}; median of {} samples\n",
        sampler.samples
    );

    println!("-- round trip of a tiny job (sumn 1), one caller --");
    let mut tiny = Vec::new();
    // `remote` needs a broker and workers: docs/distributed.md measures it.
    for kind in StrategyKind::ALL
        .into_iter()
        .filter(|k| *k != StrategyKind::Remote)
    {
        let config = StrategyConfig {
            workers: 2,
            ..StrategyConfig::new(kind)
        };
        let strategy = Strategy::start(&config).expect("strategy");
        let ns = sampler.median_ns(|| {
            black_box(strategy.apply(black_box(Job::Sumn(1))).expect("answer"));
        });
        show(&format!("{kind}"), ns);
        tiny.push((kind, ns));
    }
    let fd = echo.as_raw_fd();
    let floor = sampler.median_ns(|| {
        let mut buf = [0u8; 64];
        send(fd, b"sumn 1 request..", MsgFlags::empty()).expect("send");
        black_box(recv(fd, &mut buf, MsgFlags::empty()).expect("recv"));
    });
    show("floor: socketpair ping-pong between two processes", floor);
    drop(echo);
    let _ = nix::sys::wait::waitpid(echo_pid, None);
    let python = python_pool_apply_us();
    match python {
        Some(us) => show("python3 multiprocessing.Pool.apply (tiny job)", us * 1e3),
        None => println!(
            "{:<52} {:>13}",
            "python3 multiprocessing.Pool.apply", "(no python3)"
        ),
    }
    let of = |k: StrategyKind| {
        tiny.iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, ns)| *ns)
            .unwrap_or(f64::NAN)
    };
    let inline = of(StrategyKind::Inline);
    println!("\ntargets:");
    println!(
        "  threads adds {:.2} µs to inline (target ≤ 5 µs)",
        (of(StrategyKind::Threads) - inline) / 1e3
    );
    println!(
        "  procs adds {:.2} µs to inline = {:.2}× the socketpair floor (target ≤ 1.3×)",
        (of(StrategyKind::Procs) - inline) / 1e3,
        (of(StrategyKind::Procs) - inline) / floor
    );
    if let Some(us) = python {
        println!(
            "  Pool.apply is {:.0}× procs and {:.0}× threads",
            us * 1e3 / of(StrategyKind::Procs),
            us * 1e3 / of(StrategyKind::Threads)
        );
    }

    println!("\n-- the work itself, inline --");
    let never = Cancel::never();
    let per_call = |n: u64| {
        sampler.median_ns(|| {
            black_box(offload::job::sumn(black_box(n), &never).expect("sum"));
        })
    };
    show("sumn 25000 (the seed's job)", per_call(25_000));
    let ns_per_step = per_call(1_000_000) / 1e6;
    let five_ms = (5e6 / ns_per_step) as u64;
    show(
        &format!("sumn {five_ms} (about 5 ms on this machine)"),
        per_call(five_ms),
    );

    println!("\n-- linearity: time per step of sumn n (rounds interleaved) --");
    // Rounds that time each n once, in turn: this machine's speed drifts by
    // tens of percent over seconds, and a drift must not pass for a curve.
    let sizes = [1_000_000u64, 2_000_000, 4_000_000, 8_000_000];
    let mut timings: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for _ in 0..(sampler.samples * 3) {
        for (n, times) in sizes.iter().zip(&mut timings) {
            let started = Instant::now();
            black_box(offload::job::sumn(black_box(*n), &never).expect("sum"));
            times.push(started.elapsed().as_nanos() as f64 / *n as f64);
        }
    }
    let steps: Vec<(u64, f64)> = sizes
        .iter()
        .zip(timings)
        .map(|(n, mut times)| {
            times.sort_by(f64::total_cmp);
            (*n, times[times.len() / 2])
        })
        .collect();
    let base = steps[0].1;
    for (n, step) in steps {
        println!(
            "{:<52} {step:>10.3} ns/step ({:.2}× n=1M)",
            format!("n = {n}"),
            step / base
        );
    }

    println!("\n-- cost of the yield points (sumn 10 000 000, deadline checked) --");
    let deadline = Cancel::never().with_deadline(Some(Instant::now() + Duration::from_secs(3600)));
    // Alternate the two, sample by sample, so that a noisy neighbour or a
    // clock change hits both alike.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..sampler.samples {
        with.push(sampler.median_ns(|| {
            black_box(
                sumn_with_yield_every(black_box(10_000_000), YIELD_EVERY, &deadline).expect("sum"),
            );
        }));
        without.push(sampler.median_ns(|| {
            black_box(
                sumn_with_yield_every(black_box(10_000_000), u64::MAX, &deadline).expect("sum"),
            );
        }));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (with, without) = (median(with), median(without));
    show(&format!("with a yield point every {YIELD_EVERY}"), with);
    show("with none", without);
    println!(
        "  the checks cost {:+.2}% (target ≤ 2%)",
        (with / without - 1.0) * 100.0
    );

    signing(&sampler);
}

/// What `--broker-secret-file` adds to one remote job: the server signs the
/// entry, the worker checks it, the worker signs the reply, the server
/// checks it; and the same message handling unsigned, for comparison.
fn signing(sampler: &Sampler) {
    use offload::broker::wire::{answer_reply, JobMessage, Reply};
    use offload::broker::{Secret, Signer};
    use offload::Answer;
    use redis::Value;

    println!("\n-- signing (HMAC-SHA256) of one remote job and its reply --");
    let signer = Signer::new(&[Secret::new("0123456789abcdef0123456789abcdef")]).expect("key");
    let message = JobMessage::new(
        123_456,
        Job::Sumn(1),
        "ysum:reply:host-4242-1a2b3c4d".into(),
        1_764_626_400_123,
    );
    let round = |signer: Option<&Signer>| {
        // The server writes the entry; the worker reads it back as Redis
        // hands it over, answers, and the server reads and checks the reply.
        let fields: std::collections::HashMap<String, Value> = message
            .fields(signer)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes())))
            .collect();
        let read = JobMessage::from_fields(&fields, signer).expect("a job");
        let text = answer_reply(&read, &Answer::Sum(1), signer);
        let reply = Reply::parse(&text).expect("a reply");
        reply.check(&message, signer).expect("checks");
        black_box(reply);
    };
    let plain = sampler.median_ns(|| round(None));
    let signed = sampler.median_ns(|| round(Some(&signer)));
    show(
        "one job's messages, unsigned (write, read, reply, read)",
        plain,
    );
    show("the same, signed and checked", signed);
    println!(
        "  signing adds {:.2} µs per job (target < 2 µs)",
        (signed - plain) / 1e3
    );
}
