//! `sumserver`: a TCP compute server, one blocking thread per connection,
//! CPU-heavy work handed to an [`offload::Strategy`].
//!
//! [`run`] takes a bound listener, so that tests and scripts can bind port 0;
//! the binary (`src/main.rs`) parses the command line, starts the strategy
//! before any thread exists, binds, and wires SIGINT/SIGTERM to a
//! [`Shutdown`].
//!
//! # Layout
//!
//! - [`config`]: the plain settings the server runs with.
//! - [`listener`]: the accept loop on mio, connection limits, graceful
//!   shutdown; [`run`] lives here.
//! - [`connection`]: one connection's thread: reads requests, applies jobs,
//!   writes replies, in either dialect.
//! - [`protocol`]: parsing requests and writing `ERR <code> <detail>` replies.
//! - [`shutdown`]: the [`Shutdown`] signal.

pub mod config;
pub mod connection;
pub mod listener;
pub mod protocol;
pub mod shutdown;

pub use config::Config;
pub use listener::run;
pub use shutdown::Shutdown;
