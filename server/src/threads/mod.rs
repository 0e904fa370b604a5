//! `--io threads`: mio polls the listener and a waker; every accepted
//! connection gets its own blocking thread. Over the connection limit a
//! client is told `ERR busy` and closed. A shutdown stops accepting at once
//! (the signal shuts the listening socket), lets the requests in flight
//! finish within the grace period, closes each connection once it has
//! answered what it read, then cuts the rest short: their threads tell them
//! `ERR shutting-down` before the sockets are shut.
//!
//! - `connection`: one connection's thread.

mod connection;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown as SocketShutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use offload::Strategy;

use crate::accept::{is_resource_exhaustion, ACCEPT_BACKOFF};
use crate::config::Config;
use crate::counts::ConnectionCounts;
use crate::shutdown::{Shutdown, Stopped, CUT_TIME};
use connection::Context;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Each connection thread's stack: the handler keeps small buffers only, and
/// `inline` jobs are loops, not recursion.
const CONNECTION_STACK: usize = 256 * 1024;

/// How long without running out of resources ends a burst: the next time
/// is logged again.
const QUIET_ENDS_BURST: Duration = Duration::from_secs(1);

/// The open connections, and the server's counters they update.
#[derive(Debug)]
pub struct Connections<'a> {
    /// A handle on each open connection's socket, so that the end of a
    /// shutdown can unblock their threads. Shared with the thread rather
    /// than a cloned descriptor: a connection costs one descriptor, not two.
    open: Mutex<HashMap<u64, Arc<TcpStream>>>,
    next_id: AtomicU64,
    /// The counters `stats` and `/metrics` report.
    counts: &'a ConnectionCounts,
}

impl<'a> Connections<'a> {
    fn new(counts: &'a ConnectionCounts) -> Self {
        Connections {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            counts,
        }
    }

    /// The server's counters.
    pub fn counts(&self) -> &ConnectionCounts {
        self.counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection if there is room; `None` when at the limit.
    fn admit(&self, stream: &Arc<TcpStream>, limit: usize) -> Option<u64> {
        let mut open = self.lock();
        if open.len() >= limit {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, Arc::clone(stream));
        self.counts.opened();
        Some(id)
    }

    fn close(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            self.counts.closed(1);
        }
    }

    /// Ends reading on every open socket: a thread waiting for its next
    /// request gets end of input at once and closes its connection, while
    /// one busy with a request still answers it (writing stays open).
    fn stop_reading(&self) {
        for stream in self.lock().values() {
            let _ = stream.shutdown(SocketShutdown::Read);
        }
    }

    /// Shuts every open socket, so that threads blocked on them return.
    fn shut_all(&self) {
        for stream in self.lock().values() {
            let _ = stream.shutdown(SocketShutdown::Both);
        }
    }
}

/// Serves `listener` until `shutdown` is triggered, then shuts down
/// gracefully and returns once every connection thread has ended; `counts`
/// is kept up to date all along.
///
/// The strategy is borrowed: the caller drops it afterwards, which stops its
/// workers.
///
/// # Errors
///
/// Only failures of the poll itself; errors on one connection, and accept
/// errors such as running out of descriptors, are logged and survived.
pub fn run(
    listener: TcpListener,
    config: &Config,
    strategy: &Strategy,
    shutdown: &Shutdown,
    counts: &ConnectionCounts,
) -> io::Result<Stopped> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    shutdown.set_waker(Arc::new(Waker::new(poll.registry(), WAKER)?));
    let connections = Connections::new(counts);
    let in_flight = AtomicUsize::new(0);
    let ctx = Context {
        strategy,
        config,
        shutdown,
        connections: &connections,
        in_flight: &in_flight,
    };

    std::thread::scope(|scope| -> io::Result<Stopped> {
        let mut events = Events::with_capacity(64);
        let mut retry_at: Option<Instant> = None;
        // When the process last ran out of resources: a burst of refusals is
        // logged once, not once per client.
        let mut exhausted_at: Option<Instant> = None;
        let mut out_of_resources = |err: &io::Error| {
            if exhausted_at.is_none_or(|at| at.elapsed() >= QUIET_ENDS_BURST) {
                tracing::warn!(%err, "cannot accept: out of resources; backing off");
            }
            exhausted_at = Some(Instant::now());
            Some(Instant::now() + ACCEPT_BACKOFF)
        };
        while !shutdown.is_triggered() {
            let timeout = retry_at.map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(err) = poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                shutdown.trigger();
                return Err(err);
            }
            let readable = events.iter().any(|e| e.token() == LISTENER);
            let retry_due = retry_at.is_some_and(|at| Instant::now() >= at);
            if !(readable || retry_due) {
                continue;
            }
            retry_at = None;
            // mio is edge-triggered: accept until the queue is empty.
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(err) = start_connection(scope, stream, &ctx) {
                            retry_at = out_of_resources(&err);
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if is_resource_exhaustion(&err) => {
                        retry_at = out_of_resources(&err);
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    // The signal shut the listening socket (`EINVAL`).
                    Err(_) if shutdown.is_triggered() => break,
                    Err(err) => tracing::debug!(%err, "accept failed"),
                }
            }
        }

        // Graceful shutdown: the signal has shut the listening socket; the
        // requests already read get `grace` to finish; nothing more is read,
        // and each connection closes once it has answered what it read.
        let _ = poll.registry().deregister(&mut listener);
        drop(listener);
        connections.stop_reading();
        let open = counts.snapshot().open;
        let busy = in_flight.load(Ordering::SeqCst);
        tracing::info!(open, in_flight = busy, grace = ?config.grace, "shutting down");
        let deadline = Instant::now() + config.grace;
        while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let unfinished = in_flight.load(Ordering::SeqCst);
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "grace period over; cutting the remaining requests short"
            );
        }
        strategy.shutdown();
        // The jobs cut short end at their next yield point with
        // `ShuttingDown`, and their threads write `ERR shutting-down`: let
        // them, within a bound, before the sockets are shut.
        let cut_deadline = Instant::now() + CUT_TIME;
        while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < cut_deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        connections.shut_all();
        Ok(Stopped {
            cut_short: unfinished,
        })
    })
}

/// Admits a connection and starts its thread, or refuses it with `ERR busy`.
///
/// # Errors
///
/// When the process is out of descriptors, memory or threads: the client
/// has been refused, and the accept loop should back off (and log it once).
fn start_connection<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    stream: mio::net::TcpStream,
    ctx: &'scope Context<'scope>,
) -> io::Result<()> {
    let stream = Arc::new(TcpStream::from(OwnedFd::from(stream)));
    if let Err(err) = stream.set_nonblocking(false) {
        tracing::debug!(%err, "could not make an accepted socket blocking");
        return Ok(());
    }
    let Some(id) = ctx.connections.admit(&stream, ctx.config.max_connections) else {
        refuse(&stream, ctx, "too many connections");
        return Ok(());
    };
    let thread_stream = Arc::clone(&stream);
    let spawned = std::thread::Builder::new()
        .name("connection".into())
        .stack_size(CONNECTION_STACK)
        .spawn_scoped(scope, move || {
            connection::serve(&thread_stream, ctx);
            ctx.connections.close(id);
        });
    if let Err(err) = spawned {
        ctx.connections.close(id);
        refuse(&stream, ctx, "cannot start a thread");
        return Err(err);
    }
    Ok(())
}

/// Tells a client it cannot be served now, and closes.
fn refuse(mut stream: &TcpStream, ctx: &Context<'_>, why: &str) {
    ctx.connections.counts.refused();
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = writeln!(stream, "ERR busy {why}");
    let _ = stream.shutdown(SocketShutdown::Write);
}
