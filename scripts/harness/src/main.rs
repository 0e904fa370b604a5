//! `ysum-bench`, the engine of `scripts/bench`: the 2009 experiment and two
//! more workloads, against every strategy, beside the floors of this machine.
//!
//! Run: `scripts/bench` (or `scripts/bench --quick`).

mod charts;
mod cli;
mod floors;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser as _;
use serde_json::{json, Value};

const STRATEGIES: [&str; 4] = ["inline", "exclusive", "threads", "procs"];
const SWEEP: &str = "1,2,4,8";

/// One workload: what sumclient is told to send.
struct Workload {
    name: &'static str,
    what: String,
    client_args: Vec<String>,
}

/// One point of a sweep.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Point {
    clients: u64,
    requests: u64,
    seconds: f64,
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("bench: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // Forked before any thread exists.
    let echo = floors::Echo::start()?;
    let args = cli::Args::parse();
    let started = Instant::now();
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("binary has no folder")?
            .to_owned(),
    };
    let (server_bin, client_bin) = (bin_dir.join("sumserver"), bin_dir.join("sumclient"));
    for bin in [&server_bin, &client_bin] {
        if !bin.exists() {
            bail!(
                "{} is missing: build it with cargo build --release -p server -p client",
                bin.display()
            );
        }
    }
    let out = match args.out {
        Some(out) => out,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            PathBuf::from(format!("results/run-{now}"))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    eprintln!("measuring the floors…");
    let socketpair_us = echo.measure()?;
    let tcp_us = floors::tcp_ping_pong_us()?;
    let python_us = floors::python_pool_apply_us();
    let heavy_n = floors::calibrate_sumn(&server_bin, Duration::from_millis(5))?;
    let heavy_ms_before = floors::server_sumn_ms(&server_bin, heavy_n)?;
    let seed_job_us = floors::server_sumn_ms(&server_bin, 25_000)? * 1000.0;

    let run_for = if args.quick { "500ms" } else { "3s" };
    let warmup = if args.quick { "200ms" } else { "500ms" };
    let timed = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--duration", run_for, "--warmup", warmup].map(String::from));
        v
    };
    let seed_requests = if args.quick { "200" } else { "1000" };
    let workloads = [
        Workload {
            name: "seed",
            what: format!("the 2009 experiment: {seed_requests} requests of sumn 25000, a new connection each (seed dialect)"),
            client_args: ["--requests", seed_requests, "--job", "sumn:25000"].map(String::from).to_vec(),
        },
        Workload {
            name: "heavy",
            what: format!("keep-alive, sumn {heavy_n} (about 5 ms here), {run_for} per point"),
            client_args: timed(&["--keep-alive", "--job", &format!("sumn:{heavy_n}")]),
        },
        Workload {
            name: "tiny",
            what: format!("keep-alive, sumn 1 (the server's own cost), {run_for} per point"),
            client_args: timed(&["--keep-alive", "--job", "sumn:1"]),
        },
    ];

    let mut results = Vec::new();
    for workload in &workloads {
        let mut by_strategy = Vec::new();
        for strategy in STRATEGIES {
            eprintln!("{} × {strategy}…", workload.name);
            let server_args = [
                "--workers",
                &cores.to_string(),
                "--queue-wait",
                "60s",
                "--queue",
                "1024",
            ]
            .map(String::from);
            // For the heavy workload the job is timed in the server just
            // before and after this strategy's sweep: the machine's speed
            // drifts, and each strategy is held to the limit of its own
            // minute.
            let job_ms_before = match workload.name {
                "heavy" => Some(floors::server_sumn_ms(&server_bin, heavy_n)?),
                _ => None,
            };
            let server = server::Server::start(&server_bin, strategy, &server_args)?;
            let output = Command::new(&client_bin)
                .args([
                    "--addr",
                    &server.addr.to_string(),
                    "--sweep",
                    SWEEP,
                    "--json",
                ])
                .args(&workload.client_args)
                .output()
                .context("cannot run sumclient")?;
            server
                .stop()
                .with_context(|| format!("stopping the {strategy} server"))?;
            let sweep: Value = serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "sumclient printed no JSON: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
            let points = points_of(&sweep)?;
            let job_ms = match job_ms_before {
                Some(before) => {
                    let after = floors::server_sumn_ms(&server_bin, heavy_n)?;
                    json!({ "before": before, "after": after, "best": before.min(after) })
                }
                None => Value::Null,
            };
            by_strategy.push(json!({
                "strategy": strategy,
                "points": points,
                "heavy_job_ms": job_ms,
                "sumclient": sweep,
            }));
        }
        results.push(
            json!({ "workload": workload.name, "what": workload.what, "strategies": by_strategy }),
        );
    }

    // The job is timed again after the runs: the machine's speed drifts, and
    // the limit takes the better of the two.
    let heavy_ms_after = floors::server_sumn_ms(&server_bin, heavy_n)?;
    let heavy_ms = heavy_ms_before.min(heavy_ms_after);
    let heavy_limit = cores as f64 * 1000.0 / heavy_ms;
    let machine = json!({
        "cores": cores,
        "cpu": cpu_model(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    });
    let floors = json!({
        "tcp_ping_pong_us": tcp_us,
        "socketpair_ping_pong_us": socketpair_us,
        "python_pool_apply_us": python_us,
        "sumn_25000_us": seed_job_us,
        "heavy_n": heavy_n,
        "heavy_job_ms": heavy_ms,
        "heavy_job_ms_before_runs": heavy_ms_before,
        "heavy_job_ms_after_runs": heavy_ms_after,
        "heavy_physical_limit_rps": heavy_limit,
    });
    let targets = targets(&results, cores, tcp_us, socketpair_us, heavy_ms)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let document = json!({
        "quick": args.quick,
        "elapsed_s": elapsed_s,
        "machine": machine,
        "floors": floors,
        "targets": targets,
        "workloads": results,
        "command": if args.quick { "scripts/bench --quick" } else { "scripts/bench" },
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&document)?,
    )?;
    draw_charts(&out, &document, heavy_limit)?;
    let markdown = markdown(&document)?;
    std::fs::write(out.join("results.md"), &markdown)?;
    println!("{markdown}");
    eprintln!("wrote {} in {elapsed_s:.0} s", out.display());
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The sweep's points, from sumclient's `--json`.
fn points_of(sweep: &Value) -> anyhow::Result<Vec<Point>> {
    let runs = sweep["runs"]
        .as_array()
        .context("sumclient's JSON has no runs")?;
    runs.iter()
        .map(|run| {
            let overall = &run["overall"];
            let number = |v: &Value, what: &str| {
                v.as_f64()
                    .with_context(|| format!("sumclient's run has no {what}: {run}"))
            };
            let counts = &overall["counts"];
            Ok(Point {
                clients: run["config"]["threads"]
                    .as_u64()
                    .context("no thread count")?,
                requests: run["total_requests"].as_u64().context("no request count")?,
                seconds: number(&run["elapsed_s"], "elapsed_s")?,
                throughput: number(&run["throughput"], "throughput")?,
                p50_us: number(&overall["latency_us"]["p50"], "p50")?,
                p99_us: number(&overall["latency_us"]["p99"], "p99")?,
                errors: counts["errors"].as_u64().unwrap_or(0)
                    + counts["wrong"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

fn points(results: &[Value], workload: &str, strategy: &str) -> anyhow::Result<Vec<Point>> {
    let entry = results
        .iter()
        .find(|w| w["workload"] == workload)
        .and_then(|w| {
            w["strategies"]
                .as_array()?
                .iter()
                .find(|s| s["strategy"] == strategy)
        })
        .with_context(|| format!("no results for {workload} × {strategy}"))?;
    Ok(serde_json::from_value(entry["points"].clone())?)
}

/// The targets, as ratios measured in this run.
fn targets(
    results: &[Value],
    cores: usize,
    tcp_us: f64,
    socketpair_us: f64,
    heavy_ms: f64,
) -> anyhow::Result<Value> {
    let mut heavy = serde_json::Map::new();
    for strategy in STRATEGIES {
        let entry = results
            .iter()
            .find(|w| w["workload"] == "heavy")
            .and_then(|w| {
                w["strategies"]
                    .as_array()?
                    .iter()
                    .find(|s| s["strategy"] == strategy)
            })
            .context("no heavy results")?;
        let job_ms = entry["heavy_job_ms"]["best"].as_f64().unwrap_or(heavy_ms);
        let worst = points(results, "heavy", strategy)?
            .iter()
            .filter(|p| p.clients >= cores as u64)
            .map(|p| p.throughput)
            .fold(f64::INFINITY, f64::min);
        let (of, target) = if strategy == "exclusive" {
            (1000.0 / job_ms, "near 1.0 of one core")
        } else {
            (cores as f64 * 1000.0 / job_ms, "≥ 0.90 of the limit")
        };
        heavy.insert(
            strategy.into(),
            json!({ "worst_ratio": worst / of, "limit_rps": of, "job_ms": job_ms, "target": target }),
        );
    }
    let tiny_p50 = |strategy| -> anyhow::Result<f64> {
        points(results, "tiny", strategy)?
            .iter()
            .find(|p| p.clients == 1)
            .map(|p| p.p50_us)
            .context("no 1-client tiny run")
    };
    let (inline, procs) = (tiny_p50("inline")?, tiny_p50("procs")?);
    Ok(json!({
        "heavy_clients_at_least_cores": heavy,
        "tiny_inline_over_tcp_floor": { "ratio": inline / tcp_us, "target": "≤ 1.15" },
        "tiny_procs_minus_inline_over_socketpair_floor": { "ratio": (procs - inline) / socketpair_us, "target": "≤ 1.3" },
    }))
}

fn draw_charts(out: &Path, document: &Value, heavy_limit: f64) -> anyhow::Result<()> {
    let results = document["workloads"].as_array().context("no workloads")?;
    for workload in results {
        let name = workload["workload"].as_str().unwrap_or("?");
        let mut throughput = Vec::new();
        let mut p99 = Vec::new();
        for strategy in STRATEGIES {
            let pts = points(results, name, strategy)?;
            throughput.push(charts::Line {
                label: strategy.into(),
                points: pts
                    .iter()
                    .map(|p| (p.clients as f64, p.throughput))
                    .collect(),
            });
            p99.push(charts::Line {
                label: strategy.into(),
                points: pts
                    .iter()
                    .map(|p| (p.clients as f64, p.p99_us / 1000.0))
                    .collect(),
            });
        }
        let limit = (name == "heavy").then_some((heavy_limit, "physical limit: cores ÷ job time"));
        charts::draw(
            &out.join(format!("{name}-throughput.svg")),
            &format!("{name}: throughput"),
            "requests/s",
            &throughput,
            limit,
        )?;
        charts::draw(
            &out.join(format!("{name}-p99.svg")),
            &format!("{name}: p99 latency"),
            "p99 (ms)",
            &p99,
            None,
        )?;
    }
    Ok(())
}

fn markdown(document: &Value) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut md = String::new();
    let machine = &document["machine"];
    let floors = &document["floors"];
    writeln!(md, "# ysum benchmark results\n")?;
    writeln!(
        md,
        "`{}` on {} cores ({}), Linux {}; {:.0} s in all.\n",
        document["command"].as_str().unwrap_or(""),
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        document["elapsed_s"].as_f64().unwrap_or(0.0)
    )?;
    writeln!(md, "## Floors\n\n| what | value |\n|---|---|")?;
    let f = |k: &str| floors[k].as_f64().unwrap_or(f64::NAN);
    writeln!(
        md,
        "| TCP request/reply over loopback | {:.1} µs |",
        f("tcp_ping_pong_us")
    )?;
    writeln!(
        md,
        "| socketpair round trip between two processes | {:.1} µs |",
        f("socketpair_ping_pong_us")
    )?;
    match floors["python_pool_apply_us"].as_f64() {
        Some(us) => writeln!(
            md,
            "| Python `multiprocessing.Pool.apply`, tiny job | {us:.1} µs |"
        )?,
        None => writeln!(md, "| Python `multiprocessing.Pool.apply` | (no python3) |")?,
    }
    writeln!(
        md,
        "| `sumn 25000`, best time through the server (with its round trip) | {:.1} µs |",
        f("sumn_25000_us")
    )?;
    writeln!(
        md,
        "| `sumn {}` (heavy job), best time through the server, before and after the runs | {:.2} ms ({:.2} before, {:.2} after) |",
        floors["heavy_n"],
        f("heavy_job_ms"),
        f("heavy_job_ms_before_runs"),
        f("heavy_job_ms_after_runs")
    )?;
    writeln!(
        md,
        "| physical limit for heavy jobs: cores ÷ job time | {:.0} req/s |\n",
        f("heavy_physical_limit_rps")
    )?;
    for workload in document["workloads"].as_array().context("no workloads")? {
        let name = workload["workload"].as_str().unwrap_or("?");
        writeln!(
            md,
            "## {name}: {}\n",
            workload["what"].as_str().unwrap_or("")
        )?;
        writeln!(
            md,
            "| strategy | clients | requests | seconds | req/s | p50 (µs) | p99 (µs) | errors |"
        )?;
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for strategy in workload["strategies"].as_array().context("no strategies")? {
            let label = strategy["strategy"].as_str().unwrap_or("?");
            for p in serde_json::from_value::<Vec<Point>>(strategy["points"].clone())? {
                writeln!(
                    md,
                    "| {label} | {} | {} | {:.3} | {:.0} | {:.0} | {:.0} | {} |",
                    p.clients, p.requests, p.seconds, p.throughput, p.p50_us, p.p99_us, p.errors
                )?;
            }
        }
        writeln!(
            md,
            "\n![{name} throughput]({name}-throughput.svg) ![{name} p99]({name}-p99.svg)\n"
        )?;
    }
    let t = &document["targets"];
    writeln!(md, "## Targets, as measured in this run\n")?;
    for strategy in STRATEGIES {
        let h = &t["heavy_clients_at_least_cores"][strategy];
        writeln!(
            md,
            "- heavy, clients ≥ cores, {strategy}: worst {:.2} of {:.0} req/s (job {:.2} ms; target {})",
            h["worst_ratio"].as_f64().unwrap_or(f64::NAN),
            h["limit_rps"].as_f64().unwrap_or(f64::NAN),
            h["job_ms"].as_f64().unwrap_or(f64::NAN),
            h["target"].as_str().unwrap_or("")
        )?;
    }
    writeln!(
        md,
        "- tiny, 1 client: inline p50 ÷ TCP floor = {:.2} (target ≤ 1.15)",
        t["tiny_inline_over_tcp_floor"]["ratio"]
            .as_f64()
            .unwrap_or(f64::NAN)
    )?;
    writeln!(
        md,
        "- tiny, 1 client: (procs − inline) p50 ÷ socketpair floor = {:.2} (target ≤ 1.3)",
        t["tiny_procs_minus_inline_over_socketpair_floor"]["ratio"]
            .as_f64()
            .unwrap_or(f64::NAN)
    )?;
    Ok(md)
}
