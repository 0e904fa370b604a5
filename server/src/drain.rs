//! The bounded drain both I/O models use when they close a connection that
//! may still have unread input (after `too-long`, the seed dialect's reply):
//! closing a socket with unread data sends a reset, and a reset can make the
//! client's kernel drop the replies before they are read. So the server
//! sends its FIN first, then reads and discards what the client still sends,
//! for at most [`DRAIN_TIME`] and [`DRAIN_LIMIT`] bytes.

use std::time::Duration;

/// How long a connection closed after a reply keeps reading what the client
/// still sends, so that closing does not reset the connection.
pub(crate) const DRAIN_TIME: Duration = Duration::from_millis(100);

/// How much a connection closed after a reply reads and discards at most.
pub(crate) const DRAIN_LIMIT: usize = 1 << 20;
