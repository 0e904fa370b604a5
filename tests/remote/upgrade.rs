//! Versions that check each other (docs/operations.md, "Upgrades"): a job
//! in a format a worker does not read is left for one that does, never
//! dropped nor answered wrong; and the documented rolling upgrade (workers
//! first, then servers) loses not one request.
//!
//! The older build is this one with `--newest-format 1` (a worker of the
//! release before format 2) and `--job-format 1` (a server writing what such
//! workers read).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::engines::{Redis, Worker};
use crate::load::{Connections, Load};
use crate::remote_server;
use crate::server::scrape;
use crate::support::{eventually, Io, Server, IO_TIMEOUT};

/// The value of the sample line `name value` in a metrics body.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in {body}"))
}

/// The `stats` entry of worker `name`, once the server lists it.
fn listed(server: &Server, name: &str) -> serde_json::Value {
    let mut found = serde_json::Value::Null;
    let seen = eventually(IO_TIMEOUT, || {
        let stats = server.stats();
        found = stats["remote"]["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["name"] == name && !w["format"].is_null())
            .cloned()
            .unwrap_or_default();
        !found.is_null()
    });
    assert!(seen, "the server never listed {name}");
    found
}

/// A server of the new format and, at first, only a worker of the old one:
/// the worker leaves the job (counted, logged once), and `stats` shows its
/// version and format. A worker that reads the format arrives and answers
/// it, right, within the job's deadline.
fn left_for_a_worker_that_reads_it(io: Io) {
    let redis = Redis::start();
    let old = Worker::start(
        &redis,
        "old",
        &[
            "--newest-format",
            "1",
            "--lease",
            "400ms",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let server = remote_server(io, &redis, &["--job-timeout", "20s"]);
    let old_entry = listed(&server, "old");
    assert_eq!(old_entry["format"], 1, "{old_entry}");
    assert_eq!(
        old_entry["version"],
        env!("CARGO_PKG_VERSION"),
        "{old_entry}"
    );

    let mut conn = server.line_conn();
    let asked = std::thread::spawn(move || conn.request("sumn 5"));
    let old_metrics = old.metrics.expect("metrics on");
    let left = eventually(IO_TIMEOUT, || {
        sample(&scrape(old_metrics), "ysum_worker_entries_left_total") >= 1.0
    });
    assert!(left, "{}", scrape(old_metrics));
    assert!(
        !asked.is_finished(),
        "answered with no worker that reads the job"
    );

    let new = Worker::start(&redis, "new", &[]);
    assert_eq!(asked.join().expect("the request"), "15");
    assert_eq!(listed(&server, "new")["format"], 2);
    let body = scrape(old_metrics);
    assert!(
        !body.contains("ysum_worker_jobs_total{kind=\"sumn\",outcome=\"ok\"} 1"),
        "the old worker ran it: {body}"
    );
    for why in ["malformed", "forged", "foreign_key"] {
        assert_eq!(
            sample(
                &body,
                &format!("ysum_worker_entries_refused_total{{why=\"{why}\"}}")
            ),
            0.0,
            "{why}"
        );
    }
    drop(new);
}

crate::with_redis!(left_for_a_worker_that_reads_it);

/// The order of docs/operations.md, under load from two servers: (0) the
/// old fleet, servers writing format 1, workers reading format 1 only; (1)
/// the workers replaced one by one by workers that read both; (2) the
/// servers replaced one by one by servers writing format 2. Not one request
/// fails, and nothing is left unread at any step.
fn rolling_upgrade(io: Io) {
    let redis = Redis::start();
    let old_args = ["--newest-format", "1", "--metrics", "127.0.0.1:0"];
    let mut workers = [
        Worker::start(&redis, "old-1", &old_args),
        Worker::start(&redis, "old-2", &old_args),
    ];
    let mut servers = [
        remote_server(io, &redis, &["--job-format", "1"]),
        remote_server(io, &redis, &["--job-format", "1"]),
    ];
    let load = Load::start(
        servers.iter().map(Server::addr).collect(),
        Connections::PerRequest,
    );
    std::thread::sleep(Duration::from_millis(300));

    for (index, worker) in workers.iter_mut().enumerate() {
        let fresh = Worker::start(
            &redis,
            &format!("new-{}", index + 1),
            &["--metrics", "127.0.0.1:0"],
        );
        worker.signal(Signal::SIGTERM);
        worker.wait_exit(IO_TIMEOUT);
        *worker = fresh;
        std::thread::sleep(Duration::from_millis(200));
    }
    for server in &mut servers {
        load.retire(server.addr());
        server.signal(Signal::SIGTERM);
        server.wait_exit(IO_TIMEOUT);
        *server = remote_server(io, &redis, &[]);
        load.admit(server.addr());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish();
    let (ok, failures) = (seen.ok, seen.failures());
    let mut left = 0.0;
    for worker in &workers {
        left += sample(
            &scrape(worker.metrics.expect("metrics on")),
            "ysum_worker_entries_left_total",
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        ok + failures.len() as u64
    );
    assert!(ok > 50, "only {ok} requests");
    assert_eq!(left, 0.0, "the new workers left entries they read");
    for name in ["new-1", "new-2"] {
        assert_eq!(listed(&servers[0], name)["format"], 2, "{name}");
    }
}

crate::with_redis!(rolling_upgrade);
