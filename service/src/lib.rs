//! What `sumserver` and `sumworker` both need to run as a service, in one
//! place, so that a fix lands in both at once.
//!
//! # Layout
//!
//! - [`broker_args`]: the broker's command-line options (`--broker`,
//!   `--broker-password-file`, `--broker-prefix`, `--broker-secret-file`,
//!   `--broker-ca-file`), flattened into each binary's `cli.rs` and turned
//!   into an [`offload::broker::BrokerConfig`], secrets read from their files.

pub mod broker_args;

pub use broker_args::{BrokerArgs, BrokerArgsError};
