//! `sumserver --metrics`: what sumclient sent, `stats` and `/metrics` agree,
//! and a real Prometheus parser (Python's `prometheus_client`, found by
//! `build.rs`) reads every family, under both `--io` models.

// Shared with the end-to-end suites, which use all of it.
#[allow(dead_code)]
#[path = "../../tests/common/http.rs"]
mod http;
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{run_client, Reaped, Server, DEADLINE};

/// The job mix sumclient sends: three kinds, so that labels matter.
const MIX: &str = "sumn:1000=60,prime:1009=30,sleep:1=10";

/// Requests sumclient sends in all.
const REQUESTS: u64 = 200;

/// Every family `/metrics` must have, with its type as the parser names it.
const FAMILIES: [(&str, &str); 17] = [
    ("ysum_server", "info"),
    ("ysum_jobs", "counter"),
    ("ysum_job_queue_wait_seconds", "histogram"),
    ("ysum_job_run_seconds", "histogram"),
    ("ysum_jobs_queued", "gauge"),
    ("ysum_jobs_running", "gauge"),
    ("ysum_workers_configured", "gauge"),
    ("ysum_workers_alive", "gauge"),
    ("ysum_workers_respawned", "counter"),
    ("ysum_workers_recycled", "counter"),
    ("ysum_workers_killed_timeout", "counter"),
    ("ysum_fork_server_restarts", "counter"),
    ("ysum_connections_open", "gauge"),
    ("ysum_connections", "counter"),
    ("ysum_connections_refused", "counter"),
    ("ysum_log_lines_dropped", "counter"),
    ("ysum_uptime_seconds", "gauge"),
];

/// Parses metrics text from stdin with the prometheus_client parser named
/// by the first argument (`prometheus_client.openmetrics.parser`, or
/// `prometheus_client.parser` for the classic format), which raises on
/// anything malformed, and prints every family as JSON.
const PARSER: &str = r#"
import importlib, json, sys
text_string_to_metric_families = importlib.import_module(sys.argv[1]).text_string_to_metric_families
families = [
    {"name": f.name, "type": f.type,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]
print(json.dumps(families))
"#;

/// One sample as the parser read it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// sumclient's jobs, `stats` and `/metrics` agree under `--io threads`.
#[cfg_attr(
    no_prometheus_parser,
    ignore = "no Prometheus parser: apt-get install -y python3-prometheus-client"
)]
#[test]
fn metrics_add_up_threads() {
    metrics_add_up("threads");
}

/// sumclient's jobs, `stats` and `/metrics` agree under `--io events`.
#[cfg_attr(
    no_prometheus_parser,
    ignore = "no Prometheus parser: apt-get install -y python3-prometheus-client"
)]
#[test]
fn metrics_add_up_events() {
    metrics_add_up("events");
}

/// Other paths and methods are refused, and the endpoint is its own
/// listener: the server's port does not speak HTTP.
#[test]
fn only_get_metrics() {
    let server = Server::start_with(&["--metrics", "127.0.0.1:0"]);
    let (status, _, _) = http::exchange(server.metrics_addr(), "GET /other HTTP/1.0\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = http::exchange(server.metrics_addr(), "POST /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, 405);
    assert_ne!(server.metrics_addr().to_string(), server.addr());
}

/// `/healthz` answers while the process runs; `/readyz` says whether it
/// can serve: not while its broker is unreachable (here, a port nobody
/// listens on), with the reason.
#[test]
fn health_and_readiness() {
    let ready = Server::start_with(&["--apply", "threads", "--metrics", "127.0.0.1:0"]);
    let (status, _, body) = http::exchange(ready.metrics_addr(), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = http::exchange(ready.metrics_addr(), "GET /readyz HTTP/1.0\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let unreachable = Server::start_with(&[
        "--apply",
        "remote",
        "--broker",
        "redis://127.0.0.1:1",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let (status, _, _) =
        http::exchange(unreachable.metrics_addr(), "GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    let (status, _, body) =
        http::exchange(unreachable.metrics_addr(), "GET /readyz HTTP/1.0\r\n\r\n");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: the broker at redis://127.0.0.1:1"),
        "{body}"
    );
}

fn metrics_add_up(io: &str) {
    let server = Server::start_with(&[
        "--io",
        io,
        "--apply",
        "threads",
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = server.addr();
    // A connection per request (no --keep-alive, which ends each kept
    // connection with a sentinel `sumn` of its own).
    let run = run_client(&[
        "4",
        "--addr",
        &addr,
        "--requests",
        &REQUESTS.to_string(),
        "--mix",
        MIX,
        "--json",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let report = run.json();
    let sent: BTreeMap<String, u64> = report["kinds"]
        .as_object()
        .expect("per-kind counts")
        .iter()
        .map(|(kind, v)| (kind.clone(), v["counts"]["ok"].as_u64().expect("ok")))
        .collect();
    assert_eq!(sent.values().sum::<u64>(), REQUESTS, "{sent:?}");

    let stats = stats(&addr);
    let (status, content_type, body) =
        http::exchange(server.metrics_addr(), "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let families = parse(&body);

    // The classic text format, to a scraper that asks for it: what
    // prometheus_client's classic parser reads, with the same samples.
    let (status, classic_type, classic) = http::exchange(
        server.metrics_addr(),
        "GET /metrics HTTP/1.0\r\nAccept: text/plain; version=0.0.4\r\n\r\n",
    );
    assert_eq!(status, 200, "{classic}");
    assert!(
        classic_type.starts_with("text/plain; version=0.0.4"),
        "{classic_type}"
    );
    let all_samples = |families: &BTreeMap<String, (String, Vec<Sample>)>| -> Vec<String> {
        let mut samples: Vec<String> = families
            .values()
            .flat_map(|(_, samples)| samples)
            .filter(|s| !s.name.starts_with("ysum_uptime"))
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect();
        samples.sort();
        samples
    };
    let classic_families = parse_with(&classic, "prometheus_client.parser");
    assert_eq!(all_samples(&classic_families), all_samples(&families));
    assert_eq!(
        classic_families.get("ysum_jobs").map(|(t, _)| t.as_str()),
        Some("counter"),
        "{classic}"
    );

    for (name, kind) in FAMILIES {
        assert_eq!(
            families.get(name).map(|(t, _)| t.as_str()),
            Some(kind),
            "family {name} in {body}"
        );
    }

    // Jobs: what sumclient sent, by kind, all ok; the same as `stats`.
    let jobs = &families["ysum_jobs"].1;
    for (kind, ok) in &sent {
        let count = |outcome: &str| {
            value(
                jobs,
                "ysum_jobs_total",
                &[("kind", kind), ("outcome", outcome)],
            )
        };
        assert_eq!(count("ok"), *ok as f64, "{kind}");
        for outcome in [
            "busy",
            "timeout",
            "worker_lost",
            "panicked",
            "shutting_down",
            "pool_down",
            "unavailable",
        ] {
            assert_eq!(count(outcome), 0.0, "{kind} {outcome}");
            assert_eq!(stats["jobs"][kind][outcome], 0, "{kind} {outcome}");
        }
        assert_eq!(stats["jobs"][kind]["ok"], *ok, "{kind}");
    }

    // Histograms: buckets cumulative, ending at the count, one per job.
    for family in ["ysum_job_queue_wait_seconds", "ysum_job_run_seconds"] {
        let samples = &families[family].1;
        for (kind, ok) in &sent {
            let mut buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket") && s.labels["kind"] == *kind)
                .map(|s| (le(&s.labels["le"]), s.value))
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(buckets.len(), 26, "{family} {kind}: 1 µs to 60 s and +Inf");
            assert_eq!(buckets[0].0, 1e-6);
            assert_eq!(buckets[24].0, 60.0);
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} {kind} not cumulative: {buckets:?}"
            );
            let count = value(samples, &format!("{family}_count"), &[("kind", kind)]);
            assert_eq!(buckets[25], (f64::INFINITY, count), "{family} {kind}");
            assert_eq!(count, *ok as f64, "{family} {kind}");
            let sum = value(samples, &format!("{family}_sum"), &[("kind", kind)]);
            assert!(
                sum >= 0.0 && sum < 60.0 * count,
                "{family} {kind} sum {sum}"
            );
        }
    }
    // sleep 1 runs at least 1 ms: its run time sits above the 500 µs bucket.
    let sleeps = &families["ysum_job_run_seconds"].1;
    let under_half_ms = value(
        sleeps,
        "ysum_job_run_seconds_bucket",
        &[("kind", "sleep"), ("le", "0.0005")],
    );
    assert_eq!(under_half_ms, 0.0, "a 1 ms sleep ran in under 0.5 ms");

    // Connections and workers: the same counters as `stats`.
    let single = |family: &str, sample: &str| value(&families[family].1, sample, &[]);
    let connections = &stats["connections"];
    assert_eq!(
        single("ysum_connections", "ysum_connections_total"),
        connections["total"].as_f64().expect("total")
    );
    assert_eq!(
        connections["total"],
        REQUESTS + 1,
        "a connection per request, and the one for stats"
    );
    assert_eq!(
        single("ysum_connections_refused", "ysum_connections_refused_total"),
        connections["refused"].as_f64().expect("refused")
    );
    assert_eq!(
        single("ysum_workers_alive", "ysum_workers_alive"),
        stats["workers"]["alive"].as_f64().expect("alive")
    );
    assert_eq!(
        single("ysum_workers_configured", "ysum_workers_configured"),
        2.0
    );
    assert_eq!(single("ysum_jobs_running", "ysum_jobs_running"), 0.0);
    let info = &families["ysum_server"].1[0];
    assert_eq!(info.labels["io"], io);
    assert_eq!(info.labels["strategy"], "threads");
}

/// `stats` over the line protocol, parsed.
fn stats(addr: &str) -> Value {
    let stream = TcpStream::connect(addr).expect("connect for stats");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    (&stream).write_all(b"stats\n").expect("send stats");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("read stats");
    serde_json::from_str(&line).unwrap_or_else(|err| panic!("stats {line:?}: {err}"))
}

/// Families by name: their type and samples, as prometheus_client read
/// them.
fn parse(body: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
    parse_with(body, "prometheus_client.openmetrics.parser")
}

/// [`parse`] with the parser of module `parser`.
fn parse_with(body: &str, parser: &str) -> BTreeMap<String, (String, Vec<Sample>)> {
    let python = option_env!("YSUM_PROMETHEUS_PYTHON").unwrap_or_else(|| {
        panic!(
            "no Python with prometheus_client (YSUM_REQUIRE_ENGINES=1 makes it \
             mandatory): apt-get install -y python3-prometheus-client, then \
             touch client/build.rs"
        )
    });
    let mut child = Command::new(python)
        .args(["-c", PARSER, parser])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the parser");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(body.as_bytes())
        .expect("feed the parser");
    let parser = Reaped(child);
    let output = wait_output(parser);
    assert!(
        output.status.success(),
        "prometheus_client refused /metrics: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Value = serde_json::from_slice(&output.stdout).expect("the parser's JSON");
    families
        .as_array()
        .expect("a list of families")
        .iter()
        .map(|family| {
            let samples = family["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| Sample {
                    name: s["name"].as_str().expect("name").to_owned(),
                    labels: serde_json::from_value(s["labels"].clone()).expect("labels"),
                    value: s["value"].as_f64().expect("value"),
                })
                .collect();
            (
                family["name"].as_str().expect("name").to_owned(),
                (family["type"].as_str().expect("type").to_owned(), samples),
            )
        })
        .collect()
}

/// The parser's output, waiting at most [`DEADLINE`] (killed on drop).
fn wait_output(mut parser: Reaped) -> std::process::Output {
    let mut stdout = parser.0.stdout.take().expect("piped");
    let mut stderr = parser.0.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut out = Vec::new();
    let _ = stdout.read_to_end(&mut out);
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = parser.0.try_wait().expect("wait for the parser") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the parser hangs");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out,
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    match found[..] {
        [one] => one.value,
        _ => panic!("{} samples {name}{labels:?} in {samples:?}", found.len()),
    }
}

/// A bucket bound as the parser gives it.
fn le(text: &str) -> f64 {
    if text == "+Inf" {
        f64::INFINITY
    } else {
        text.parse().unwrap_or_else(|_| panic!("le={text:?}"))
    }
}
