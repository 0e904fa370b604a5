//! Jobs, and the strategies that decide where they run.
//!
//! This is the "yieldable thread" of `shared/seeds/004` in Rust: the code that
//! serves a connection builds a [`Job`] and hands it to a [`Strategy`], then
//! blocks until the [`Answer`] comes back. Where the work runs — on the calling
//! thread, under one global lock, in a pool of threads or in a pool of forked
//! processes — is the strategy's business alone, chosen by name at start-up.
//! An event loop, which must not block, uses [`Strategy::submit`] instead: the
//! job is handed over and a callback gets its result, exactly once.
//!
//! ```
//! use offload::{Job, Answer, Strategy, StrategyConfig, StrategyKind};
//!
//! let strategy = Strategy::start(&StrategyConfig::new(StrategyKind::Threads)).unwrap();
//! assert_eq!(strategy.apply(Job::Sumn(25_000)), Ok(Answer::Sum(312_512_500)));
//! ```
//!
//! # The host binary's duty
//!
//! A binary that may use the `procs` strategy calls
//! [`fork_server_main_if_requested`] first thing in `main`: the pool starts
//! its fork servers by running the binary's own executable, and that call is
//! where such a process becomes a fork server instead of the program.
//!
//! # Layout
//!
//! - [`job`]: the jobs (`sumn`, `prime`, `sleep`), their answers, and the
//!   yield points where a long job can be stopped.
//! - [`apply`]: [`Strategy`], built from a [`StrategyKind`] (`inline`,
//!   `exclusive`, `threads`, `procs`, `remote`), and its configuration.
//! - [`broker`]: the Redis side of `remote`, shared with `sumworker`: keys,
//!   the job and reply messages, connecting and reconnecting.
//! - [`error`]: what can go wrong when a strategy starts or runs a job.
//! - [`stats`]: counts and latency histograms that every strategy keeps.
//! - [`buckets`]: those latencies counted in fixed buckets, for Prometheus.

pub mod apply;
pub mod broker;
pub mod buckets;
pub mod error;
pub mod job;
pub mod stats;

pub use apply::fork_server_main_if_requested;
pub use apply::{Strategy, StrategyConfig, StrategyKind};
pub use error::{ApplyError, BusyReason, Exit, StartError};
pub use job::{Answer, Job, JobKind};
pub use stats::{StatsReader, StatsSnapshot};
