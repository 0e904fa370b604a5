//! `--metrics ADDR`: what sumserver exposes on the shared endpoint
//! ([`service::MetricsEndpoint`]): [`ServerCollector`], read at each scrape
//! from the same counters as `stats`. docs/operations.md lists them.

mod collector;

pub use collector::ServerCollector;
pub use service::metrics::{MetricsEndpoint, MetricsError, Readiness};

use offload::StatsReader;

use crate::Shutdown;

/// `GET /readyz`: the server can serve now. Not while it shuts down (a
/// balancer should send it nothing more), nor while its pool has no worker
/// alive (`threads`, `procs`: the fork server is being replaced), nor,
/// under `remote`, while the broker is unreachable or refuses it.
pub fn readiness(stats: StatsReader, shutdown: Shutdown) -> Readiness {
    Box::new(move || {
        if shutdown.is_triggered() {
            return Err("shutting down".into());
        }
        let now = stats.snapshot();
        if now.workers.configured > 0 && now.workers.alive == 0 {
            return Err("no worker of the pool is alive".into());
        }
        match &now.remote {
            Some(remote) if !remote.connected => {
                Err(format!("the broker at {} is not reachable", remote.broker))
            }
            _ => Ok(()),
        }
    })
}
