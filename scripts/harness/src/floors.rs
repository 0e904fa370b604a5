//! The floors no strategy can go under, measured on this machine: a bare TCP
//! request/reply over loopback, a bare socketpair round trip between two
//! processes, Python's `multiprocessing.Pool.apply`, and the time of one job.
//!
//! `cargo bench -p ysum-offload` measures the socketpair floor and `Pool.apply`
//! too, with its own copy of [`Echo`]: why the two are not shared is said at
//! the top of `offload/benches/offload.rs`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{fork, ForkResult, Pid};

use crate::server::Server;
use crate::sweep;

/// Round trips per sample, and samples per floor (the median is kept).
const ROUND_TRIPS: u32 = 2_000;
const SAMPLES: usize = 7;

/// Median microseconds per call of `op`, over `SAMPLES` batches.
pub(crate) fn median_us(mut op: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..ROUND_TRIPS {
                op();
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// A process that echoes what it receives on a socketpair.
pub(crate) struct Echo {
    ours: OwnedFd,
    pid: Pid,
}

impl Echo {
    /// Forks the echo. Call before the process starts any thread.
    pub(crate) fn start() -> anyhow::Result<Echo> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        // SAFETY: called first thing in main, while there is one thread.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(ours);
                let mut buf = [0u8; 64];
                let fd = theirs.as_raw_fd();
                while let Ok(n) = recv(fd, &mut buf, MsgFlags::empty()) {
                    if n == 0 || send(fd, &buf[..n], MsgFlags::empty()).is_err() {
                        break;
                    }
                }
                // SAFETY: ends the forked child without the parent's exit handlers.
                unsafe { nix::libc::_exit(0) }
            }
            ForkResult::Parent { child } => Ok(Echo { ours, pid: child }),
        }
    }

    /// Median round trip to the echo process, in µs; then stops it.
    pub(crate) fn measure(self) -> anyhow::Result<f64> {
        let fd = self.ours.as_raw_fd();
        let mut buf = [0u8; 64];
        let us = median_us(|| {
            send(fd, b"sumn 1 .........", MsgFlags::empty()).expect("send to the echo");
            recv(fd, &mut buf, MsgFlags::empty()).expect("reply from the echo");
        });
        drop(self.ours);
        nix::sys::wait::waitpid(self.pid, None)?;
        Ok(us)
    }
}

/// Median round trip of 16 bytes over loopback TCP to an echo thread, in µs.
pub(crate) fn tcp_ping_pong_us() -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = [0u8; 16];
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => conn.write_all(&buf[..n])?,
            }
        }
    });
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 16];
    let us = median_us(|| {
        conn.write_all(b"sumn 1 ........\n")
            .expect("write to the echo");
        conn.read_exact(&mut buf).expect("reply from the echo");
    });
    drop(conn);
    let _ = echo.join();
    Ok(us)
}

/// Python's `multiprocessing.Pool.apply` round trip of a tiny job, in µs, if
/// `python3` is here.
pub(crate) fn python_pool_apply_us() -> Option<f64> {
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

/// How long `sumn n` takes through `sumserver`, in ms: the median of a few
/// requests sent one after another to an idle `inline` server (the round
/// trip adds some 30 µs to a job of milliseconds).
///
/// Timed through the server, not here: the same loop compiled into another
/// binary can run at a different speed (code placement).
pub(crate) fn server_sumn_ms(server_bin: &Path, n: u64) -> anyhow::Result<f64> {
    let server = Server::start(server_bin, "inline", &[])?;
    let ms = sweep::probe_ms(server.addr, n)?;
    server.stop()?;
    Ok(ms)
}

/// The `n` for which `sumn n` takes about `target` in the server.
pub(crate) fn calibrate_sumn(server_bin: &Path, target: Duration) -> anyhow::Result<u64> {
    const PROBE: u64 = 2_000_000;
    let per_step_ms = server_sumn_ms(server_bin, PROBE)? / PROBE as f64;
    Ok((target.as_secs_f64() * 1e3 / per_step_ms) as u64)
}
