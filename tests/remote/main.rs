//! `sumserver --apply remote` with real `sumworker`s and a real
//! `redis-server`, each test on its own free loopback port (never 6379),
//! everything killed by pid when the test ends.
//!
//! Marked ignored, with the reason, where `redis-server` is not installed;
//! with `YSUM_REQUIRE_ENGINES=1` (CI) they run and fail instead.
//!
//! # Layout
//!
//! - `engines`: the [`engines::Redis`] and [`engines::Worker`] guards and
//!   [`engines::Queue`], queries on the stream and its pending list.
//! - `answers`: every job kind answers as the local strategies do, under
//!   both `--io` models and with `threads` and `procs` workers.
//! - `fairness`: a closed connection's jobs withdrawn; fair share by
//!   client address.
//! - `faults`: a worker SIGKILLed or SIGSTOPped mid-job, a job that kills
//!   every worker, no worker at all.
//! - `load`: requests from a few threads to servers in rotation, checked.
//! - `metrics`: `/metrics` shows the broker's view, as `stats` does.
//! - `outage`: the broker killed and restarted.
//! - `prometheus`: a real Prometheus scrapes a server and a worker with
//!   the shipped rules; the rules and dashboard name only real metrics.
//! - `clock`: a worker whose clock is 20 s off; expired entries answered.
//! - `security`: the password kept secret, refused credentials, keys
//!   confined to the prefix, deployments apart, forged jobs and replies.
//! - `acl`: the shipped ACL users (`deploy/redis/users.acl`).
//! - `tls`: a `rediss://` broker with a CA of the test's own.
//! - `rotation`: the password and the signing key rotated under load.
//! - `sentinel`: the broker behind Redis Sentinel: the primary killed, a
//!   planned failover.
//! - `shutdown`: the server and a worker stopped under load.
//! - `slots`: a worker reads no more jobs than it has free slots.
//! - `upgrade`: a job in a format a worker does not read is left for one
//!   that does; the rolling upgrade loses no request.
//! - `worker_promises`: sumworker's logging, stop and `stats` presence.

// Shared with the e2e tests; not every helper is used here.
#![allow(dead_code, unused_imports, unused_macros)]

mod acl;
mod answers;
mod clock;
#[path = "../common/conn.rs"]
mod conn;
#[path = "../common/crowd.rs"]
mod crowd;
mod engines;
mod fairness;
mod faults;
mod load;
mod metrics;
mod outage;
#[path = "../common/process.rs"]
mod process;
mod prometheus;
mod rotation;
mod security;
mod sentinel;
#[path = "../common/server.rs"]
mod server;
mod shutdown;
mod slots;
#[path = "../e2e/support.rs"]
mod support;
mod tls;
mod upgrade;
mod worker_promises;

use std::time::{Duration, Instant};

use support::{Conn, Io, Server};

/// Sends `line` and returns the reply with how long it took.
pub(crate) fn timed(conn: &mut Conn, line: &str) -> (String, Duration) {
    let started = Instant::now();
    let reply = conn.request(line);
    (reply, started.elapsed())
}

/// Starts a remote server on `redis` with `extra` flags.
pub(crate) fn remote_server(io: Io, redis: &engines::Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--broker", url.as_str()];
    args.extend_from_slice(extra);
    Server::start(io, "remote", &args)
}

/// Turns each scenario `fn name(io: Io)` into two tests, `name::threads`
/// and `name::events`, marked ignored (with the reason) where
/// redis-server is missing.
#[macro_export]
macro_rules! with_redis {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            /// The scenario with a thread per connection.
            #[test]
            #[cfg_attr(
                no_redis,
                ignore = "redis-server not installed: apt-get install -y redis-server"
            )]
            fn threads() {
                super::$name($crate::support::Io::Threads);
            }

            /// The scenario with one event loop.
            #[test]
            #[cfg_attr(
                no_redis,
                ignore = "redis-server not installed: apt-get install -y redis-server"
            )]
            fn events() {
                super::$name($crate::support::Io::Events);
            }
        }
    )+};
}

/// [`with_redis!`] for scenarios that also need libfaketime.
#[macro_export]
macro_rules! with_redis_and_faketime {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            /// The scenario with a thread per connection.
            #[test]
            #[cfg_attr(
                any(no_redis, no_faketime),
                ignore = "redis-server or libfaketime not installed: apt-get install -y redis-server faketime"
            )]
            fn threads() {
                super::$name($crate::support::Io::Threads);
            }

            /// The scenario with one event loop.
            #[test]
            #[cfg_attr(
                any(no_redis, no_faketime),
                ignore = "redis-server or libfaketime not installed: apt-get install -y redis-server faketime"
            )]
            fn events() {
                super::$name($crate::support::Io::Events);
            }
        }
    )+};
}

/// [`with_redis!`] for scenarios that need Redis Sentinel too.
#[macro_export]
macro_rules! with_sentinel {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            /// The scenario with a thread per connection.
            #[test]
            #[cfg_attr(
                any(no_redis, no_sentinel),
                ignore = "redis-server or redis-sentinel not installed: apt-get install -y redis-server redis-sentinel"
            )]
            fn threads() {
                super::$name($crate::support::Io::Threads);
            }

            /// The scenario with one event loop.
            #[test]
            #[cfg_attr(
                any(no_redis, no_sentinel),
                ignore = "redis-server or redis-sentinel not installed: apt-get install -y redis-server redis-sentinel"
            )]
            fn events() {
                super::$name($crate::support::Io::Events);
            }
        }
    )+};
}
