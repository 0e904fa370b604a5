//! [`Load`]: tiny jobs from two threads, every answer checked, wrong
//! answers and errors kept apart (errors with their time). Either a new
//! connection per request to one of the servers in rotation (servers can
//! leave and join it while the load runs: a rolling restart or upgrade), or
//! one kept-alive connection per thread to a single server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::support::IO_TIMEOUT;

/// How the load's threads connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connections {
    /// A new connection per request, to the servers in rotation in turn.
    PerRequest,
    /// One connection per thread, kept, to the first server.
    KeptAlive,
}

/// What the load saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Requests answered right.
    pub(crate) ok: u64,
    /// Requests answered wrong: never acceptable.
    pub(crate) wrong: Vec<String>,
    /// Requests answered `ERR …`, or whose connection failed, with when.
    pub(crate) errors: Vec<(Instant, String)>,
}

impl Seen {
    /// Every request that was not answered right, wrong answers first.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.wrong
            .iter()
            .cloned()
            .chain(self.errors.iter().map(|(_, error)| error.clone()))
            .collect()
    }
}

/// The running load.
pub(crate) struct Load {
    live: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    ok: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts two threads sending `sumn` to the servers of `live`.
    pub(crate) fn start(live: Vec<SocketAddr>, connections: Connections) -> Load {
        let mut load = Load {
            live: Arc::new(Mutex::new(live)),
            stop: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(Mutex::new(Seen::default())),
            ok: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
        };
        for thread in 0..2u64 {
            let (live, stop, seen, ok) = (
                Arc::clone(&load.live),
                Arc::clone(&load.stop),
                Arc::clone(&load.seen),
                Arc::clone(&load.ok),
            );
            load.threads.push(std::thread::spawn(move || {
                let mut kept: Option<Conn> = None;
                let mut round = thread * 1_000;
                while !stop.load(Ordering::Acquire) {
                    round += 1;
                    let addr = {
                        let live = live.lock().unwrap();
                        match connections {
                            Connections::PerRequest => live[round as usize % live.len()],
                            Connections::KeptAlive => live[0],
                        }
                    };
                    let n = 1 + round % 2_000;
                    let request = format!("sumn {n}");
                    let reply = match (connections, kept.as_mut()) {
                        (Connections::KeptAlive, Some(conn)) => conn.try_request(&request),
                        _ => std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT).and_then(
                            |stream| {
                                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                                let mut conn = Conn::new(stream);
                                let reply = conn.try_request(&request);
                                if connections == Connections::KeptAlive {
                                    kept = Some(conn);
                                }
                                reply
                            },
                        ),
                    };
                    match reply {
                        Ok(reply) if reply == (n * (n + 1) / 2).to_string() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) if reply.starts_with("ERR ") => {
                            let error = format!("{addr}: {request} → {reply}");
                            seen.lock().unwrap().errors.push((Instant::now(), error));
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Ok(reply) => {
                            let wrong = format!("{addr}: {request} → {reply}");
                            seen.lock().unwrap().wrong.push(wrong);
                        }
                        Err(err) => {
                            kept = None;
                            let error = format!("{addr}: {request} → {err}");
                            seen.lock().unwrap().errors.push((Instant::now(), error));
                            std::thread::sleep(Duration::from_millis(5));
                        }
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

    /// Stops the load and says what it saw.
    pub(crate) fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
        let mut seen = std::mem::take(&mut *self.seen.lock().unwrap());
        seen.ok = self.ok.load(Ordering::Relaxed);
        seen
    }
}
