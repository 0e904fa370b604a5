//! The settings `sumserver` runs with, as plain data. The binary's `cli`
//! module builds them from the command line; tests build them directly.

use std::net::SocketAddr;
use std::time::Duration;

use offload::{StrategyConfig, StrategyKind};

/// Everything the server needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (the binary binds it; [`crate::run`] takes the bound
    /// listener).
    pub addr: SocketAddr,
    /// Which strategy runs the jobs, and its limits.
    pub strategy: StrategyConfig,
    /// Connections served at once; more are refused with `ERR busy`.
    pub max_connections: usize,
    /// How long a request line may take to arrive; an idle connection is
    /// closed after it. Also bounds each write to a client that stops reading.
    pub read_timeout: Duration,
    /// The longest request line, in bytes, terminator excluded.
    pub max_line: usize,
    /// How long a graceful shutdown lets requests in flight finish.
    pub grace: Duration,
    /// The tracing filter (`info`, `debug`, `server=debug,offload=info`...).
    pub log_filter: String,
}

impl Default for Config {
    /// The binary's defaults: 127.0.0.1:10000, `inline`.
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000)),
            strategy: StrategyConfig::new(StrategyKind::Inline),
            max_connections: 1024,
            read_timeout: Duration::from_secs(30),
            max_line: 1024,
            grace: Duration::from_secs(5),
            log_filter: "info".to_owned(),
        }
    }
}
