//! A line-dialect connection to the server under test, shared by both
//! suites (each includes this file as its `conn` module): requests are
//! lines, replies are lines.

#![allow(dead_code)] // Each suite uses part of it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::server::IO_TIMEOUT;

/// A line-dialect connection: requests are lines, replies are lines. The
/// plain methods panic when the server does not answer; the `try_` ones
/// say why instead, for the tests where that may happen.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Wraps a connected stream (timeouts already set).
    pub(crate) fn new(stream: TcpStream) -> Conn {
        Conn {
            reader: BufReader::new(stream),
        }
    }

    /// The socket.
    pub(crate) fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sets how long a reply may take.
    pub(crate) fn set_read_timeout(&mut self, within: Duration) {
        self.stream().set_read_timeout(Some(within)).unwrap();
    }

    /// Writes `bytes` as they are.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream().write_all(bytes)
    }

    /// Writes `text` as is (add the `\n` yourself).
    pub(crate) fn send(&mut self, text: &str) {
        self.try_send(text.as_bytes())
            .unwrap_or_else(|err| panic!("send {text:?}: {err}"));
    }

    /// Writes `text` one byte at a time, `pause` apart.
    pub(crate) fn send_slowly(&mut self, text: &str, pause: Duration) {
        for byte in text.as_bytes() {
            let mut stream = self.stream();
            stream.write_all(&[*byte]).expect("send one byte");
            stream.flush().expect("flush");
            thread::sleep(pause);
        }
    }

    /// Reads one reply line and returns it without its `\n`; an error on a
    /// timeout, on EOF, on a reset, or on a last line without `\n`.
    pub(crate) fn try_read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed; unterminated bytes {:?}",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        String::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads one reply line and returns it without its `\n`.
    ///
    /// # Panics
    ///
    /// On a timeout, on EOF, or on a last line without `\n`.
    pub(crate) fn read_line(&mut self) -> String {
        self.try_read_line()
            .unwrap_or_else(|err| panic!("no reply line within the read timeout: {err}"))
    }

    /// Sends `line` and `\n`, returns the reply line or why there is none.
    pub(crate) fn try_request(&mut self, line: &str) -> io::Result<String> {
        self.try_send(format!("{line}\n").as_bytes())?;
        self.try_read_line()
    }

    /// Sends `line` and `\n`, returns the reply line.
    ///
    /// # Panics
    ///
    /// If no reply line comes.
    pub(crate) fn request(&mut self, line: &str) -> String {
        self.try_request(line)
            .unwrap_or_else(|err| panic!("request {line:?}: no reply: {err}"))
    }

    /// Reads until the server closes the connection (EOF or reset) and
    /// returns what came first, as text (bytes that are not UTF-8 replaced).
    ///
    /// # Panics
    ///
    /// If the connection is still open after the read timeout.
    pub(crate) fn read_until_closed(&mut self) -> String {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(err) => panic!(
                "the connection is still open ({err}); got {:?}",
                String::from_utf8_lossy(&rest)
            ),
        }
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Whether the server sends something (or closes) within `within`,
    /// without consuming it.
    pub(crate) fn has_input_within(&mut self, within: Duration) -> bool {
        self.set_read_timeout(within);
        let ready = match self.reader.fill_buf() {
            Ok(_) => true,
            Err(err) => !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        self.set_read_timeout(IO_TIMEOUT);
        ready
    }
}
