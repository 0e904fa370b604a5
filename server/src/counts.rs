//! The connection counters, one set for the whole server: both I/O models
//! update the same [`ConnectionCounts`], and both `stats` and `/metrics`
//! read it (through a [`ConnectionSnapshot`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Connection counters at one moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionSnapshot {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted and served since start.
    pub total: u64,
    /// Connections refused (over the limit, or no thread could be started).
    pub refused: u64,
}

/// The live connection counters, shared by the accept loop, the
/// connections and whoever reports them.
#[derive(Debug)]
pub struct ConnectionCounts {
    open: AtomicUsize,
    total: AtomicU64,
    refused: AtomicU64,
    started: Instant,
}

impl Default for ConnectionCounts {
    fn default() -> Self {
        ConnectionCounts::new()
    }
}

impl ConnectionCounts {
    /// Zero counters; the server's uptime counts from now.
    pub fn new() -> Self {
        ConnectionCounts {
            open: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// A connection was admitted: one more open, one more in the total.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` admitted connections were closed.
    pub fn closed(&self, count: usize) {
        self.open.fetch_sub(count, Ordering::Relaxed);
    }

    /// A connection was refused.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// How long the server has been up.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opened and closed connections move the gauge; totals only grow.
    #[test]
    fn counts_follow_connections() {
        let counts = ConnectionCounts::new();
        counts.opened();
        counts.opened();
        counts.refused();
        counts.closed(1);
        let now = counts.snapshot();
        assert_eq!((now.open, now.total, now.refused), (1, 2, 1));
        counts.closed(1);
        assert_eq!(counts.snapshot().open, 0);
    }
}
