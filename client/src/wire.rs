//! Speaking the protocol (`docs/protocol.md`) over TCP: one request on a
//! fresh connection in either dialect ([`fresh_exchange`]), or a persistent
//! line-dialect connection carrying many requests ([`LineConn`]).
//!
//! Every wait is bounded by a deadline and sliced (at most
//! [`SLICE`] at a time) so that Ctrl-C's grace is
//! kept: nothing here can block forever.
//!
//! Each connection ends with a check that the server sent nothing it was
//! not asked for: after its reply a fresh line-dialect connection is
//! half-closed and read to EOF, and a kept-alive one is ended by a request
//! whose reply no other request can have ([`LineConn::end`]). Any further
//! reply is an extra reply, which fails the run.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::interrupt::{Interrupt, SLICE};
use crate::job::{Check, Job};
use crate::outcome::Failure;

/// The longest reply accepted, in bytes; a longer one is a read failure.
pub const MAX_REPLY: usize = 4096;

/// How long a connection's end is waited for once every reply on it has
/// arrived: a server that sends more sends it at once.
pub const END_GRACE: Duration = Duration::from_millis(500);

/// The shortest socket timeout passed to the system (zero would mean
/// "none").
const MIN_WAIT: Duration = Duration::from_millis(1);

/// What a request on a fresh connection came to.
#[derive(Debug)]
pub struct Exchange {
    /// How long the connect took, if it succeeded.
    pub connect: Option<Duration>,
    /// The reply (without its terminator), or why there is none.
    pub reply: Result<String, Failure>,
    /// Replies the server sent on the connection that nobody asked for.
    pub extra: Extras,
}

/// Replies that came on a connection beyond those asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// How many (a trailing fragment without its newline counts as one).
    pub count: u64,
    /// The first of them, as received.
    pub first: Option<String>,
}

impl Extras {
    /// Notes one extra reply.
    fn add(&mut self, reply: &str) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(reply.to_owned());
        }
    }
}

/// Connects to `addr` within `timeout`, with Nagle's algorithm off.
///
/// # Errors
///
/// A [`Failure`] of kind `connect refused` or `connect`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect_timeout(&addr, timeout.max(MIN_WAIT))
        .map_err(|err| Failure::connect(&err))?;
    // Only a latency optimisation: a failure here changes no answer.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One request on a new connection, finished by `deadline`: `sumn` in the
/// seed dialect when it fits (send the bare number, read to EOF), any other
/// job in the line dialect (send one line, read one line, half-close, read
/// to EOF to catch extra replies).
pub fn fresh_exchange(
    addr: SocketAddr,
    job: &Job,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Exchange {
    let began = Instant::now();
    let stream = match connect(addr, deadline.saturating_duration_since(began)) {
        Ok(stream) => stream,
        Err(failure) => {
            return Exchange {
                connect: None,
                reply: Err(failure),
                extra: Extras::default(),
            }
        }
    };
    let connect = Some(began.elapsed());
    let mut extra = Extras::default();
    let reply = match job.seed() {
        Some(request) => seed_exchange(&stream, &request, deadline, interrupt),
        None => {
            let mut conn = LineConn::new(stream);
            conn.queue(&job.line());
            let reply = conn.flush(deadline).and_then(|()| {
                conn.read_line(deadline, interrupt)?
                    .ok_or_else(Failure::timeout)
            });
            if reply.is_ok() {
                extra = conn.drain_to_end(Instant::now() + END_GRACE, interrupt);
            }
            reply
        }
    };
    Exchange {
        connect,
        reply,
        extra,
    }
}

/// The original's exchange: send the decimal, read until the server closes.
fn seed_exchange(
    mut stream: &TcpStream,
    request: &str,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Result<String, Failure> {
    set_write_deadline(stream, deadline).map_err(|err| Failure::write(&err))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|err| Failure::write(&err))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let wait = next_wait(deadline, interrupt)?;
        let started = !reply.is_empty();
        stream
            .set_read_timeout(Some(wait))
            .map_err(|err| Failure::read(&err).after_reply_started(started))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if reply.len() > MAX_REPLY {
                    return Err(too_long());
                }
            }
            Err(err) if waits(&err) => {}
            Err(err) => return Err(Failure::read(&err).after_reply_started(started)),
        }
    }
    if reply.is_empty() {
        return Err(Failure::closed());
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// A line-dialect connection: requests are queued and flushed together,
/// replies read one line at a time, in order.
#[derive(Debug)]
pub struct LineConn {
    /// The socket.
    stream: TcpStream,
    /// Bytes received and not yet returned as lines.
    received: Vec<u8>,
    /// Requests queued and not yet sent.
    outgoing: Vec<u8>,
}

impl LineConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> LineConn {
        LineConn {
            stream,
            received: Vec::new(),
            outgoing: Vec::new(),
        }
    }

    /// Queues one request line (the `\n` is added); [`LineConn::flush`]
    /// sends it.
    pub fn queue(&mut self, line: &str) {
        self.outgoing.extend_from_slice(line.as_bytes());
        self.outgoing.push(b'\n');
    }

    /// Sends every queued request, within `deadline`.
    ///
    /// # Errors
    ///
    /// A write [`Failure`] (timeout, reset or write).
    pub fn flush(&mut self, deadline: Instant) -> Result<(), Failure> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        set_write_deadline(&self.stream, deadline).map_err(|err| Failure::write(&err))?;
        (&self.stream)
            .write_all(&self.outgoing)
            .map_err(|err| Failure::write(&err))?;
        self.outgoing.clear();
        Ok(())
    }

    /// Whether part of a reply has arrived (bytes without their newline
    /// yet): the request it answers is not sent again if the connection
    /// breaks now.
    pub fn reply_started(&self) -> bool {
        !self.received.is_empty()
    }

    /// The next reply line (without `\n` or `\r\n`), or `None` if none has
    /// arrived when `until` comes.
    ///
    /// # Errors
    ///
    /// A [`Failure`]: the server closed the connection, the read failed,
    /// the line grew longer than [`MAX_REPLY`], or Ctrl-C's grace ran out.
    pub fn read_line(
        &mut self,
        until: Instant,
        interrupt: &Interrupt,
    ) -> Result<Option<String>, Failure> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.received.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.received.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.received.len() > MAX_REPLY {
                return Err(too_long());
            }
            let wait = match next_wait(until, interrupt) {
                Ok(wait) => wait,
                Err(failure) if failure.kind == crate::outcome::IoKind::Timeout => return Ok(None),
                Err(failure) => return Err(failure),
            };
            let started = self.reply_started();
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(|err| Failure::read(&err).after_reply_started(started))?;
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return Err(Failure::closed().after_reply_started(started)),
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(err) if waits(&err) => {}
                Err(err) => return Err(Failure::read(&err).after_reply_started(started)),
            }
        }
    }

    /// Ends a kept-alive connection whose requests are all answered: sends
    /// `sentinel`, whose right reply no request of the run can have, and
    /// `quit` (which sumserver answers by closing), half-closes, and reads
    /// to EOF. One line is the sentinel's reply and every other line is an
    /// extra reply: a line before the sentinel's right answer (a duplicate
    /// of an earlier one) and anything after it. When no line is its right
    /// answer, the sentinel was answered otherwise (`ERR busy`, `ERR
    /// shutting-down`, a foreign server's `pong`), by the last line that
    /// came, and only the lines before that one are extra (but for the same
    /// line just before it: a foreign server's answer to `quit`).
    ///
    /// Nothing here is a failure of a request: a connection that breaks or
    /// goes silent just ends the check.
    pub fn end(mut self, sentinel: &Job, deadline: Instant, interrupt: &Interrupt) -> Extras {
        let mut extra = Extras::default();
        self.queue(&sentinel.line());
        // `quit` (no reply) asks for the sentinel's answer before the
        // server closes: a bare end of input would tell the server that the
        // client left, and it would withdraw the sentinel unanswered.
        self.queue("quit");
        if self.flush(deadline).is_err() {
            return extra;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut unmatched = Vec::new();
        loop {
            match self.read_line(deadline, interrupt) {
                Ok(Some(line)) if sentinel.check(&line) == Check::Right => break,
                Ok(Some(line)) => unmatched.push(line),
                // EOF or silence, and no right answer: the last line was the
                // sentinel's own reply; and a server that is not ysum's may
                // have answered `quit` the same way (`pong` to every line).
                Ok(None) | Err(_) => {
                    let last = unmatched.pop();
                    if last.is_some() && unmatched.last() == last.as_ref() {
                        unmatched.pop();
                    }
                    for line in &unmatched {
                        extra.add(line);
                    }
                    return extra;
                }
            }
        }
        for line in &unmatched {
            extra.add(line);
        }
        let rest = self.drain_to_end(Instant::now() + END_GRACE, interrupt);
        extra.count += rest.count;
        if extra.first.is_none() {
            extra.first = rest.first;
        }
        extra
    }

    /// Half-closes and reads until EOF (or `until`): every line that
    /// arrives, and a trailing fragment, is an extra reply.
    fn drain_to_end(&mut self, until: Instant, interrupt: &Interrupt) -> Extras {
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut extra = Extras::default();
        while let Ok(Some(line)) = self.read_line(until, interrupt) {
            extra.add(&line);
        }
        if !self.received.is_empty() {
            extra.add(&String::from_utf8_lossy(&self.received));
            self.received.clear();
        }
        extra
    }
}

/// Whether a read error only means "nothing yet".
fn waits(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The next wait before `deadline`, at most [`SLICE`]: a timeout failure
/// once the deadline has passed, an interrupted one once Ctrl-C's grace
/// is over.
fn next_wait(deadline: Instant, interrupt: &Interrupt) -> Result<Duration, Failure> {
    let now = Instant::now();
    if interrupt.past_cutoff(now) {
        return Err(Failure::interrupted());
    }
    let left = deadline.saturating_duration_since(now);
    if left.is_zero() {
        return Err(Failure::timeout());
    }
    Ok(left.clamp(MIN_WAIT, SLICE))
}

/// A reply longer than any the protocol sends.
fn too_long() -> Failure {
    Failure::new(
        crate::outcome::IoKind::Read,
        format!("reply longer than {MAX_REPLY} bytes"),
    )
    .after_reply_started(true)
}

/// Sets the socket's write timeout to the time left before `deadline`.
fn set_write_deadline(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    stream.set_write_timeout(Some(left.max(MIN_WAIT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Replies split across segments, `\r\n` endings and several replies in
    /// one segment are all read as lines, in order; a silent peer yields
    /// `None` when the wait ends, and EOF is a closed connection.
    #[test]
    fn lines_reassembled() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.write_all(b"31251").expect("write");
            thread::sleep(Duration::from_millis(20));
            stream.write_all(b"2500\r\ntrue\nok\n").expect("write");
            thread::sleep(Duration::from_millis(200));
        });
        let stream = connect(addr, Duration::from_secs(5)).expect("connect");
        let mut conn = LineConn::new(stream);
        let soon = || Instant::now() + Duration::from_secs(5);
        let go = Interrupt::new();
        assert_eq!(conn.read_line(soon(), &go), Ok(Some("312512500".into())));
        assert_eq!(conn.read_line(soon(), &go), Ok(Some("true".into())));
        assert_eq!(conn.read_line(soon(), &go), Ok(Some("ok".into())));
        let brief = Instant::now() + Duration::from_millis(10);
        assert_eq!(conn.read_line(brief, &go), Ok(None));
        let failure = conn.read_line(soon(), &go).expect_err("EOF");
        assert_eq!(failure.kind, crate::outcome::IoKind::Closed);
        peer.join().expect("peer");
    }

    /// A kept-alive connection's end finds a duplicate sent before the
    /// sentinel's reply and one sent after it; an honest peer has none.
    #[test]
    fn extra_replies_found_at_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peer = thread::spawn(move || {
            for dup in [true, false] {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let _ = stream.read_to_end(&mut request);
                assert_eq!(request, b"sumn 1\nquit\n");
                let reply: &[u8] = if dup { b"6\n1\n1\n" } else { b"1\n" };
                stream.write_all(reply).expect("write");
            }
        });
        let deadline = || Instant::now() + Duration::from_secs(5);
        let go = Interrupt::new();
        let conn = LineConn::new(connect(addr, Duration::from_secs(5)).expect("connect"));
        let extra = conn.end(&Job::Sumn(1), deadline(), &go);
        assert_eq!(extra.count, 2, "{extra:?}");
        assert_eq!(extra.first.as_deref(), Some("6"));
        let conn = LineConn::new(connect(addr, Duration::from_secs(5)).expect("connect"));
        assert_eq!(conn.end(&Job::Sumn(1), deadline(), &go), Extras::default());
        peer.join().expect("peer");
    }

    /// A sentinel answered with an error or a wrong word is answered all
    /// the same: that reply is not an extra one, while a duplicate before
    /// it still is (both used to count).
    #[test]
    fn a_sentinel_answered_otherwise_is_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let replies: [&[u8]; 4] = [
            b"ERR busy the queue is full\n",
            b"pong\n",
            b"ERR shutting-down the server is shutting down\n",
            b"6\nERR busy the queue is full\n",
        ];
        let peer = thread::spawn(move || {
            for reply in replies {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut request = Vec::new();
                let _ = stream.read_to_end(&mut request);
                assert_eq!(request, b"sumn 1\nquit\n");
                stream.write_all(reply).expect("write");
            }
        });
        let deadline = || Instant::now() + Duration::from_secs(5);
        let go = Interrupt::new();
        for _ in 0..3 {
            let conn = LineConn::new(connect(addr, Duration::from_secs(5)).expect("connect"));
            assert_eq!(conn.end(&Job::Sumn(1), deadline(), &go), Extras::default());
        }
        let conn = LineConn::new(connect(addr, Duration::from_secs(5)).expect("connect"));
        let extra = conn.end(&Job::Sumn(1), deadline(), &go);
        assert_eq!(extra.count, 1, "{extra:?}");
        assert_eq!(extra.first.as_deref(), Some("6"));
        peer.join().expect("peer");
    }
}
