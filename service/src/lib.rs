//! What `sumserver` and `sumworker` both need to run as a service, in one
//! place, so that a fix lands in both at once.
//!
//! # Layout
//!
//! - [`address`]: `HOST:PORT` as the command lines read it.
//! - [`broker_args`]: the broker's command-line options (`--broker`,
//!   `--broker-password-file`, `--broker-prefix`, `--broker-secret-file`,
//!   `--broker-ca-file`), flattened into each binary's `cli.rs` and turned
//!   into an [`offload::broker::BrokerConfig`], secrets read from their files.
//! - [`log_args`]: `--log-level` and `--log-format`, checked as they are read.
//! - [`logging`]: log lines to stderr through a lossy queue, so that no
//!   thread ever blocks or dies on a log line; colour only on a terminal.
//! - [`signals`]: SIGINT, SIGTERM and SIGHUP blocked before any thread
//!   starts and waited for by one thread: the first stops gracefully, a
//!   second at once.
//! - [`metrics`]: `--metrics ADDR`, `GET /metrics` (OpenMetrics or the
//!   classic text format), `/healthz` and `/readyz` on a listener and thread
//!   of its own, from whatever collector and readiness the binary gives it.

pub mod address;
pub mod broker_args;
pub mod log_args;
pub mod logging;
pub mod metrics;
pub mod signals;

pub use broker_args::{BrokerArgs, BrokerArgsError};
pub use log_args::LogArgs;
pub use metrics::MetricsEndpoint;
pub use signals::StopSignals;
