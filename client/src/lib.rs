//! `sumclient`: a threaded load generator that speaks the sumserver
//! protocol (`docs/protocol.md`) and nothing else, so it works against any
//! server that does.
//!
//! By default it repeats the original 2009 experiment: N threads share 1000
//! requests of `sumn 25000`, each on a new connection in the seed dialect,
//! and the first two lines of the report are the original's. Beyond that it
//! keeps connections alive and pipelines, mixes jobs by weight, runs for a
//! time or at a fixed rate (an open loop, with latency measured from each
//! request's due time so that a stall is not hidden), retries requests the
//! server never saw, verifies every answer and that no reply comes unasked,
//! accounts for every planned request, and reports percentiles from
//! HdrHistogram as text, JSON or a `.hgrm` file, overall, per job kind and
//! per target.
//!
//! [`run()`] makes one run from a plain [`Config`]; the binary (`src/main.rs`)
//! only reads the command line and prints.
//!
//! # Layout
//!
//! - [`config`]: the plain settings of a run.
//! - [`job`]: the requests, their wire forms, and checking answers.
//! - [`prime`]: the client's own primality test (Miller–Rabin).
//! - [`mix`]: weighted mixes of jobs and the picker that deals them out.
//! - [`schedule`]: when each request of a thread is due (closed or open
//!   loop).
//! - [`wire`]: one request on a fresh connection, or a kept-alive
//!   line-dialect connection.
//! - [`outcome`]: how a request ended; I/O failures by kind, and which of
//!   them may be retried.
//! - [`worker`]: one client thread's loop.
//! - [`run`](mod@run): starting the threads together and merging what they
//!   saw.
//! - [`tally`] and [`stats`]: counts and latency histograms.
//! - [`report`]: the result of a run and the figures derived from it.
//! - [`text`], [`json`], [`hgrm`], [`sweep`]: the report as text, as JSON,
//!   as an HdrHistogram percentile file, and the table of a sweep.
//! - [`history`]: `--history FILE`, every request as a line of JSON with
//!   its attempts and times.
//! - [`progress`]: the progress bar on stderr.
//! - [`interrupt`]: stopping a run early (Ctrl-C), with a grace for the
//!   requests in flight.

pub mod config;
pub mod hgrm;
pub mod history;
pub mod interrupt;
pub mod job;
pub mod json;
pub mod mix;
pub mod outcome;
pub mod prime;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod sweep;
pub mod tally;
pub mod text;
pub mod wire;
pub mod worker;

pub use config::{Amount, Config, Connection};
pub use interrupt::Interrupt;
pub use job::Job;
pub use mix::Mix;
pub use report::Report;
pub use run::{run, RunError};
