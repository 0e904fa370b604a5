//! The adversarial suite of `sumserver`: worker chaos, runaway jobs,
//! overload, slow clients, bad input, panics, shutdown under load and
//! descriptor exhaustion, each against the real binary on loopback.
//!
//! Every case prints a `figures: …` line (run with `--nocapture` to see
//! them). `YSUM_SOAK=1` selects the long durations and counts, all set in
//! [`support::Scale`]; `scripts/soak` runs that in release and sums up.
//! The cases run one at a time ([`support::one_at_a_time`]), because each
//! loads the machine and measures latencies.
//!
//! # Layout
//!
//! - `support`: the one place that reads `YSUM_SOAK`, how this suite starts
//!   a [`support::Server`], counting load clients, exact answers, `/proc`
//!   readings. The guard itself and the line connection are shared with the
//!   end-to-end suite (`tests/common/server.rs`, `tests/common/conn.rs`).
//! - `chaos`: worker processes SIGKILLed under load.
//! - `runaway`: a job far over `--job-timeout` under every strategy.
//! - `overload`: 2000 connections over `--max-connections`; a full queue.
//! - `slow`: clients that send one byte a second, and idle ones.
//! - `bad_input`: parser properties, garbage over TCP, hostile clients.
//! - `panics`: panicking jobs among a load, under every strategy.
//! - `shutdown`: SIGTERM and SIGKILL of the server under load.
//! - `descriptors`: the server with `RLIMIT_NOFILE` 64 and 200 clients.

mod bad_input;
mod chaos;
#[path = "../common/conn.rs"]
mod conn;
mod descriptors;
mod overload;
mod panics;
#[path = "../common/prime.rs"]
mod prime;
#[path = "../common/process.rs"]
mod process;
mod runaway;
#[path = "../common/server.rs"]
mod server;
mod shutdown;
mod slow;
mod support;
