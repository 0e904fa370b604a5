//! `--metrics ADDR`: what sumserver exposes on the shared endpoint
//! ([`service::MetricsEndpoint`]): [`ServerCollector`], read at each scrape
//! from the same counters as `stats`. docs/operations.md lists them.

mod collector;

pub use collector::ServerCollector;
pub use service::metrics::{MetricsEndpoint, MetricsError};
