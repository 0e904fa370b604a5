//! `--metrics ADDR`: on a listener and thread of its own, so that a scrape
//! never competes with a client for a connection slot or the reactor:
//!
//! - `GET /metrics`: the metrics, in OpenMetrics (what Prometheus asks
//!   for, and what a scraper that asks for nothing gets) or, to a scraper
//!   that asks for `text/plain`, the classic Prometheus text format
//!   ([`classic`]);
//! - `GET /healthz`: 200 while the process runs (for a liveness probe);
//! - `GET /readyz`: 200 when it can do its work now (the broker reachable,
//!   the pool up, not stopping), else 503 and why (for a balancer's or a
//!   readiness probe).
//!
//! prometheus-client encodes; tiny_http serves. Each binary brings its own
//! collector (what it counts) and its own readiness; what is exposed, and
//! how an operator reads it, is in docs/operations.md.

pub mod classic;
pub mod encode;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use thiserror::Error;

/// The content type of the OpenMetrics text format, which
/// prometheus-client writes and Prometheus negotiates.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the classic Prometheus text format.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the process can do its work now: `Err` says why not.
pub type Readiness = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The metrics endpoint could not start.
///
/// A cause that is an error of its own is its [`source`], and not repeated
/// in the message: `{:#}` (how the binaries print an error) adds the chain
/// of sources, which would name it twice.
///
/// [`source`]: std::error::Error::source
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server or its thread could not start.
    #[error("cannot start the metrics endpoint on {addr}: {reason}")]
    Start {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The running endpoint; dropping it stops its thread.
pub struct MetricsEndpoint {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves `/metrics` from `collector` (every name
    /// after `prefix`, as `ysum` or `ysum_worker`), and `/healthz`
    /// and `/readyz` (from `ready`), on a thread named `ysum-metrics`
    /// (tiny_http adds its own for accepting and for each scrape's
    /// connection).
    ///
    /// # Errors
    ///
    /// [`MetricsError`] when the address cannot be bound or a thread cannot
    /// start.
    pub fn start(
        addr: SocketAddr,
        prefix: &str,
        collector: Box<dyn Collector>,
        ready: Readiness,
    ) -> Result<Self, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(|err| MetricsError::Start {
                addr,
                reason: err.to_string(),
            })?;
        let mut registry = Registry::with_prefix(prefix);
        registry.register_collector(collector);
        let thread = std::thread::Builder::new()
            .name("ysum-metrics".into())
            .spawn({
                let http = Arc::clone(&http);
                move || serve(&http, &registry, &ready)
            })
            .map_err(|err| MetricsError::Start {
                addr,
                reason: err.to_string(),
            })?;
        Ok(MetricsEndpoint {
            http,
            addr: bound,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port picked, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers requests until the endpoint is dropped: `GET /metrics` gets the
/// encoded registry in the format asked for, `/healthz` and `/readyz` their
/// answers, other paths 404, other methods 405.
fn serve(http: &tiny_http::Server, registry: &Registry, ready: &Readiness) {
    for request in http.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let accept = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Accept"))
            .map(|h| h.value.as_str().to_owned())
            .unwrap_or_default();
        let response = match (request.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, registry) {
                    Ok(()) if classic::wanted(&accept) => {
                        text(200, classic::from_openmetrics(&body)).with_header(header(CLASSIC))
                    }
                    Ok(()) => text(200, body).with_header(header(OPENMETRICS)),
                    Err(_) => text(500, "cannot encode the metrics\n".into()),
                }
            }
            (tiny_http::Method::Get, "/healthz") => text(200, "ok\n".into()),
            (tiny_http::Method::Get, "/readyz") => match ready() {
                Ok(()) => text(200, "ready\n".into()),
                Err(why) => text(503, format!("not ready: {why}\n")),
            },
            (tiny_http::Method::Get, _) => {
                text(404, "not found: try /metrics, /healthz or /readyz\n".into())
            }
            _ => text(405, "only GET\n".into()).with_header(header_named("Allow", "GET")),
        };
        if let Err(err) = request.respond(response) {
            tracing::debug!(%err, "a metrics scrape went away before its answer");
        }
    }
}

fn text(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(body).with_status_code(status)
}

fn header(content_type: &str) -> tiny_http::Header {
    header_named("Content-Type", content_type)
}

fn header_named(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("a constant, valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector with nothing to collect.
    #[derive(Debug)]
    struct Nothing;

    impl Collector for Nothing {
        fn encode(
            &self,
            _encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
        ) -> Result<(), std::fmt::Error> {
            Ok(())
        }
    }

    /// An address in use is told with its address and the OS error once,
    /// in the message and its chain of sources as `{:#}` joins them (the
    /// OS error used to be in both).
    #[test]
    fn an_address_in_use_names_its_cause_once() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("address");
        let err = MetricsEndpoint::start(addr, "ysum", Box::new(Nothing), Box::new(|| Ok(())))
            .expect_err("in use");
        let mut parts = vec![err.to_string()];
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            parts.push(cause.to_string());
            source = cause.source();
        }
        let chain = parts.join(": ");
        assert_eq!(parts.len(), 2, "{chain}");
        assert_eq!(parts[0], format!("cannot listen for metrics on {addr}"));
        assert_eq!(chain.matches(parts[1].as_str()).count(), 1, "{chain}");
    }
}
