//! What passes between the reactor and its connections: the environment a
//! connection is driven in, and a finished job on its way back.

use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Token;
use offload::Strategy;

use super::doorbell::Doorbell;
use super::output::Seq;
use crate::config::Config;
use crate::counts::ConnectionCounts;

/// A job's result, on its way back to the reactor.
#[derive(Debug)]
pub(super) struct Completion {
    /// The connection that asked.
    pub(super) token: Token,
    /// The reply slot it took.
    pub(super) seq: Seq,
    /// The reply line, without its terminator.
    pub(super) reply: String,
    /// Whether the strategy cut the job short (`ShuttingDown`): it was
    /// still running or queued when the grace period ran out.
    pub(super) cut: bool,
}

/// What a connection needs from the reactor while it is driven.
#[derive(Debug)]
pub(super) struct Env<'a> {
    /// Where jobs run.
    pub(super) strategy: &'a Strategy,
    /// The server's settings.
    pub(super) config: &'a Config,
    /// Whether the reactor has seen the shutdown signal: nothing more is
    /// read, and each connection closes once it has answered what it read.
    pub(super) stopping: bool,
    /// Where completions go; the reactor drains it every turn.
    pub(super) completions: &'a Sender<Completion>,
    /// Wakes the reactor's poll when a completion arrives from another
    /// thread.
    pub(super) doorbell: &'a Arc<Doorbell>,
    /// Connection counters and uptime, for `stats`.
    pub(super) counts: &'a ConnectionCounts,
}
