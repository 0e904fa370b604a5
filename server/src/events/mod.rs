//! `--io events`: one thread, one mio poll, every connection.
//!
//! The reactor owns the listener, a [`Waker`] and a `Conn` per connection,
//! all with non-blocking sockets, and turns forever: poll; accept; drive each
//! connection whose socket is ready; file the job results that came back;
//! close connections past their deadline. A job goes to the strategy with
//! [`Strategy::submit`], whose callback sends the reply down a channel and
//! wakes the poll, so under `threads` and `procs` the loop never waits for a
//! job. Under `inline` and `exclusive` the strategy runs the job inside
//! `submit`, on this thread: every other connection waits meanwhile. That
//! stall is what the experiment is about (`shared/seeds/000`–`003`). With
//! `--inline-below`, a job predicted to run below the threshold runs inside
//! `submit` on this thread too (the rule's promise: never a longer one).
//!
//! Limits and shutdown mirror the threaded mode (`crate::threads`): over
//! `--max-connections` a client gets `ERR busy too many connections`; a
//! shutdown stops accepting, lets the jobs already read finish within
//! `--grace` (a job counts as read once the reactor has read it, so under
//! `inline` a request that waited in its socket while the loop was stalled
//! is refused as shutting down), then stops the strategy and closes every
//! connection.
//!
//! - `conn`: one connection's state and how it is driven.
//! - `output`: reply slots kept in request order, and the write buffer.
//! - `env`: what a connection is driven with, and a job's completion.
//! - `grace`: the watchdog that ends the grace period.

mod conn;
mod env;
mod grace;
mod output;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use offload::Strategy;

use crate::accept::{is_resource_exhaustion, refuse_unaccepted, ACCEPT_BACKOFF};
use crate::config::Config;
use crate::counts::ConnectionSnapshot;
use crate::shutdown::Shutdown;
use conn::Conn;
use env::{Completion, Env};
use grace::cut_short_after_grace;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens count up from here and are never reused, so that a
/// late completion cannot reach a newer connection that took an old token.
const FIRST_CONNECTION: usize = 2;

/// How often the reactor looks for connections past their deadline while it
/// has any: the read timeout is kept to within this.
pub(super) const TICK: Duration = Duration::from_millis(20);

/// What the reactor keeps between turns.
struct Reactor<'a> {
    poll: Poll,
    /// `None` once a shutdown has begun.
    listener: Option<mio::net::TcpListener>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    finished: Receiver<Completion>,
    link: Link<'a>,
    config: &'a Config,
    shutdown: &'a Shutdown,
    /// Connections accepted and refused since start, for `stats`.
    total: u64,
    refused: u64,
    /// When the accept loop may try again after running out of descriptors.
    retry_accept_at: Option<Instant>,
    backing_off: bool,
    /// Connections whose read budget ran out: driven again next turn.
    again: Vec<Token>,
    /// Set when the reactor sees the shutdown: the end of the grace period.
    grace_ends: Option<Instant>,
}

/// What every connection is handed while it is driven, kept apart from the
/// connections themselves so that both can be borrowed at once.
struct Link<'a> {
    strategy: &'a Strategy,
    config: &'a Config,
    completions: crossbeam_channel::Sender<Completion>,
    waker: Arc<Waker>,
    started: Instant,
}

impl Link<'_> {
    fn env(&self, stopping: bool, connections: ConnectionSnapshot) -> Env<'_> {
        Env {
            strategy: self.strategy,
            config: self.config,
            stopping,
            completions: &self.completions,
            waker: &self.waker,
            connections,
            started: self.started,
        }
    }
}

/// Serves `listener` with one reactor thread (the caller's) until `shutdown`
/// is triggered, then shuts down gracefully as [`crate::threads::run`] does.
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
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    // One waker per poll: it serves both the shutdown signal and the
    // completions.
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.set_waker(Arc::clone(&waker));
    let (completions, finished) = crossbeam_channel::unbounded();
    let mut reactor = Reactor {
        poll,
        listener: Some(listener),
        conns: HashMap::new(),
        next_token: FIRST_CONNECTION,
        finished,
        link: Link {
            strategy,
            config,
            completions,
            waker,
            started: Instant::now(),
        },
        config,
        shutdown,
        total: 0,
        refused: 0,
        retry_accept_at: None,
        backing_off: false,
        again: Vec::new(),
        grace_ends: None,
    };
    let served = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        // Under inline and exclusive the reactor runs jobs itself, and while
        // in one it cannot notice that the grace period is over: this thread
        // ends it for the reactor, as the threaded mode's accept loop does.
        let watchdog = std::thread::Builder::new()
            .name("ysum-grace".into())
            .spawn_scoped(scope, || {
                cut_short_after_grace(shutdown, strategy, config.grace, &served);
            });
        if let Err(err) = watchdog {
            tracing::warn!(%err, "no grace watchdog; a job run by the reactor may outlast --grace");
        }
        let result = reactor.serve();
        served.store(true, Ordering::SeqCst);
        result
    });
    // Grace is over (or the poll failed): cut short what still runs, and
    // close every connection, as the threaded mode shuts its sockets.
    strategy.shutdown();
    reactor.conns.clear();
    result
}

impl Reactor<'_> {
    /// The event loop; returns once a shutdown is complete.
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + TICK;
        loop {
            if let Err(err) = self.poll.poll(&mut events, self.poll_timeout(next_sweep)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.shutdown.trigger();
                return Err(err);
            }
            if self.grace_ends.is_none() && self.shutdown.is_triggered() {
                self.begin_shutdown();
            }
            let mut ready: Vec<Token> = std::mem::take(&mut self.again);
            let mut accept = self.retry_accept_at.is_some_and(|at| Instant::now() >= at);
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept = true,
                    // A completion or the shutdown: both looked at below.
                    WAKER => {}
                    token => ready.push(token),
                }
            }
            if accept && self.listener.is_some() {
                self.accept_all(&mut ready);
            }
            for Completion { token, seq, reply } in self.finished.try_iter() {
                // A connection that closed meanwhile no longer wants it.
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.complete(seq, reply);
                    ready.push(token);
                }
            }
            ready.sort_unstable();
            ready.dedup();
            for token in ready {
                self.drive(token);
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + TICK;
                self.sweep(now);
            }
            if let Some(grace_ends) = self.grace_ends {
                let busy = self.conns.values().filter(|c| !c.is_quiet()).count();
                if busy == 0 {
                    return Ok(());
                }
                if now >= grace_ends {
                    tracing::warn!(
                        unfinished = busy,
                        "grace period over; cutting the remaining requests short"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// How long the next poll may wait: for ever when there is nothing to
    /// time, else until the next sweep, the accept retry, or at once.
    fn poll_timeout(&self, next_sweep: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut wake_at = self.retry_accept_at;
        if !self.conns.is_empty() || self.grace_ends.is_some() {
            wake_at = Some(wake_at.map_or(next_sweep, |at| at.min(next_sweep)));
        }
        wake_at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The counters `stats` reports.
    fn connection_counts(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            open: self.conns.len(),
            total: self.total,
            refused: self.refused,
        }
    }

    /// Drives one connection, and drops it if it is finished.
    fn drive(&mut self, token: Token) {
        let counts = self.connection_counts();
        let env = self.link.env(self.grace_ends.is_some(), counts);
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.drive(&env) {
            self.again.push(token);
        }
        if conn.is_closed() {
            self.close(token);
        }
    }

    /// Closes connections past their deadline.
    fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (token, conn) in &mut self.conns {
            conn.check_deadline(now);
            if conn.is_closed() {
                expired.push(*token);
            }
        }
        for token in expired {
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(conn.socket());
        }
    }

    /// Accepts until the queue is empty (mio is edge-triggered); admitted
    /// connections are driven this turn, in case they spoke first.
    fn accept_all(&mut self, ready: &mut Vec<Token>) {
        self.retry_accept_at = None;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    self.backing_off = false;
                    if let Some(token) = self.admit(stream) {
                        ready.push(token);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if is_resource_exhaustion(&err) => {
                    if !self.backing_off {
                        tracing::warn!(%err, "cannot accept: out of resources; backing off");
                        self.backing_off = true;
                    }
                    self.retry_accept_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => tracing::debug!(%err, "accept failed"),
            }
        }
    }

    /// Registers a connection if there is room, or refuses it.
    fn admit(&mut self, mut stream: TcpStream) -> Option<Token> {
        if self.conns.len() >= self.config.max_connections {
            self.refuse(stream, "too many connections");
            return None;
        }
        let _ = stream.set_nodelay(true);
        let token = Token(self.next_token);
        // Readable and writable at once: edge-triggered, so a connection is
        // told when its input arrives and when a backed-up output drains.
        if let Err(err) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%err, "could not register a connection");
            self.refuse(stream, "cannot register the connection");
            return None;
        }
        self.next_token += 1;
        self.total += 1;
        self.conns
            .insert(token, Conn::new(stream, token, self.config));
        Some(token)
    }

    /// Tells a client it cannot be served now, and closes. The socket is
    /// fresh, so its send buffer takes the line at once.
    fn refuse(&mut self, mut stream: TcpStream, why: &str) {
        self.refused += 1;
        let _ = writeln!(stream, "ERR busy {why}");
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }

    /// Stops accepting; from now on jobs read are refused, and the loop ends
    /// once every connection is quiet or the grace period is over.
    fn begin_shutdown(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            // Connections the kernel completed but the loop had not accepted
            // (it may have been running a job itself).
            refuse_unaccepted(&listener);
        }
        self.retry_accept_at = None;
        let busy = self.conns.values().filter(|c| !c.is_quiet()).count();
        tracing::info!(
            open = self.conns.len(),
            in_flight = busy,
            grace = ?self.config.grace,
            "shutting down"
        );
        let signalled = self.shutdown.triggered_at().unwrap_or_else(Instant::now);
        self.grace_ends = Some(signalled + self.config.grace);
    }
}

#[cfg(test)]
mod tests;
