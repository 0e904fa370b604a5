//! End-to-end tests of `sumserver`: each test starts the real binary on
//! `127.0.0.1:0`, speaks raw bytes to it and kills it when done.
//!
//! # Layout
//!
//! - `support`: the [`support::Server`] guard (start, signal, SIGKILL and reap
//!   on drop), the line connection [`support::Conn`], and `/proc` helpers.
//! - `smoke`: one smoke test per strategy: seed dialect, every line command,
//!   pipelining, a request written byte by byte, bad requests.
//! - `errors`: the error replies a client can provoke: `too-long`, `busy`,
//!   `timeout`.
//! - `lifecycle`: connection limits, idle timeouts, graceful shutdown on
//!   SIGTERM, and the 2009 Python client.
//! - `procs`: what only the process pool can show: a worker killed mid-job,
//!   and the process tree going away with a SIGKILLed server.
//!
//! Every socket read and every wait is bounded, so a broken server fails a
//! test instead of hanging it.

mod errors;
mod lifecycle;
mod procs;
mod smoke;
mod support;
