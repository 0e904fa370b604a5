//! Tiny jobs, every server that can answer them, side by side: rounds that
//! each run every server once, one after another, so that the machine's
//! drift lands on all of them alike; the medians of the rounds are kept.
//! The method and the table of issue 15 (the cost of `procs` and of its
//! hybrid with `--inline-below` against `inline`), with its targets.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::Server;
use crate::targets::RatioTarget;

/// The servers, as `--io` and `--apply` values, in the order of the table;
/// `floor` for the floor servers of `floor_server.rs`.
const SERVERS: [(&str, &str); 9] = [
    (FLOOR, "bare"),
    (FLOOR, "relay"),
    (FLOOR, "shared"),
    ("threads", "inline"),
    ("events", "inline"),
    ("threads", "threads"),
    ("threads", "procs"),
    ("events", "procs"),
    ("threads", crate::HYBRID),
];

/// The `io` of the floor servers' rows.
const FLOOR: &str = "floor";

/// One server's medians.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Row {
    /// `--io` value.
    pub(crate) io: String,
    /// `--apply` value (and the strategy's own flags).
    pub(crate) apply: String,
    /// One keep-alive client: requests per second.
    pub(crate) one_client_rps: f64,
    /// Eight keep-alive clients: requests per second.
    pub(crate) eight_clients_rps: f64,
    /// Eight clients: latency p50, µs.
    pub(crate) eight_p50_us: f64,
    /// Eight clients: latency p99, µs.
    pub(crate) eight_p99_us: f64,
}

/// The table and its targets.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SideBySide {
    /// Rounds run; each row holds the medians over them.
    pub(crate) rounds: usize,
    /// Workers of every sumserver: one per core.
    pub(crate) workers: usize,
    /// Requests per run with one client and with eight.
    pub(crate) requests: (u64, u64),
    /// One row per server.
    pub(crate) rows: Vec<Row>,
    /// 8 clients: procs throughput ÷ inline's (both `--io threads`).
    pub(crate) procs_over_inline: RatioTarget,
    /// 8 clients: procs throughput ÷ the relay floor's (a process of its
    /// own per connection): how far the pool is from the least a process
    /// round trip costs. No target: a measure of the distance.
    #[serde(default)]
    pub(crate) procs_over_relay_floor: Option<f64>,
    /// 8 clients: procs throughput ÷ the shared floor's (one echo process
    /// per core, shared by the connections): how far the pool is from the
    /// least a pool of that many processes costs.
    #[serde(default)]
    pub(crate) procs_over_shared_floor: Option<f64>,
    /// 8 clients: the shared floor's throughput ÷ inline's.
    #[serde(default)]
    pub(crate) shared_floor_over_inline: Option<f64>,
    /// 8 clients: the relay floor's throughput ÷ the bare floor's.
    #[serde(default)]
    pub(crate) relay_floor_over_bare_floor: Option<f64>,
    /// 8 clients: procs p99 ÷ inline p99.
    pub(crate) procs_p99_over_inline: RatioTarget,
    /// 8 clients: `--io events --apply procs` ÷ `--io threads --apply procs`.
    pub(crate) events_procs_over_threads_procs: RatioTarget,
    /// 8 clients: the hybrid's throughput ÷ inline's.
    pub(crate) hybrid_over_inline: RatioTarget,
}

/// One run: throughput, p50 and p99 (µs) of `clients` keep-alive clients
/// sending `sumn 1`.
fn one_run(
    client: &Path,
    server: &Server,
    clients: u64,
    requests: u64,
) -> anyhow::Result<[f64; 3]> {
    let output = Command::new(client)
        .args(["--addr", &server.addr.to_string(), "--json", "--keep-alive"])
        .args(["--job", "sumn:1", "--warmup", "200ms"])
        .args(["--requests", &requests.to_string(), &clients.to_string()])
        .output()
        .context("cannot run sumclient")?;
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "sumclient printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let counts = &report["overall"]["counts"];
    let failed = counts["wrong"].as_u64().unwrap_or(0) + counts["errors"].as_u64().unwrap_or(0);
    anyhow::ensure!(failed == 0, "{failed} requests failed or were wrong");
    let number = |v: &Value| v.as_f64().context("sumclient's report lacks a figure");
    let latency = &report["overall"]["latency_us"];
    Ok([
        number(&report["throughput"])?,
        number(&latency["p50"])?,
        number(&latency["p99"])?,
    ])
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `rounds` rounds of every server, one client then eight, each server
/// with a worker per core.
pub(crate) fn run(
    server_bin: &Path,
    client_bin: &Path,
    cores: usize,
    quick: bool,
) -> anyhow::Result<SideBySide> {
    let (rounds, requests) = if quick {
        (1, (5_000, 20_000))
    } else {
        (3, (10_000, 40_000))
    };
    // samples[server] = [(one client rps, eight rps, p50, p99)] per round.
    let mut samples: Vec<Vec<[f64; 4]>> = SERVERS.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (index, (io, apply)) in SERVERS.iter().enumerate() {
            eprintln!("side by side, round {round}/{rounds}: --io {io} --apply {apply}…");
            let server = if *io == FLOOR {
                Server::floor(apply)?
            } else {
                let extra = ["--io", io, "--workers", &cores.to_string()].map(String::from);
                Server::start(server_bin, apply, &extra)?
            };
            let [one, _, _] = one_run(client_bin, &server, 1, requests.0)?;
            let [eight, p50, p99] = one_run(client_bin, &server, 8, requests.1)?;
            if *io == FLOOR {
                server.stop_floor()?;
            } else {
                server.stop()?;
            }
            samples[index].push([one, eight, p50, p99]);
        }
    }
    let rows: Vec<Row> = SERVERS
        .iter()
        .zip(&samples)
        .map(|((io, apply), runs)| {
            let column = |i: usize| median(runs.iter().map(|r| r[i]).collect());
            Row {
                io: (*io).to_owned(),
                apply: (*apply).to_owned(),
                one_client_rps: column(0),
                eight_clients_rps: column(1),
                eight_p50_us: column(2),
                eight_p99_us: column(3),
            }
        })
        .collect();
    let row = |io: &str, apply: &str| {
        rows.iter()
            .find(|r| r.io == io && r.apply == apply)
            .expect("every server has a row")
    };
    let (inline, procs) = (row("threads", "inline"), row("threads", "procs"));
    let (events_procs, hybrid) = (row("events", "procs"), row("threads", crate::HYBRID));
    let at_least = |ratio: f64, bar: f64| RatioTarget {
        ratio,
        target: format!("≥ {bar}"),
        met: ratio >= bar,
    };
    let (bare, relay) = (row(FLOOR, "bare"), row(FLOOR, "relay"));
    let shared = row(FLOOR, "shared");
    let p99_ratio = procs.eight_p99_us / inline.eight_p99_us;
    Ok(SideBySide {
        rounds,
        workers: cores,
        requests,
        procs_over_relay_floor: Some(procs.eight_clients_rps / relay.eight_clients_rps),
        procs_over_shared_floor: Some(procs.eight_clients_rps / shared.eight_clients_rps),
        shared_floor_over_inline: Some(shared.eight_clients_rps / inline.eight_clients_rps),
        relay_floor_over_bare_floor: Some(relay.eight_clients_rps / bare.eight_clients_rps),
        procs_over_inline: at_least(procs.eight_clients_rps / inline.eight_clients_rps, 0.5),
        procs_p99_over_inline: RatioTarget {
            ratio: p99_ratio,
            target: "≤ 3".to_owned(),
            met: p99_ratio <= 3.0,
        },
        events_procs_over_threads_procs: at_least(
            events_procs.eight_clients_rps / procs.eight_clients_rps,
            1.0,
        ),
        hybrid_over_inline: at_least(hybrid.eight_clients_rps / inline.eight_clients_rps, 0.85),
        rows,
    })
}
