//! The states a reactor connection moves through: which dialect it speaks,
//! where it is in its life, how it ends, and what a read brought.

use std::time::Instant;

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Got {
    /// Bytes, now in the buffer (or handled, in the seed dialect).
    Data,
    /// Nothing now: wait for the socket to be readable again.
    Blocked,
    /// End of input, or an error that ended the connection.
    Ended,
}

/// Which protocol the connection speaks, known after its first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// `--accept-proxy`: the PROXY header comes first, read into `input`.
    ProxyHeader,
    /// Nothing read yet (after the PROXY header, if one is needed).
    Unknown,
    /// The 2009 original's: one number, one bare reply, close.
    Seed,
    /// Request lines, reply lines.
    Lines,
}

/// How a connection that takes no more requests ends once its replies are
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Just close (end of input: nothing unread can reset it).
    Close,
    /// Send FIN, then read and discard briefly, so that unread input does not
    /// turn the close into a reset that loses the replies (`quit`,
    /// `too-long`, the seed dialect).
    Drain,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reading requests and answering them.
    Open,
    /// No more requests: ends as said once every reply is written.
    Finishing(Ending),
    /// FIN sent: discarding input until EOF, the byte limit or `until`.
    Draining { until: Instant, drained: usize },
    /// Finished: the reactor drops it, which closes the socket.
    Closed,
}
