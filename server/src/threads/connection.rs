//! One connection's thread: it reads requests, hands each job to the
//! strategy and blocks until the answer returns (the "yield" of the
//! original), then writes the reply. It never knows which strategy runs.

use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use offload::apply::Client;
use offload::{Job, Strategy};

use super::Connections;
use crate::access;
use crate::config::Config;
use crate::drain::{DRAIN_LIMIT, DRAIN_TIME};
use crate::framing::{self, Frame};
use crate::protocol::{self, Request, SEED_READ};
use crate::proxy_header::{self, Progress};
use crate::shutdown::Shutdown;

/// What every connection thread shares.
#[derive(Debug)]
pub(super) struct Context<'a> {
    /// Where jobs run.
    pub(super) strategy: &'a Strategy,
    /// The server's settings.
    pub(super) config: &'a Config,
    /// Raised when the server is shutting down.
    pub(super) shutdown: &'a Shutdown,
    /// Connection counters, for `stats`.
    pub(super) connections: &'a Connections<'a>,
    /// Requests read and not yet answered; a graceful shutdown waits for
    /// them.
    pub(super) in_flight: &'a AtomicUsize,
}

/// Counts one request in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn begin(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection until the client leaves, says `quit`, breaks a
/// limit, or the server shuts its socket.
pub(super) fn serve(stream: &TcpStream, ctx: &Context<'_>) {
    let peer = stream.peer_addr().ok();
    if let Err(err) = serve_dialects(stream, peer, ctx) {
        // A client that vanished or stalled is routine, not an error.
        tracing::debug!(%err, "connection ended");
    }
}

fn serve_dialects(
    stream: &TcpStream,
    peer: Option<SocketAddr>,
    ctx: &Context<'_>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(ctx.config.read_timeout))?;
    let deadline = Instant::now() + ctx.config.read_timeout;
    // Under --accept-proxy the access log names the client the header
    // names, not the balancer.
    let peer = match ctx.config.accept_proxy {
        true => match read_proxy_header(stream, deadline)? {
            Some(client) => client.or(peer),
            None => return Ok(()),
        },
        false => peer,
    };
    // The seed dialect is one read of at most 16 bytes, so the first read
    // takes no more than that in either dialect.
    let mut first = [0u8; SEED_READ];
    let n = read_by(stream, &mut first, deadline)?;
    if n == 0 {
        return Ok(());
    }
    // Who its jobs are for: the address fair share counts, and a flag for
    // when it goes away.
    let client = Client::new(peer.map(|addr| addr.ip()));
    if protocol::is_seed_dialect(first[0]) {
        return serve_seed(stream, &first[..n], peer, &client, ctx);
    }
    serve_lines(stream, first[..n].to_vec(), deadline, peer, &client, ctx)
}

/// `--accept-proxy`: reads the PROXY header, never a byte past it, and logs
/// the client it names. Returns that client (`Some(None)` for a header
/// without an address), or `None` when the connection is over: it ended
/// first, or sent no valid header and was told `ERR bad-request`.
fn read_proxy_header(
    mut stream: &TcpStream,
    deadline: Instant,
) -> io::Result<Option<Option<SocketAddr>>> {
    let mut header = Vec::new();
    loop {
        match proxy_header::parse(&header) {
            Progress::Complete { client } => {
                proxy_header::log_client(client, stream.peer_addr().ok());
                return Ok(Some(client));
            }
            Progress::Partial { more } => {
                let start = header.len();
                header.resize(start + more, 0);
                let n = read_by(stream, &mut header[start..], deadline)?;
                header.truncate(start + n);
                if n == 0 {
                    return Ok(None);
                }
            }
            Progress::Invalid(reject) => {
                tracing::debug!(%reject, "refused a connection without a PROXY header");
                writeln!(stream, "{reject}")?;
                close_after_reply(stream);
                return Ok(None);
            }
        }
    }
}

/// The original server: the reply is the bare sum, then close.
fn serve_seed(
    mut stream: &TcpStream,
    request: &[u8],
    peer: Option<SocketAddr>,
    client: &Client,
    ctx: &Context<'_>,
) -> io::Result<()> {
    let began = Instant::now();
    // The original read 16 bytes and ignored the rest, so a longer number
    // was silently cut: a wrong answer. Refuse it instead when its next
    // digit is already here.
    let parsed = if request.len() == SEED_READ && more_digits_waiting(stream) {
        Err(protocol::seed_too_long(request))
    } else {
        protocol::parse_seed(request)
    };
    let reply = match parsed {
        Ok(job) => {
            let _in_flight = InFlight::begin(ctx.in_flight);
            // The seed's client may shut its side once it has sent the
            // number (`nc -N`): that is how it asks, not a departure.
            protocol::job_reply(&ctx.strategy.apply_for(job, client, || true))
        }
        Err(reject) => reject.to_string(),
    };
    access::request(peer, "sumn", &reply, began.elapsed());
    stream.write_all(reply.as_bytes())?;
    close_after_reply(stream);
    Ok(())
}

/// Closes a connection that may still have unread input without losing the
/// reply just written: closing a socket with unread data sends a reset, and
/// a reset can make the client's kernel drop the reply before it is read. So
/// send our FIN first, then read and discard what the client sent, briefly.
fn close_after_reply(mut stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + DRAIN_TIME;
    let mut drained = 0;
    let mut sink = [0u8; 4096];
    while drained < DRAIN_LIMIT {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Whether the byte after a full seed read is already waiting, and a digit.
fn more_digits_waiting(stream: &TcpStream) -> bool {
    let mut next = [0u8; 1];
    let peeked = stream
        .set_nonblocking(true)
        .and_then(|()| stream.peek(&mut next));
    let _ = stream.set_nonblocking(false);
    matches!(peeked, Ok(1) if next[0].is_ascii_digit())
}

/// Runs a job that was read: even after the shutdown signal, a request read
/// is answered (by `ERR shutting-down` only when the grace period is over
/// and the strategy stops), since its client cannot know whether it ran.
/// While it runs, the connection is watched: a client that shuts its side
/// (and sent no `quit` that is still to be answered, among the lines read
/// after this one, `rest`, or still in the socket) has gone, and its job is
/// withdrawn.
fn run_job(
    job: Job,
    stream: &TcpStream,
    rest: &[u8],
    client: &Client,
    ctx: &Context<'_>,
) -> String {
    use std::os::fd::AsFd as _;
    // During a graceful stop the server shuts the read side itself, which
    // looks the same from here: a request read is answered then.
    let result = ctx.strategy.apply_for(job, client, || {
        ctx.shutdown.is_triggered()
            || !peer_has_shut(stream)
            || protocol::quit_waiting(stream.as_fd(), rest, ctx.config.max_line)
    });
    protocol::job_reply(&result)
}

/// Whether the client has shut its side of the connection (or it broke),
/// without reading from it: `poll` reports it even with input unread.
fn peer_has_shut(stream: &TcpStream) -> bool {
    use nix::libc;
    use std::os::fd::AsRawFd as _;
    // POLLRDHUP: Linux's "the peer shut its writing side", which nix's
    // flags do not name (and would not read back).
    let mut watched = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd that lives across the call, a zero timeout.
    let ready = unsafe { libc::poll(&mut watched, 1, 0) };
    ready == 1 && watched.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// The line dialect: requests are answered in order; replies to requests
/// that arrived together are written together. The first line must be
/// complete by `deadline`, the connection's: its first bytes buy no time.
fn serve_lines(
    stream: &TcpStream,
    mut pending: Vec<u8>,
    mut deadline: Instant,
    peer: Option<SocketAddr>,
    client: &Client,
    ctx: &Context<'_>,
) -> io::Result<()> {
    let max_line = ctx.config.max_line;
    let mut out = BufWriter::new(stream);
    let mut chunk = vec![0u8; 4096];
    loop {
        // Answer every complete line already here; their in-flight marks
        // last until the replies are flushed.
        let mut answered = Vec::new();
        let mut consumed = 0;
        loop {
            let began = Instant::now();
            let (line, used) = match framing::next_line(&pending[consumed..], max_line) {
                Frame::Line { line, consumed } => (line, consumed),
                Frame::Partial => break,
                Frame::TooLong => {
                    let reject = protocol::too_long(max_line).to_string();
                    access::request(peer, "invalid", &reject, began.elapsed());
                    return too_long(&mut out, max_line);
                }
            };
            consumed += used;
            let request = protocol::parse_line_as(line, ctx.config.hidden_jobs);
            let kind = access::kind_of(&request);
            match request {
                Ok(Request::Quit) => {
                    access::request(peer, kind, "", began.elapsed());
                    // Whatever the client sent after `quit` is unread:
                    // closing now would reset the connection and lose the
                    // replies above, so FIN and drain as after `too-long`.
                    out.flush()?;
                    close_after_reply(out.get_ref());
                    return Ok(());
                }
                Ok(Request::Ping) => {
                    access::request(peer, kind, "pong", began.elapsed());
                    out.write_all(b"pong\n")?;
                }
                Ok(Request::Stats) => {
                    access::request(peer, kind, "", began.elapsed());
                    out.write_all(stats_json(ctx).as_bytes())?;
                    out.write_all(b"\n")?;
                }
                Ok(Request::Job(job)) => {
                    answered.push(InFlight::begin(ctx.in_flight));
                    let reply = run_job(job, stream, &pending[consumed..], client, ctx);
                    access::request(peer, kind, &reply, began.elapsed());
                    out.write_all(reply.as_bytes())?;
                    out.write_all(b"\n")?;
                }
                Err(reject) => {
                    let reply = reject.to_string();
                    access::request(peer, kind, &reply, began.elapsed());
                    writeln!(out, "{reply}")?;
                }
            }
            deadline = Instant::now() + ctx.config.read_timeout;
        }
        pending.drain(..consumed);
        out.flush()?;
        drop(answered);
        if ctx.shutdown.is_triggered() {
            // Between requests: what was read is answered, nothing more is
            // read. FIN, then a brief drain, so that a request the client
            // sent meanwhile ends in end of input, not a reset that could
            // destroy the replies above; the client sends it again
            // elsewhere.
            close_after_reply(stream);
            return Ok(());
        }
        let n = read_by(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn too_long(out: &mut BufWriter<&TcpStream>, max_line: usize) -> io::Result<()> {
    writeln!(out, "{}", protocol::too_long(max_line))?;
    out.flush()?;
    close_after_reply(out.get_ref());
    Ok(())
}

/// One read that must complete by `deadline`; a timeout is an error that
/// ends the connection.
fn read_by(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "read timeout"));
    }
    // A zero timeout means "none" to the socket: never pass it.
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    loop {
        match stream.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The `stats` reply: the strategy's statistics with the server's own.
fn stats_json(ctx: &Context<'_>) -> String {
    protocol::stats_reply(
        ctx.strategy.stats(),
        ctx.connections.counts().snapshot(),
        ctx.connections.counts().uptime(),
    )
}
