//! `sumserver` behind a real HAProxy, on loopback: each test starts its own
//! sumservers and its own `haproxy` (on free ports, with the shipped
//! `deploy/haproxy/sumserver.cfg`, its admin socket in a folder of its own)
//! and kills them by pid when done.
//!
//! Without haproxy these tests are ignored, with the reason (see
//! `server/build.rs`); with `YSUM_REQUIRE_ENGINES=1` (CI) they run, and
//! fail if it is missing.
//!
//! # Layout
//!
//! - `balancer`: the HAProxy guard, its admin socket and `show stat`.
//! - `fleet`: K sumservers behind one balancer; restart one on its port.
//! - `load`: `sumclient` runs through the balancer, read from its JSON.
//! - `config`: `haproxy -c` on the shipped config, both variants.
//! - `spread`: right answers under every strategy; how leastconn spreads.
//! - `failover`: a server SIGKILLed under load; a rolling restart.
//! - `drain`: `set server … state drain` on the admin socket.
//! - `proxy`: `--accept-proxy` with HAProxy's `send-proxy-v2`.
//! - `cluster_script`: `scripts/cluster` starts, serves and stops cleanly;
//!   supervises its members; with `--remote`, its Redis and sumworkers run
//!   the jobs; with `--sentinel`, a primary, a replica and three sentinels
//!   that fail over.

mod balancer;
mod cluster_script;
mod config;
#[path = "../common/conn.rs"]
mod conn;
mod drain;
// The remote tests' engines: only the paths of redis-server and sumworker
// are used here.
#[allow(dead_code)]
#[path = "../remote/engines.rs"]
mod engines;
mod failover;
mod fleet;
mod load;
#[path = "../common/process.rs"]
mod process;
mod proxy;
#[path = "../common/server.rs"]
mod server;
mod spread;
// The end-to-end tests' harness (the server guard, line connections); not
// every helper is used here.
#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../e2e/support.rs"]
mod support;

use std::sync::{Mutex, MutexGuard};

/// Runs the tests one at a time: each starts several processes and some put
/// the machine under load, which a neighbour would distort (and the
/// failover tests measure how soon HAProxy sees a server go).
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
