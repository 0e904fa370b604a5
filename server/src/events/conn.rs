//! One connection as the reactor sees it: a non-blocking socket and the
//! state the connection thread keeps on its stack in the threaded mode —
//! the dialect, the read buffer, the replies in order, the read deadline —
//! driven forward whenever its socket is ready or one of its jobs completes.
//!
//! It answers exactly as `crate::threads`' connections does: the same framing, parsing
//! and reply text, one job at a time (later requests wait in the buffer, as
//! they wait in the socket while a connection thread is blocked on its job),
//! `ERR too-long` then close, and the seed dialect's single read of at most
//! 16 bytes, reply, FIN and brief drain.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::Token;
use offload::apply::Client;
use offload::{ApplyError, Job};

use super::env::{Completion, Env};
use super::output::{OutBuf, Replies, Seq};
use super::state::{Dialect, Ending, Got, Phase};
use crate::access;
use crate::config::Config;
use crate::drain::{DRAIN_LIMIT, DRAIN_TIME};
use crate::framing::{self, Frame};
use crate::protocol::{self, Request, SEED_READ};
use crate::proxy_header::{self, Progress};

/// Jobs one connection may have running at once. One, as in the threaded
/// mode, where a connection's thread waits for each job before it reads the
/// next request: a pipelining client gets its jobs run one after another and
/// cannot fill the strategy's queue alone. The reply slots would keep order
/// with more.
const JOBS_PER_CONNECTION: usize = 1;

/// Steps (a read, or a batch of requests answered) per turn before a
/// connection lets the others have the reactor: a client that pipelines
/// without pause must not starve the rest.
const STEP_BUDGET: usize = 4;

/// Requests answered per step.
const LINES_PER_STEP: usize = 16;

/// Bytes asked for per read in the line dialect.
const READ_CHUNK: usize = 4096;

/// One connection of the reactor.
#[derive(Debug)]
pub(super) struct Conn {
    socket: TcpStream,
    /// The client's address, for the access log.
    peer: Option<SocketAddr>,
    token: Token,
    dialect: Dialect,
    /// Bytes read and not yet parsed (line dialect).
    input: Vec<u8>,
    replies: Replies,
    out: OutBuf,
    /// Jobs submitted and not yet completed.
    jobs: usize,
    /// The connection is closed if it is still waiting for a request line
    /// (or for the client to read its replies) by then. Moved on by every
    /// request answered and every write that makes progress; not counted
    /// while a job runs, which has its own timeout.
    deadline: Instant,
    /// `--read-timeout`, which moves the deadline.
    read_timeout: Duration,
    phase: Phase,
    /// Its last read took less than it asked for, and no readiness has been
    /// reported since: the socket was empty then, and anything that came
    /// after brings an event. So the next read waits for that event, rather
    /// than pay a system call to meet `WouldBlock` (once per request, and on
    /// the path from a job's completion to its reply).
    drained: bool,
    /// The peer has shut its side (or the socket failed): every read is
    /// tried, since the end of input comes with no further event.
    read_closed: bool,
    /// Who its jobs are for: the address fair share counts, and a flag for
    /// when it goes away.
    client: Client,
}

impl Conn {
    /// A connection just accepted, registered under `token`.
    pub(super) fn new(socket: TcpStream, token: Token, config: &Config) -> Self {
        let peer = socket.peer_addr().ok();
        Conn {
            client: Client::new(peer.map(|addr| addr.ip())),
            peer,
            socket,
            token,
            dialect: if config.accept_proxy {
                Dialect::ProxyHeader
            } else {
                Dialect::Unknown
            },
            input: Vec::new(),
            replies: Replies::default(),
            out: OutBuf::default(),
            jobs: 0,
            deadline: Instant::now() + config.read_timeout,
            read_timeout: config.read_timeout,
            phase: Phase::Open,
            drained: false,
            read_closed: false,
        }
    }

    /// Its socket was reported ready; `closed` if the report says the peer
    /// has shut its side or the socket failed.
    pub(super) fn readiness(&mut self, closed: bool) {
        self.drained = false;
        self.read_closed |= closed;
    }

    /// The socket, to register and deregister.
    pub(super) fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether it is finished and can be dropped.
    pub(super) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Who its jobs are for.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Jobs submitted and not yet completed.
    pub(super) fn jobs(&self) -> usize {
        self.jobs
    }

    /// Whether it has no job running and no reply waiting to be written: a
    /// graceful shutdown waits for every connection to be quiet.
    pub(super) fn is_quiet(&self) -> bool {
        self.jobs == 0
            && self.replies.is_empty()
            && self.out.is_empty()
            && !self.has_complete_line()
    }

    /// Does everything that can be done now without blocking: answers the
    /// requests already read, writes, reads more. Returns true if it stopped
    /// only because its [`STEP_BUDGET`] ran out, so that the reactor gives it
    /// another turn soon (mio reports readiness only when it changes).
    ///
    /// The replies made ready are not written here, unless they back up or
    /// the connection ends: the reactor calls [`Conn::flush`] once at the end
    /// of its turn, so that a burst of replies costs one `sendto`.
    pub(super) fn drive(&mut self, env: &Env<'_>) -> bool {
        self.withdraw_if_gone(env);
        let mut budget_spent = true;
        for _ in 0..STEP_BUDGET {
            if self.out.is_backed_up() {
                // If this meets `WouldBlock`, `answer` and `may_read` stop
                // for the backpressure, and a writable event will come.
                self.flush();
            }
            let more_lines = self.answer(env);
            self.replies.move_ready(&mut self.out);
            match self.phase {
                Phase::Open if more_lines => {}
                // Shutting down: nothing more is read; once what was read is
                // answered, FIN and a brief drain, so that a request sent
                // meanwhile meets end of input rather than a reset.
                Phase::Open if env.stopping => {
                    if self.jobs > 0 || self.has_complete_line() {
                        budget_spent = false;
                        break;
                    }
                    self.phase = Phase::Finishing(Ending::Drain);
                }
                Phase::Open if self.may_read() => match self.read_some(env) {
                    Got::Data | Got::Ended => {}
                    Got::Blocked => {
                        budget_spent = false;
                        break;
                    }
                },
                Phase::Finishing(ending) if self.replies.is_empty() => {
                    self.flush();
                    if !self.out.is_empty() {
                        return false;
                    }
                    self.end(ending);
                }
                Phase::Draining { .. } => {
                    self.discard_input();
                    return false;
                }
                _ => {
                    budget_spent = false;
                    break;
                }
            }
        }
        budget_spent
    }

    /// A client of the line dialect that shut its side while a job of its
    /// runs, and sent no `quit` still to be answered, has gone: its job is
    /// withdrawn (its reply, `ERR cancelled`, is written if the connection
    /// still takes it). A seed client shuts its side to ask: not that.
    fn withdraw_if_gone(&self, env: &Env<'_>) {
        use std::os::fd::AsFd as _;
        if self.read_closed
            && self.jobs > 0
            && self.dialect == Dialect::Lines
            && !env.stopping
            && !self.client.is_gone()
            && !protocol::quit_waiting(self.socket.as_fd(), &self.input, env.config.max_line)
        {
            env.strategy.withdraw(&self.client);
        }
    }

    /// Files a job's reply in its slot.
    pub(super) fn complete(&mut self, seq: Seq, reply: String) {
        self.jobs = self.jobs.saturating_sub(1);
        self.deadline = Instant::now() + self.read_timeout;
        match self.dialect {
            Dialect::Seed => {
                self.replies.fill(seq, reply);
                self.phase = Phase::Finishing(Ending::Drain);
            }
            _ => {
                self.replies.fill(seq, reply + "\n");
            }
        }
    }

    /// Closes it if a deadline has passed: the read timeout (no request line,
    /// or replies unread, for that long) or the end of the drain.
    pub(super) fn check_deadline(&mut self, now: Instant) {
        match self.phase {
            Phase::Draining { until, .. } if now >= until => self.phase = Phase::Closed,
            Phase::Open | Phase::Finishing(_) if self.jobs == 0 && now >= self.deadline => {
                tracing::debug!(token = self.token.0, "read timeout; closing");
                self.phase = Phase::Closed;
            }
            _ => {}
        }
    }

    /// Whether reading more now could lead anywhere: not while a job runs
    /// (its successors wait, as in the threaded mode), nor while the client
    /// leaves its replies unread, nor ever again in the seed dialect.
    fn may_read(&self) -> bool {
        self.dialect != Dialect::Seed
            && !self.drained
            && self.jobs < JOBS_PER_CONNECTION
            && !self.out.is_backed_up()
            && !self.has_complete_line()
    }

    /// Whether a request line read earlier still waits for its answer: it
    /// is answered before anything more is read (an end of input read now
    /// would otherwise drop it), and a shutdown waits for it.
    fn has_complete_line(&self) -> bool {
        self.phase == Phase::Open && self.dialect == Dialect::Lines && self.input.contains(&b'\n')
    }

    /// One read.
    fn read_some(&mut self, env: &Env<'_>) -> Got {
        // The first read takes at most what the seed dialect allows, as a
        // connection thread's does; the line dialect then reads in chunks.
        let mut chunk = [0u8; READ_CHUNK];
        let want = match self.dialect {
            // Never past the header: the first read after it is the
            // dialect's.
            Dialect::ProxyHeader => match proxy_header::parse(&self.input) {
                Progress::Partial { more } => more.min(READ_CHUNK),
                _ => 1,
            },
            Dialect::Unknown => SEED_READ,
            _ => READ_CHUNK,
        };
        let n = match self.socket.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(err) if would_block(&err) => return Got::Blocked,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Got::Data,
            Err(err) => {
                tracing::debug!(%err, "connection ended");
                self.phase = Phase::Closed;
                return Got::Ended;
            }
        };
        if n == 0 {
            // The client is done sending; what is answered is written first.
            self.phase = Phase::Finishing(Ending::Close);
            return Got::Ended;
        }
        self.drained = n < want && !self.read_closed;
        let data = &chunk[..n];
        match self.dialect {
            Dialect::ProxyHeader => {
                self.input.extend_from_slice(data);
                self.proxy_header();
            }
            Dialect::Unknown if protocol::is_seed_dialect(data[0]) => {
                self.dialect = Dialect::Seed;
                let request = data.to_vec();
                self.seed(&request, env);
            }
            _ => {
                self.dialect = Dialect::Lines;
                self.input.extend_from_slice(data);
            }
        }
        Got::Data
    }

    /// `--accept-proxy`: once the header is whole, logs the client it names
    /// (the access log's peer from then on) and lets the first request be
    /// read; without a valid header, `ERR
    /// bad-request` and close.
    fn proxy_header(&mut self) {
        match proxy_header::parse(&self.input) {
            Progress::Complete { client } => {
                proxy_header::log_client(client, self.peer);
                // The access log names the client, not the balancer, and
                // fair share counts its address.
                self.peer = client.or(self.peer);
                self.client = Client::new(self.peer.map(|addr| addr.ip()));
                self.input.clear();
                self.dialect = Dialect::Unknown;
            }
            Progress::Partial { .. } => {}
            Progress::Invalid(reject) => {
                tracing::debug!(%reject, "refused a connection without a PROXY header");
                self.input.clear();
                self.replies.push_ready(format!("{reject}\n"));
                self.phase = Phase::Finishing(Ending::Drain);
            }
        }
    }

    /// The original's request: one number, one bare reply, close.
    fn seed(&mut self, request: &[u8], env: &Env<'_>) {
        let parsed = if request.len() == SEED_READ && self.more_digits_waiting() {
            Err(protocol::seed_too_long(request))
        } else {
            protocol::parse_seed(request)
        };
        match parsed {
            Ok(job) => self.start_job(job, env),
            Err(reject) => {
                let reply = reject.to_string();
                access::request(self.peer, "sumn", &reply, Duration::ZERO);
                self.replies.push_ready(reply);
                self.phase = Phase::Finishing(Ending::Drain);
            }
        }
    }

    /// Whether the byte after a full seed read is already here, and a digit.
    fn more_digits_waiting(&self) -> bool {
        let mut next = [0u8; 1];
        matches!(self.socket.peek(&mut next), Ok(1) if next[0].is_ascii_digit())
    }

    /// Answers the complete request lines read so far, in order, until one
    /// is a job (the rest wait for it), the replies back up, or
    /// [`LINES_PER_STEP`] are answered; returns true in that last case, when
    /// more may be waiting.
    fn answer(&mut self, env: &Env<'_>) -> bool {
        // The answered lines leave the buffer in one go: draining line by
        // line would move the rest of the buffer once per request.
        let mut consumed = 0;
        let more = self.answer_from(env, &mut consumed);
        self.input.drain(..consumed);
        more
    }

    /// [`Conn::answer`]'s loop, over the lines from `consumed` on.
    fn answer_from(&mut self, env: &Env<'_>, consumed: &mut usize) -> bool {
        for _ in 0..LINES_PER_STEP {
            if self.phase != Phase::Open
                || self.dialect != Dialect::Lines
                || self.jobs >= JOBS_PER_CONNECTION
                || self.out.is_backed_up()
            {
                return false;
            }
            let (request, used) =
                match framing::next_line(&self.input[*consumed..], env.config.max_line) {
                    Frame::Line { line, consumed } => (
                        protocol::parse_line_as(line, env.config.hidden_jobs),
                        consumed,
                    ),
                    Frame::Partial => return false,
                    Frame::TooLong => {
                        let reject = protocol::too_long(env.config.max_line).to_string();
                        access::request(self.peer, "invalid", &reject, Duration::ZERO);
                        self.replies.push_ready(format!("{reject}\n"));
                        self.phase = Phase::Finishing(Ending::Drain);
                        return false;
                    }
                };
            *consumed += used;
            self.deadline = Instant::now() + self.read_timeout;
            if !matches!(request, Ok(Request::Job(_))) {
                // Answered at once; a job is logged when its answer comes.
                let reply = request.as_ref().err().map(ToString::to_string);
                let reply = reply.as_deref().unwrap_or_default();
                access::request(self.peer, access::kind_of(&request), reply, Duration::ZERO);
            }
            match request {
                // Input may follow `quit`: FIN and drain, so that a reset
                // does not destroy the replies owed.
                Ok(Request::Quit) => self.phase = Phase::Finishing(Ending::Drain),
                Ok(Request::Ping) => self.replies.push_ready("pong\n".into()),
                Ok(Request::Stats) => {
                    let stats = protocol::stats_reply(
                        env.strategy.stats(),
                        env.counts.snapshot(),
                        env.counts.uptime(),
                    );
                    self.replies.push_ready(stats + "\n");
                }
                Ok(Request::Job(job)) => self.start_job(job, env),
                Err(reject) => self.replies.push_ready(format!("{reject}\n")),
            }
        }
        true
    }

    /// Submits `job` with a reply slot. A request read is run even when
    /// shutting down: its client cannot know whether it ran.
    fn start_job(&mut self, job: Job, env: &Env<'_>) {
        let kind = job.kind().name();
        let seq = self.replies.reserve();
        self.jobs += 1;
        let token = self.token;
        let completions = env.completions.clone();
        let doorbell = Arc::clone(env.doorbell);
        let (peer, began) = (self.peer, Instant::now());
        // Runs on whichever thread learns the result (this one, under inline
        // and exclusive). A failed send means the reactor is gone, and with
        // it anyone who wanted the reply.
        env.strategy.submit_for(job, &self.client, move |result| {
            let cut = matches!(result, Err(ApplyError::ShuttingDown { .. }));
            let reply = protocol::job_reply(&result);
            access::request(peer, kind, &reply, began.elapsed());
            let completion = Completion {
                token,
                seq,
                reply,
                cut,
            };
            if completions.send(completion).is_ok() {
                doorbell.ring();
            }
        });
    }

    /// Writes what is waiting; a failed write closes the connection.
    pub(super) fn flush(&mut self) {
        if self.out.is_empty() || self.phase == Phase::Closed {
            return;
        }
        match self.out.write_to(&mut self.socket) {
            Ok(0) => {}
            Ok(_) => {
                // Progress: a client that reads its replies is not idle.
                self.deadline = Instant::now() + self.read_timeout;
            }
            Err(err) => {
                tracing::debug!(%err, "connection ended while writing");
                self.phase = Phase::Closed;
            }
        }
    }

    /// Stops taking requests for good, once the replies are written.
    fn end(&mut self, ending: Ending) {
        match ending {
            Ending::Close => self.phase = Phase::Closed,
            Ending::Drain => {
                let _ = self.socket.shutdown(std::net::Shutdown::Write);
                self.phase = Phase::Draining {
                    until: Instant::now() + DRAIN_TIME,
                    drained: 0,
                };
            }
        }
    }

    /// Reads and discards what the client still sends, after our FIN.
    fn discard_input(&mut self) {
        let mut sink = [0u8; READ_CHUNK];
        while let Phase::Draining { until, drained } = self.phase {
            match self.socket.read(&mut sink) {
                Ok(0) => self.phase = Phase::Closed,
                Ok(n) if drained + n >= DRAIN_LIMIT => self.phase = Phase::Closed,
                Ok(n) => {
                    self.phase = Phase::Draining {
                        until,
                        drained: drained + n,
                    }
                }
                Err(err) if would_block(&err) => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.phase = Phase::Closed,
            }
        }
    }
}

fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}
