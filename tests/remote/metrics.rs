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
    // An info family's samples end in `_info` (OpenMetrics).
    let info = format!(
        "ysum_remote_worker_info{{worker=\"metrics-worker\",version=\"{}\",format=\"2\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(body.lines().any(|line| line == info), "{info} in {body}");
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

/// `sumworker --metrics`: its jobs by kind and outcome, its slots, the
/// broker and its clock as it sees them, leases renewed, what it is; it is
/// ready while it reads from the broker and not once the broker is gone,
/// though it stays alive.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn worker_metrics_and_readiness() {
    use crate::server::{http_get, scrape};

    let mut redis = Redis::start();
    let worker = Worker::start(
        &redis,
        "metered",
        &[
            "--workers",
            "3",
            "--lease",
            "400ms",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let addr = worker.metrics.expect("sumworker printed `metrics on ADDR`");
    let server = remote_server(Io::Threads, &redis, &[]);
    let mut conn = server.line_conn();
    for n in 1..=20u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    assert_eq!(conn.request("prime 7"), "true");
    // Runs over several renewals (a tick is a quarter of the lease).
    assert_eq!(conn.request("sleep 300"), "ok");

    let body = scrape(addr);
    assert_eq!(
        sample(
            &body,
            "ysum_worker_jobs_total{kind=\"sumn\",outcome=\"ok\"}"
        ),
        20.0
    );
    assert_eq!(
        sample(
            &body,
            "ysum_worker_jobs_total{kind=\"prime\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(sample(&body, "ysum_worker_slots"), 3.0);
    assert_eq!(sample(&body, "ysum_worker_slots_busy"), 0.0);
    assert_eq!(sample(&body, "ysum_worker_broker_up"), 1.0);
    assert!(
        sample(&body, "ysum_worker_leases_renewed_total") >= 1.0,
        "{body}"
    );
    assert!(
        sample(&body, "ysum_worker_clock_offset_seconds").abs() < 1.0,
        "{body}"
    );
    assert_eq!(sample(&body, "ysum_worker_entries_left_total"), 0.0);
    assert_eq!(
        sample(&body, "ysum_worker_entries_refused_total{why=\"forged\"}"),
        0.0
    );
    let info = body
        .lines()
        .find(|line| line.starts_with("ysum_worker_build_info{"))
        .unwrap_or_else(|| panic!("no build info in {body}"));
    for label in [
        "name=\"metered\"",
        "strategy=\"threads\"",
        "format=\"2\"",
        concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
    ] {
        assert!(info.contains(label), "{label} in {info}");
    }
    assert_eq!(http_get(addr, "/healthz", None).0, 200);
    let (status, _, why) = http_get(addr, "/readyz", None);
    assert_eq!((status, why.as_str()), (200, "ready\n"));

    // The broker gone: not ready (a balancer or Kubernetes stops counting
    // on it), but alive (nothing to restart).
    redis.kill();
    let mut answer = (0, String::new(), String::new());
    let unready = eventually(IO_TIMEOUT, || {
        answer = http_get(addr, "/readyz", None);
        answer.0 == 503
    });
    assert!(unready, "{answer:?}");
    assert!(answer.2.contains("broker"), "{answer:?}");
    assert_eq!(http_get(addr, "/healthz", None).0, 200);
    let body = scrape(addr);
    assert_eq!(sample(&body, "ysum_worker_broker_up"), 0.0);
    assert!(
        sample(&body, "ysum_worker_broker_errors_total") >= 1.0,
        "{body}"
    );
}

/// A scraper that asks for the classic text format gets it, with the same
/// figures as in OpenMetrics: counters with their `_total`, no `# EOF`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn classic_text_format_on_request() {
    use crate::server::http_get;

    let redis = Redis::start();
    let worker = Worker::start(&redis, "classic", &["--metrics", "127.0.0.1:0"]);
    let server = remote_server(Io::Events, &redis, &["--metrics", "127.0.0.1:0"]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 10"), "55");
    for addr in [server.metrics_addr(), worker.metrics.expect("metrics on")] {
        let (status, content_type, body) = http_get(
            addr,
            "/metrics",
            Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        );
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            !body.contains("# EOF") && !body.contains("# UNIT"),
            "{body}"
        );
        assert!(body.contains("# TYPE ysum_"), "{body}");
        let jobs = body
            .lines()
            .find(|line| line.contains("_jobs_total{kind=\"sumn\",outcome=\"ok\"}"))
            .unwrap_or_else(|| panic!("no sumn jobs in {body}"));
        assert!(jobs.ends_with(" 1"), "{jobs}");
        // What Prometheus sends: OpenMetrics first.
        let (_, content_type, body) = http_get(
            addr,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        );
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
