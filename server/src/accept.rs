//! What both accept loops share: backing off when the process runs out of
//! descriptors, and the words for the connections still waiting in the
//! listener's queue when a shutdown begins.

use std::io::{self, Read, Write};
use std::net::Shutdown as SocketShutdown;
use std::time::Duration;

/// How long to wait before accepting again after the process ran out of
/// descriptors or memory.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts the connections still waiting in `listener`'s queue at a
/// shutdown only to tell them `ERR shutting-down`: closing the listener
/// would reset them without a word.
pub(crate) fn refuse_unaccepted(listener: &mio::net::TcpListener) {
    while let Ok((mut stream, _)) = listener.accept() {
        // What the client already sent is read first: closing a socket with
        // unread input resets it, and the reset can overtake the reply.
        let mut scratch = [0u8; 4096];
        let mut unread: usize = 64 * 1024;
        while let Ok(n @ 1..) = stream.read(&mut scratch) {
            unread = match unread.checked_sub(n) {
                Some(left) => left,
                None => break,
            };
        }
        let _ = writeln!(stream, "{}", crate::protocol::not_accepted());
        let _ = stream.shutdown(SocketShutdown::Write);
    }
}

/// Accept errors that mean "not now" rather than "this connection is bad".
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}
