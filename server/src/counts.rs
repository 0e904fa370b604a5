//! The connection counters `stats` reports, the same in both I/O models:
//! each model keeps its own tally and hands [`crate::protocol`] a
//! [`ConnectionSnapshot`].

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
