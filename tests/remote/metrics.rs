//! `/metrics` under `--apply remote`: the broker's view appears beside the
//! jobs, and agrees with the `remote` part of `stats`.

use crate::engines::{Redis, Worker};
use crate::remote_server;
use crate::support::{eventually, Io, IO_TIMEOUT};

/// The value of the sample line that starts with `name ` (no labels) or
/// `name{labels} `.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = rest.strip_prefix(' ')?;
            value.parse().ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in {body}"))
}

/// Jobs answered through a worker are counted as ok, the broker is up, the
/// worker is seen, nothing is pending once everything is answered, and the
/// figures are those `stats` gives.
fn broker_view(io: Io) {
    let redis = Redis::start();
    let _worker = Worker::start(&redis, "metrics-worker", &["--workers", "2"]);
    let server = remote_server(io, &redis, &["--metrics", "127.0.0.1:0"]);
    let mut conn = server.line_conn();
    for n in 1..=20u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    // The monitor reads the broker about once a second: wait for it to see
    // the worker with nothing pending.
    let mut body = String::new();
    let settled = eventually(IO_TIMEOUT, || {
        body = server.scrape();
        sample(&body, "ysum_remote_workers") >= 1.0 && sample(&body, "ysum_remote_pending") == 0.0
    });
    assert!(settled, "{body}");
    assert_eq!(
        sample(&body, "ysum_jobs_total{kind=\"sumn\",outcome=\"ok\"}"),
        20.0
    );
    assert_eq!(sample(&body, "ysum_remote_broker_up"), 1.0);
    assert_eq!(sample(&body, "ysum_remote_jobs_in_flight"), 0.0);
    assert!(
        body.contains("ysum_remote_worker_pending{worker=\"metrics-worker\"} 0"),
        "{body}"
    );
    let stats = server.stats();
    let remote = &stats["remote"];
    assert_eq!(remote["connected"], true, "{stats}");
    assert_eq!(
        sample(&body, "ysum_remote_redeliveries_total"),
        remote["redeliveries"].as_f64().expect("redeliveries"),
    );
    assert_eq!(
        sample(&body, "ysum_remote_workers"),
        remote["workers"].as_array().expect("workers").len() as f64,
    );
}

/// Under `--io threads`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn broker_view_threads() {
    broker_view(Io::Threads);
}

/// Under `--io events`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn broker_view_events() {
    broker_view(Io::Events);
}
