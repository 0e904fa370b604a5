//! End-to-end tests of `sumserver`: each test starts the real binary on
//! `127.0.0.1:0`, speaks raw bytes to it and kills it when done. Every
//! protocol scenario runs twice, as `<scenario>::threads` and
//! `<scenario>::events`, once per `--io` model (the `both_io!` macro).
//!
//! # Layout
//!
//! - `support`: how this suite starts a [`support::Server`] (`--io` and
//!   `--apply`), and the `both_io!` macro; the guard itself (start, signal,
//!   SIGKILL and reap on drop) and the line connection [`support::Conn`] are
//!   in `tests/common/server.rs`, shared with the reliability suite, and the
//!   `/proc` helpers in `tests/common/process.rs`.
//! - `smoke`: one smoke test per strategy: seed dialect, every line command,
//!   pipelining, a request written byte by byte, bad requests.
//! - `errors`: the error replies a client can provoke: `too-long`, `busy`,
//!   `timeout`.
//! - `lifecycle`: connection limits, idle timeouts, graceful shutdown on
//!   SIGTERM, and the 2009 Python client.
//! - `events`: what only `--io events` can show: the reactor never waits for
//!   a job under `threads` and `procs`, stalls under `inline`, keeps replies
//!   in order, and stops reading a client that does not read.
//! - `inline_below`: `--inline-below` runs tiny jobs on the caller, counted
//!   in `stats`, and still kills a heavy job's worker at its timeout.
//! - `pool`: the queue wait as a bound, `--queue-wait 0`, a killed fork
//!   server replaced, timeout kills logged as such and rate-limited.
//! - `stderr`: a broken or stuck stderr stops nothing.
//! - `quit`: `quit` after a pipeline loses no reply.
//! - `signals`: SIGHUP, a second signal, requests cut short by `--grace`.
//! - `logs`: `--log-format json` writes only JSON lines; the access log.
//! - `flags`: `--addr` host names, `--log-level`, colours, `--help`,
//!   `--workers 0`, no test-only job in the shipped binary.
//! - `procs`: what only the process pool can show: a worker killed mid-job,
//!   and the process tree going away with a SIGKILLed server.
//! - `proxy`: `--accept-proxy`: PROXY headers v1 and v2, and connections
//!   without one.
//! - `fairness`: jobs of closed connections withdrawn; a client on another
//!   address not starved by a crowd (`threads`, `procs`).
//!
//! Every socket read and every wait is bounded, so a broken server fails a
//! test instead of hanging it.

#[path = "../common/conn.rs"]
mod conn;
#[path = "../common/crowd.rs"]
mod crowd;
mod errors;
mod events;
mod fairness;
mod flags;
mod inline_below;
mod lifecycle;
mod logs;
mod pool;
#[path = "../common/process.rs"]
mod process;
mod procs;
mod proxy;
mod quit;
#[path = "../common/server.rs"]
mod server;
mod signals;
mod smoke;
mod stderr;
mod support;
