//! How the reactor takes new connections: accept until the queue is empty,
//! admit up to `--max-connections`, refuse the rest with `ERR busy`, and
//! back off when the process runs out of descriptors.

use std::io::{self, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::conn::Conn;
use super::Reactor;
use crate::accept::{is_resource_exhaustion, ACCEPT_BACKOFF};

impl Reactor<'_> {
    /// Accepts until the queue is empty (mio is edge-triggered); admitted
    /// connections are driven this turn, in case they spoke first.
    pub(super) fn accept_all(&mut self, ready: &mut Vec<Token>) {
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
                // The signal shut the listening socket (`EINVAL`).
                Err(_) if self.shutdown.is_triggered() => return,
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
        self.counts.opened();
        self.conns
            .insert(token, Conn::new(stream, token, self.config));
        Some(token)
    }

    /// Tells a client it cannot be served now, and closes. The socket is
    /// fresh, so its send buffer takes the line at once.
    fn refuse(&mut self, mut stream: TcpStream, why: &str) {
        self.counts.refused();
        let _ = writeln!(stream, "ERR busy {why}");
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}
