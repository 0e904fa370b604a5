//! The fleet as Prometheus sees it: a real Prometheus (Debian package
//! `prometheus`) scrapes a server and a worker, loads the shipped rules and
//! answers PromQL; and every metric the shipped rules and Grafana dashboard
//! name is one that a real server or worker exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::engines::{free_port, Redis, Worker};
use crate::remote_server;
use crate::server::{http_get, scrape};
use crate::support::{eventually, Io, Server};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A server and a worker on one Redis, with `--metrics`, after a few jobs
/// of every kind (so that every labelled family has samples).
struct Fleet {
    _redis: Redis,
    worker: Worker,
    server: Server,
}

impl Fleet {
    fn start() -> Fleet {
        let redis = Redis::start();
        let worker = Worker::start(&redis, "scraped", &["--metrics", "127.0.0.1:0"]);
        let server = remote_server(Io::Threads, &redis, &["--metrics", "127.0.0.1:0"]);
        let mut conn = server.line_conn();
        for (job, answer) in [("sumn 10", "55"), ("prime 7", "true"), ("sleep 1", "ok")] {
            assert_eq!(conn.request(job), answer);
        }
        // The worker's clock offset is measured at its first heartbeat.
        let measured = eventually(Duration::from_secs(5), || {
            scrape(worker.metrics.expect("metrics on")).contains("ysum_worker_clock_offset_seconds")
        });
        assert!(measured, "the worker never showed its clock offset");
        // The server lists the worker once its monitor has looked (about
        // once a second).
        let listed = eventually(Duration::from_secs(5), || {
            server.scrape().contains("ysum_remote_worker_info{")
        });
        assert!(listed, "the server never listed the worker");
        Fleet {
            _redis: redis,
            worker,
            server,
        }
    }

    fn worker_metrics(&self) -> std::net::SocketAddr {
        self.worker.metrics.expect("metrics on")
    }
}

/// Every sample name and family name in an OpenMetrics body.
fn names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

/// The `ysum_…` names a PromQL expression (or any text) mentions: every
/// run of name characters that holds `ysum_`; names with a `:` are
/// recording rules.
fn mentioned(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.contains("ysum_"))
        .map(str::to_owned)
        .collect()
}

/// The names the shipped rules record (`record: NAME`).
fn recorded(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- record: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Every query of the dashboard: its panels' `expr` and its variables'
/// `definition`.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(definition) = variable["definition"].as_str() {
            queries.push(definition.to_owned());
        }
    }
    queries
}

/// The rules (alerts, recording rules, even the annotations' hints) and the
/// dashboard name only metrics that a server or a worker really exports,
/// or recording rules the shipped rules define.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn shipped_queries_name_real_metrics() {
    let fleet = Fleet::start();
    let mut exported = names(&fleet.server.scrape());
    exported.extend(names(&scrape(fleet.worker_metrics())));
    assert!(exported.contains("ysum_jobs_total") && exported.contains("ysum_worker_slots"));

    let rules = std::fs::read_to_string(deploy().join("prometheus/rules.yml")).expect("rules.yml");
    let records = recorded(&rules);
    assert!(records.len() >= 4, "{records:?}");
    // Comments aside (they may speak of `ysum_` in general).
    let rule_text: String = rules
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/ysum-fleet.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());

    let mut checked = BTreeSet::new();
    let mut unknown = Vec::new();
    for (origin, text) in std::iter::once(("rules.yml".to_owned(), rule_text)).chain(
        queries
            .into_iter()
            .map(|q| ("ysum-fleet.json".to_owned(), q)),
    ) {
        for name in mentioned(&text) {
            let known = if name.contains(':') {
                records.contains(&name)
            } else {
                exported.contains(&name)
            };
            if !known {
                unknown.push(format!("{origin}: {name}"));
            }
            checked.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "not exported nor recorded: {unknown:#?}"
    );
    assert!(
        checked.len() >= 30,
        "only {} names checked: {checked:?}",
        checked.len()
    );
    // The check itself can fail.
    assert!(!exported.contains("ysum_no_such_metric"));
    assert_eq!(
        mentioned("rate(ysum_jobs_total[5m]) / kind:ysum_x:rate5m"),
        BTreeSet::from([
            "ysum_jobs_total".to_owned(),
            "kind:ysum_x:rate5m".to_owned()
        ])
    );
}

/// A running Prometheus, killed and reaped, its data removed, when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts one that scrapes `servers` and `workers` every second and
    /// evaluates the shipped rules every second; waits until it is ready.
    fn start(servers: &[String], workers: &[String]) -> Prometheus {
        let binary = option_env!("YSUM_PROMETHEUS").unwrap_or_else(|| {
            panic!(
                "prometheus is not installed (apt-get install -y prometheus), and \
                 YSUM_REQUIRE_ENGINES=1 makes the Prometheus tests mandatory"
            )
        });
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("ysum-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for Prometheus");
        let quoted = |targets: &[String]| {
            targets
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n\
             \x20 - job_name: sumserver\n    static_configs:\n      - targets: [{servers}]\n\
             \x20 - job_name: sumworker\n    static_configs:\n      - targets: [{workers}]\n",
            rules = deploy().join("prometheus/rules.yml").display(),
            servers = quoted(servers),
            workers = quoted(workers),
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("a log file"))
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Prometheus { child, port, dir };
        let ready = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_get(prometheus.addr(), "/-/ready", None).0 == 200
        });
        assert!(ready, "prometheus never got ready: {}", prometheus.log());
        prometheus
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The instant vector PromQL `query` gives now, as (labels, value).
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) =
            http_get(self.addr(), &format!("/api/v1/query?query={encoded}"), None);
        assert_eq!(status, 200, "{query}: {body}");
        let reply: Value = serde_json::from_str(&body).expect("Prometheus' JSON");
        reply["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .expect("a value")
                    .parse()
                    .expect("a number");
                (sample["metric"].clone(), value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prometheus scrapes a server and a worker (it negotiates OpenMetrics and
/// reads every family), evaluates the shipped rules, and answers PromQL
/// with the jobs the test sent.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
#[cfg_attr(
    no_prometheus,
    ignore = "prometheus not installed: apt-get install -y prometheus"
)]
fn prometheus_scrapes_server_and_worker() {
    let fleet = Fleet::start();
    let prometheus = Prometheus::start(
        &[fleet.server.metrics_addr().to_string()],
        &[fleet.worker_metrics().to_string()],
    );
    let mut conn = fleet.server.line_conn();
    for n in 1..=20u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    // The 10 and the 20 sumn, on both sides of the broker.
    let wanted = [
        ("sum(ysum_jobs_total{kind=\"sumn\",outcome=\"ok\"})", 21.0),
        (
            "sum(ysum_worker_jobs_total{kind=\"sumn\",outcome=\"ok\"})",
            21.0,
        ),
        ("sum(up{job=~\"sumserver|sumworker\"})", 2.0),
        ("count(ysum_worker_build_info{name=\"scraped\"})", 1.0),
        // A recording rule of the shipped rules, evaluated.
        ("ysum_worker_slots_busy:ratio", 0.0),
        // No alert of the shipped rules fires on a healthy fleet.
        ("count(ALERTS{alertstate=\"firing\"}) or vector(0)", 0.0),
    ];
    let mut last = Vec::new();
    let answered = eventually(Duration::from_secs(30), || {
        last = wanted
            .iter()
            .map(|(query, value)| (*query, prometheus.query(query), *value))
            .collect();
        last.iter()
            .all(|(_, got, value)| got.len() == 1 && got[0].1 == *value)
    });
    assert!(answered, "{last:#?}\n{}", prometheus.log());
}
