//! `--io events`: one thread, one mio poll, every connection.
//!
//! The reactor owns the listener, a [`Waker`] and a `Conn` per connection,
//! all with non-blocking sockets, and turns forever: poll; accept; drive each
//! connection whose socket is ready; file the job results that came back
//! (and drive their connections again, for up to `CHAIN_TIME`); write each
//! driven connection's replies in one go; close connections past their
//! deadline. A job goes to the strategy with
//! [`Strategy::submit`], whose callback sends the reply down a channel and
//! wakes the poll, so under `threads` and `procs` the loop never waits for a
//! job. Under `procs` the loop reads the workers' replies itself
//! ([`Strategy::take_completion_fd`]): the callbacks run on this thread, and
//! no thread stands between a worker and the loop. Under `inline` and `exclusive` the strategy runs the job inside
//! `submit`, on this thread: every other connection waits meanwhile. That
//! stall is what the experiment is about (the readings in the README's
//! "Readings"). With
//! `--inline-below`, a job predicted to run below the threshold runs inside
//! `submit` on this thread too (the rule's promise: never a longer one).
//!
//! Limits and shutdown mirror the threaded mode (`crate::threads`): over
//! `--max-connections` a client gets `ERR busy too many connections`; a
//! shutdown stops accepting at once (the signal shuts the listening socket,
//! even while the loop runs an `inline` job), answers the requests already
//! read within `--grace` and reads nothing more (a request counts as read
//! once the reactor has read it, so under `inline` one that waited in its
//! socket while the loop was stalled is not answered: its connection is
//! closed, and its client may send it again elsewhere), and closes each
//! connection once it has answered what it read. When the grace period
//! ends first, it stops the strategy, keeps turning for up to `CUT_TIME` so
//! that the jobs cut short are told `ERR shutting-down`, and closes every
//! connection.
//!
//! - `conn`: one connection's state and how it is driven.
//! - `output`: reply slots kept in request order, and the write buffer.
//! - `env`: what a connection is driven with, and a job's completion.
//! - `grace`: the watchdog that ends the grace period.
//! - `admit`: accepting connections, up to the limit.
//! - `state`: a connection's dialect, phase and ending.

mod admit;
mod conn;
mod doorbell;
mod env;
mod grace;
mod output;
mod state;

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use offload::Strategy;

use crate::config::Config;
use crate::counts::ConnectionCounts;
use crate::shutdown::{Shutdown, Stopped, CUT_TIME};
use conn::Conn;
use doorbell::Doorbell;
use env::{Completion, Env};
use grace::cut_short_after_grace;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// The strategy's results, when it lets the reactor read them.
const RESULTS: Token = Token(2);
/// Connection tokens count up from here and are never reused, so that a
/// late completion cannot reach a newer connection that took an old token.
const FIRST_CONNECTION: usize = 3;

/// How long a turn keeps filing the jobs completed while it drove the
/// connections, and driving those again, before it writes and polls: under
/// inline a pipeline of quick jobs gets its replies written together, and
/// no other connection waits more than this for the poll.
const CHAIN_TIME: Duration = Duration::from_millis(1);

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
    /// The connection counters `stats` and `/metrics` report.
    counts: &'a ConnectionCounts,
    /// When the accept loop may try again after running out of descriptors.
    retry_accept_at: Option<Instant>,
    backing_off: bool,
    /// Connections whose read budget ran out: driven again next turn.
    again: Vec<Token>,
    /// Connections driven this turn, whose output is written at its end.
    driven: Vec<Token>,
    /// Set when the reactor sees the shutdown: the end of the grace period.
    grace_ends: Option<Instant>,
    /// Set when the grace period is over: by then the requests cut short
    /// have been told so, and every connection is closed.
    cut_ends: Option<Instant>,
    /// Jobs the strategy cut short at the end of the grace period.
    cut_short: usize,
}

/// What every connection is handed while it is driven, kept apart from the
/// connections themselves so that both can be borrowed at once.
struct Link<'a> {
    strategy: &'a Strategy,
    config: &'a Config,
    completions: crossbeam_channel::Sender<Completion>,
    doorbell: Arc<Doorbell>,
    counts: &'a ConnectionCounts,
}

impl Link<'_> {
    fn env(&self, stopping: bool) -> Env<'_> {
        Env {
            strategy: self.strategy,
            config: self.config,
            stopping,
            completions: &self.completions,
            doorbell: &self.doorbell,
            counts: self.counts,
        }
    }
}

/// Serves `listener` with one reactor thread (the caller's) until `shutdown`
/// is triggered, then shuts down gracefully as [`crate::threads::run`] does;
/// `counts` is kept up to date all along.
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
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    // One waker per poll: it serves both the shutdown signal and the
    // completions.
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    if let Some(results) = strategy.take_completion_fd() {
        use std::os::fd::AsRawFd as _;
        poll.registry().register(
            &mut SourceFd(&results.as_raw_fd()),
            RESULTS,
            Interest::READABLE,
        )?;
    }
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
            doorbell: Arc::new(Doorbell::new(waker)),
            counts,
        },
        config,
        shutdown,
        counts,
        retry_accept_at: None,
        backing_off: false,
        again: Vec::new(),
        driven: Vec::new(),
        grace_ends: None,
        cut_ends: None,
        cut_short: 0,
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
    counts.closed(reactor.conns.len());
    reactor.conns.clear();
    result.map(|()| Stopped {
        cut_short: reactor.cut_short,
    })
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
            let mut results = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept = true,
                    // A completion or the shutdown: both looked at below.
                    WAKER => {}
                    RESULTS => results = true,
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            conn.readiness(event.is_read_closed() || event.is_error());
                        }
                        ready.push(token);
                    }
                }
            }
            if results {
                // The callbacks run here ring the bell: no need, this
                // thread looks at the completions after the answer below.
                self.link.doorbell.hold();
                self.link.strategy.run_completions();
            }
            // Before any look at the completions: a ring from now on wakes
            // the next poll.
            self.link.doorbell.answer();
            if accept && self.listener.is_some() {
                self.accept_all(&mut ready);
            }
            self.file_completions(&mut ready);
            let turn = Instant::now();
            while !ready.is_empty() {
                ready.sort_unstable();
                ready.dedup();
                for token in ready.drain(..) {
                    self.drive(token);
                }
                // Jobs that completed meanwhile (at once, under inline and
                // exclusive) are filed and their connections driven again in
                // this turn, for a short while, so that their replies leave
                // together rather than one `write` per turn each.
                if turn.elapsed() >= CHAIN_TIME {
                    break;
                }
                self.file_completions(&mut ready);
            }
            self.flush_driven();
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + TICK;
                self.sweep(now);
            }
            if let Some(grace_ends) = self.grace_ends {
                // Every connection closes by itself once it has answered
                // what it read (and its FIN's brief drain is over).
                if self.conns.is_empty() {
                    return Ok(());
                }
                let busy = self.conns.values().filter(|c| !c.is_quiet()).count();
                match self.cut_ends {
                    None if now >= grace_ends => {
                        tracing::warn!(
                            unfinished = busy,
                            "grace period over; cutting the remaining requests short"
                        );
                        // The jobs still running or queued end with
                        // `ShuttingDown`; their replies, `ERR
                        // shutting-down`, are written before the close.
                        self.link.strategy.shutdown();
                        self.cut_ends = Some(now + CUT_TIME);
                    }
                    Some(cut_ends) if now >= cut_ends => {
                        // Jobs that did not even answer that in time.
                        self.cut_short += self.conns.values().map(Conn::jobs).sum::<usize>();
                        return Ok(());
                    }
                    _ => {}
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

    /// Files the replies of the jobs completed since the last look, and
    /// adds their connections to `ready`.
    fn file_completions(&mut self, ready: &mut Vec<Token>) {
        for Completion {
            token,
            seq,
            reply,
            cut,
        } in self.finished.try_iter()
        {
            self.cut_short += usize::from(cut);
            // A connection that closed meanwhile no longer wants it.
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.complete(seq, reply);
                ready.push(token);
            }
        }
    }

    /// Drives one connection, and drops it if it is finished. What it made
    /// ready to write waits for [`Reactor::flush_driven`], at the end of the
    /// turn.
    fn drive(&mut self, token: Token) {
        let env = self.link.env(self.grace_ends.is_some());
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.drive(&env) {
            self.again.push(token);
        }
        if conn.is_closed() {
            self.close(token);
        } else {
            self.driven.push(token);
        }
    }

    /// Writes what the connections driven this turn made ready: one write
    /// each, however many replies.
    fn flush_driven(&mut self) {
        let mut driven = std::mem::take(&mut self.driven);
        driven.sort_unstable();
        driven.dedup();
        for token in driven.drain(..) {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            conn.flush();
            if conn.is_closed() {
                self.close(token);
            }
        }
        // The allocation is kept for the next turn.
        self.driven = driven;
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
            self.counts.closed(1);
            // A connection that broke with a job running: nobody will read
            // its answer.
            if conn.jobs() > 0 {
                self.link.strategy.withdraw(conn.client());
            }
        }
    }

    /// Drops the listener (the signal has already shut it); from now on
    /// nothing more is read, each connection closes once it has answered
    /// what it read, and the loop ends once none is left or the grace
    /// period is over.
    fn begin_shutdown(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        // Idle connections have no event coming: drive each once, now.
        self.again.extend(self.conns.keys().copied());
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
