//! `sumserver`: a TCP compute server, CPU-heavy work handed to an
//! [`offload::Strategy`], connections served by one blocking thread each or
//! by one event loop ([`IoModel`]).
//!
//! [`run`] takes a bound listener, so that tests and scripts can bind port 0;
//! the binary (`src/main.rs`) parses the command line, starts the strategy
//! before any thread exists, binds, and wires SIGINT, SIGTERM and SIGHUP to a
//! [`Shutdown`].
//!
//! # Layout
//!
//! - [`config`]: the plain settings the server runs with.
//! - [`run`] (here): picks the I/O model, a folder per `--io` value:
//!   - [`threads`]: `--io threads`: the accept loop on mio, connection
//!     limits, graceful shutdown, a blocking thread per connection that
//!     reads requests, applies jobs and writes replies, in either dialect.
//!   - [`events`]: `--io events`: one mio loop for every connection, jobs
//!     submitted without waiting; its connections and their ordered output.
//!
//! What both models share, below them (they use it; it knows neither):
//!
//! - [`framing`]: cutting the byte stream into request lines under the limit.
//! - [`protocol`]: parsing requests and formatting replies, `ERR <code>
//!   <detail>` and `stats` included.
//! - [`counts`]: the connection counters, one set for both models, that
//!   `stats` and `/metrics` report.
//! - `accept`: backing off when out of descriptors.
//! - `access`: the access log, one `debug` line per request (target
//!   `access`).
//! - `drain`: the bounded drain before closing a connection with unread
//!   input.
//! - [`proxy_header`]: `--accept-proxy`, the PROXY protocol header a
//!   balancer puts before a connection's first request.
//! - [`shutdown`]: the [`Shutdown`] signal, and how a shutdown ended
//!   ([`Stopped`]).
//! - [`logging`]: log lines to stderr through a lossy queue, so that no
//!   thread ever blocks or dies on a log line (the `service` crate's, which
//!   sumworker shares).
//!
//! Beside them: [`metrics`], `--metrics ADDR`: `GET /metrics` for
//! Prometheus on a listener and thread of its own, from the same counters.

mod accept;
mod access;
pub mod config;
pub mod counts;
mod drain;
pub mod events;
pub mod framing;
pub mod metrics;
pub mod protocol;
pub mod proxy_header;
pub mod shutdown;
pub mod threads;

pub use config::{Config, IoModel};
pub use service::logging;
pub use shutdown::{Shutdown, Stopped};

use std::io;
use std::net::TcpListener;

use counts::ConnectionCounts;
use offload::Strategy;

/// Serves `listener` with the I/O model `config.io` names until `shutdown`
/// is triggered, then shuts down gracefully: the one place that chooses
/// between a thread per connection ([`threads::run`]) and the event loop
/// ([`events::run`]). Either model keeps `counts` up to date, so that
/// another thread (the metrics endpoint) can read them.
///
/// The strategy is borrowed: the caller drops it afterwards, which stops its
/// workers.
///
/// # Errors
///
/// Only failures of the poll itself; errors on one connection are logged and
/// survived.
///
/// # Returns
///
/// How the shutdown went: whether the grace period ran out and requests
/// were cut short (each told `ERR shutting-down`).
pub fn run(
    listener: TcpListener,
    config: &Config,
    strategy: &Strategy,
    shutdown: &Shutdown,
    counts: &ConnectionCounts,
) -> io::Result<Stopped> {
    // The signal stops the listening at once, whatever the I/O thread does.
    shutdown.stop_listening_on(listener.try_clone()?);
    match config.io {
        IoModel::Threads => threads::run(listener, config, strategy, shutdown, counts),
        IoModel::Events => events::run(listener, config, strategy, shutdown, counts),
    }
}
