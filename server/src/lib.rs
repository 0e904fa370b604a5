//! `sumserver`: a TCP compute server, CPU-heavy work handed to an
//! [`offload::Strategy`], connections served by one blocking thread each or
//! by one event loop ([`IoModel`]).
//!
//! [`run`] takes a bound listener, so that tests and scripts can bind port 0;
//! the binary (`src/main.rs`) parses the command line, starts the strategy
//! before any thread exists, binds, and wires SIGINT/SIGTERM to a
//! [`Shutdown`].
//!
//! # Layout
//!
//! - [`config`]: the plain settings the server runs with.
//! - [`run`] (here): picks the I/O model.
//! - [`listener`]: `--io threads`: the accept loop on mio, connection limits,
//!   graceful shutdown, a thread per connection.
//! - [`connection`]: one connection's thread: reads requests, applies jobs,
//!   writes replies, in either dialect.
//! - [`reactor`]: `--io events`: one mio loop for every connection, jobs
//!   submitted without waiting; its connections and their ordered output.
//! - [`framing`]: cutting the byte stream into request lines under the limit.
//! - [`protocol`]: parsing requests and formatting replies, `ERR <code>
//!   <detail>` and `stats` included.
//! - [`shutdown`]: the [`Shutdown`] signal.

pub mod config;
pub mod connection;
pub mod framing;
pub mod listener;
pub mod protocol;
pub mod reactor;
pub mod shutdown;

pub use config::{Config, IoModel};
pub use shutdown::Shutdown;

use std::io;
use std::net::TcpListener;

use offload::Strategy;

/// Serves `listener` with the I/O model `config.io` names until `shutdown`
/// is triggered, then shuts down gracefully: the one place that chooses
/// between a thread per connection ([`listener::run`]) and the event loop
/// ([`reactor::run`]).
///
/// The strategy is borrowed: the caller drops it afterwards, which stops its
/// workers.
///
/// # Errors
///
/// Only failures of the poll itself; errors on one connection are logged and
/// survived.
pub fn run(
    listener: TcpListener,
    config: &Config,
    strategy: &Strategy,
    shutdown: &Shutdown,
) -> io::Result<()> {
    match config.io {
        IoModel::Threads => listener::run(listener, config, strategy, shutdown),
        IoModel::Events => reactor::run(listener, config, strategy, shutdown),
    }
}
