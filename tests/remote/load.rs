//! [`Load`]: requests from a few threads, each on a new connection to one
//! of the servers in rotation, every answer checked; servers can leave and
//! join the rotation while it runs (a rolling restart or upgrade).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::conn::Conn;
use crate::support::IO_TIMEOUT;

/// Requests from a few threads, each on a new connection to one of the
/// live servers, every answer checked.
pub(crate) struct Load {
    live: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(live: Vec<SocketAddr>) -> Load {
        let mut load = Load {
            live: Arc::new(Mutex::new(live)),
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        for thread in 0..2u64 {
            let (live, stop, ok, failures) = (
                Arc::clone(&load.live),
                Arc::clone(&load.stop),
                Arc::clone(&load.ok),
                Arc::clone(&load.failures),
            );
            load.threads.push(std::thread::spawn(move || {
                let mut round = thread;
                while !stop.load(Ordering::Acquire) {
                    round += 1;
                    let addr = {
                        let live = live.lock().unwrap();
                        live[round as usize % live.len()]
                    };
                    let n = 1 + round % 1000;
                    let expected = (n * (n + 1) / 2).to_string();
                    let reply = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                        .map(Conn::new)
                        .map(|mut conn| conn.try_request(&format!("sumn {n}")));
                    match reply {
                        Ok(Ok(reply)) if reply == expected => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("{addr}: {other:?}")),
                    }
                }
            }));
        }
        load
    }

    /// Takes `addr` out of the rotation, and lets requests that chose it
    /// connect before it is stopped.
    pub(crate) fn retire(&self, addr: SocketAddr) {
        self.live.lock().unwrap().retain(|a| *a != addr);
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Puts `addr` in the rotation.
    pub(crate) fn admit(&self, addr: SocketAddr) {
        self.live.lock().unwrap().push(addr);
    }

    /// Stops the load: the requests answered right, and every failure.
    pub(crate) fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}
