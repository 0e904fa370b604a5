//! The settings `sumserver` runs with, as plain data. The binary's `cli`
//! module builds them from the command line; tests build them directly.

use std::net::SocketAddr;
use std::time::Duration;

use offload::{StrategyConfig, StrategyKind};

use crate::logging::LogFormat;

/// How the server does its network I/O (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoModel {
    /// One blocking thread per connection, which waits for its jobs.
    #[default]
    Threads,
    /// One mio reactor thread multiplexes every connection over
    /// non-blocking sockets and submits jobs without waiting for them.
    Events,
}

impl IoModel {
    /// The name as typed after `--io`.
    pub fn name(self) -> &'static str {
        match self {
            IoModel::Threads => "threads",
            IoModel::Events => "events",
        }
    }
}

impl std::fmt::Display for IoModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the server needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (the binary binds it; [`crate::run`] takes the bound
    /// listener).
    pub addr: SocketAddr,
    /// Threads per connection, or one event loop.
    pub io: IoModel,
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
    /// Every connection must start with a PROXY protocol header (v1 or v2),
    /// whose client address is the one logged (`--accept-proxy`).
    pub accept_proxy: bool,
    /// How log lines are written: text, or JSON lines.
    pub log_format: LogFormat,
    /// Where to serve `GET /metrics` for Prometheus; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// Whether requests may name the fault-injection jobs of a test build
    /// of offload. Only the test binary `sumserver-faults` sets it.
    pub hidden_jobs: bool,
}

impl Default for Config {
    /// The binary's defaults: 127.0.0.1:10000, threads, `inline`.
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000)),
            io: IoModel::Threads,
            strategy: StrategyConfig::new(StrategyKind::Inline),
            max_connections: 1024,
            read_timeout: Duration::from_secs(30),
            max_line: 1024,
            grace: Duration::from_secs(5),
            log_filter: "info".to_owned(),
            accept_proxy: false,
            log_format: LogFormat::Text,
            metrics: None,
            hidden_jobs: false,
        }
    }
}
