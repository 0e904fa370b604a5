//! Speaking the protocol (`docs/protocol.md`) over TCP: one request on a
//! fresh connection in either dialect ([`fresh_exchange`]), or a persistent
//! line-dialect connection carrying many requests ([`LineConn`]).
//!
//! Every wait is bounded by a deadline; nothing here can block forever.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::job::Job;
use crate::outcome::Failure;

/// The longest reply accepted, in bytes; a longer one is a read failure.
pub const MAX_REPLY: usize = 4096;

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
}

/// Connects to `addr` within `timeout`, with Nagle's algorithm off.
///
/// # Errors
///
/// A [`Failure`] of kind connect.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect_timeout(&addr, timeout.max(MIN_WAIT))
        .map_err(|err| Failure::connect(&err))?;
    // Only a latency optimisation: a failure here changes no answer.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One request on a new connection, finished by `deadline`: `sumn` in the
/// seed dialect (send the bare number, read to EOF), any other job in the
/// line dialect (send one line, read one line, close).
pub fn fresh_exchange(addr: SocketAddr, job: &Job, deadline: Instant) -> Exchange {
    let began = Instant::now();
    let stream = match connect(addr, deadline.saturating_duration_since(began)) {
        Ok(stream) => stream,
        Err(failure) => {
            return Exchange {
                connect: None,
                reply: Err(failure),
            }
        }
    };
    let connect = Some(began.elapsed());
    let reply = match job.seed() {
        Some(request) => seed_exchange(&stream, &request, deadline),
        None => {
            let mut conn = LineConn::new(stream);
            conn.queue(&job.line());
            conn.flush(deadline)
                .and_then(|()| conn.read_line(deadline)?.ok_or_else(Failure::timeout))
        }
    };
    Exchange { connect, reply }
}

/// The original's exchange: send the decimal, read until the server closes.
fn seed_exchange(
    mut stream: &TcpStream,
    request: &str,
    deadline: Instant,
) -> Result<String, Failure> {
    set_write_deadline(stream, deadline).map_err(|err| Failure::write(&err))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|err| Failure::write(&err))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        set_read_deadline(stream, deadline).map_err(|err| Failure::read(&err))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                if reply.len() > MAX_REPLY {
                    return Err(too_long());
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Failure::read(&err)),
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
    /// A write [`Failure`] (timeout, closed or write).
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

    /// The next reply line (without `\n` or `\r\n`), or `None` if none has
    /// arrived when `until` comes.
    ///
    /// # Errors
    ///
    /// A [`Failure`]: the server closed the connection, the read failed, or
    /// the line grew longer than [`MAX_REPLY`].
    pub fn read_line(&mut self, until: Instant) -> Result<Option<String>, Failure> {
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
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(MIN_WAIT)))
                .map_err(|err| Failure::read(&err))?;
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return Err(Failure::closed()),
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Err(Failure::read(&err)),
            }
        }
    }
}

/// A reply longer than any the protocol sends.
fn too_long() -> Failure {
    Failure::new(
        crate::outcome::IoKind::Read,
        format!("reply longer than {MAX_REPLY} bytes"),
    )
}

/// Sets the socket's read timeout to the time left before `deadline`; a
/// deadline already passed is a timeout.
fn set_read_deadline(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    stream.set_read_timeout(Some(time_left(deadline)?))
}

/// Sets the socket's write timeout to the time left before `deadline`.
fn set_write_deadline(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    stream.set_write_timeout(Some(time_left(deadline)?))
}

/// The time left before `deadline`, at least [`MIN_WAIT`]; a deadline
/// already passed is a timeout error.
fn time_left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    Ok(left.max(MIN_WAIT))
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
        assert_eq!(conn.read_line(soon()), Ok(Some("312512500".into())));
        assert_eq!(conn.read_line(soon()), Ok(Some("true".into())));
        assert_eq!(conn.read_line(soon()), Ok(Some("ok".into())));
        let brief = Instant::now() + Duration::from_millis(10);
        assert_eq!(conn.read_line(brief), Ok(None));
        let failure = conn.read_line(soon()).expect_err("EOF");
        assert_eq!(failure.kind, crate::outcome::IoKind::Closed);
        peer.join().expect("peer");
    }
}
