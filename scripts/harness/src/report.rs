//! `results.md`: the run's tables in Markdown, written from the same typed
//! results as `results.json`.

use std::fmt::Write as _;

use crate::results::Results;
use crate::targets::RatioTarget;

/// Renders `results` as Markdown (charts are linked by file name, so the
/// file reads well next to them).
pub(crate) fn markdown(results: &Results) -> Result<String, std::fmt::Error> {
    let mut md = String::new();
    let machine = &results.machine;
    let floors = &results.floors;
    writeln!(md, "# ysum benchmark results\n")?;
    writeln!(
        md,
        "Command: `{}`  \nCommit: {}  \nDate: {}  \nMachine: {} cores, {}, Linux {}  \n\
         Duration: {:.0} s in all (release build not included).\n",
        results.command,
        results.commit.as_deref().unwrap_or("(not recorded)"),
        results.date.as_deref().unwrap_or("(not recorded)"),
        machine.cores,
        if machine.cpu.is_empty() {
            "CPU model unknown"
        } else {
            &machine.cpu
        },
        machine.kernel,
        results.elapsed_s
    )?;
    writeln!(md, "## Floors\n\n| what | value |\n|---|---|")?;
    writeln!(
        md,
        "| TCP request/reply over loopback | {:.1} µs |",
        floors.tcp_ping_pong_us
    )?;
    writeln!(
        md,
        "| socketpair round trip between two processes | {:.1} µs |",
        floors.socketpair_ping_pong_us
    )?;
    match floors.python_pool_apply_us {
        Some(us) => writeln!(
            md,
            "| Python `multiprocessing.Pool.apply`, tiny job | {us:.1} µs |"
        )?,
        None => writeln!(md, "| Python `multiprocessing.Pool.apply` | (no python3) |")?,
    }
    writeln!(
        md,
        "| `sumn 25000` (the seed's job) through an idle server | {:.1} µs |",
        floors.sumn_25000_us
    )?;
    writeln!(
        md,
        "| `sumn {}` (the heavy job) through an idle server: at the start; median around the heavy points | {:.2} ms; {:.2} ms |",
        floors.heavy_n, floors.heavy_job_ms_at_start, floors.heavy_job_ms_median
    )?;
    writeln!(
        md,
        "| physical limit for heavy jobs: cores ÷ median job time | {:.0} req/s |\n",
        floors.heavy_physical_limit_rps
    )?;
    for workload in &results.workloads {
        let heavy = workload.workload == "heavy";
        writeln!(md, "## {}: {}\n", workload.workload, workload.what)?;
        if heavy {
            writeln!(
                md,
                "The **probe ratio** is throughput ÷ (lanes ÷ the job's wall time), the job \
                 timed through the server just before and after the point (mean of the two), \
                 lanes being the cores (1 for exclusive). It swings with the machine's speed; \
                 the targets below use the **CPU ratio** instead, defined there.\n"
            )?;
        }
        write!(
            md,
            "| strategy | clients | requests | seconds | req/s | p50 (µs) | p99 (µs) | cores busy | errors |"
        )?;
        if heavy {
            write!(md, " job ms before → after | probe ratio |")?;
        }
        writeln!(md)?;
        write!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        if heavy {
            write!(md, "---:|---:|")?;
        }
        writeln!(md)?;
        for strategy in &workload.strategies {
            let lanes = if strategy.strategy == "exclusive" {
                1.0
            } else {
                machine.cores as f64
            };
            for p in &strategy.points {
                write!(
                    md,
                    "| {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.2} | {} |",
                    strategy.strategy,
                    p.clients,
                    p.requests,
                    p.seconds,
                    p.throughput,
                    p.p50_us,
                    p.p99_us,
                    p.cores_busy,
                    p.errors
                )?;
                if let (true, Some(before), Some(after), Some(job)) =
                    (heavy, p.job_ms_before, p.job_ms_after, p.job_ms())
                {
                    let of = p.throughput * job / 1000.0 / lanes;
                    write!(md, " {before:.2} → {after:.2} | {of:.2} |")?;
                }
                writeln!(md)?;
            }
        }
        let name = &workload.workload;
        writeln!(
            md,
            "\n![{name} throughput]({name}-throughput.svg) ![{name} p99]({name}-p99.svg)\n"
        )?;
    }
    side_by_side(&mut md, results)?;
    io_models(&mut md, results)?;
    targets(&mut md, results)?;
    Ok(md)
}

fn side_by_side(md: &mut String, results: &Results) -> std::fmt::Result {
    let Some(table) = &results.side_by_side else {
        return Ok(());
    };
    writeln!(
        md,
        "## tiny jobs side by side: keep-alive `sumn 1`, {} rounds, medians\n\n\
         Each round runs every server once, {} requests from 1 client then {} from 8.\n\n\
         | server | 1 client req/s | 8 clients req/s | 8 clients p50 / p99 (µs) |\n|---|---:|---:|---|",
        table.rounds, table.requests.0, table.requests.1
    )?;
    for row in &table.rows {
        let server = match (row.io.as_str(), row.apply.as_str()) {
            ("floor", "bare") => "floor: a thread per connection, answers at once".to_owned(),
            ("floor", "relay") => {
                "floor: the same, each request echoed by a process of the connection's own"
                    .to_owned()
            }
            ("floor", "shared") => format!(
                "floor: the same, echoed by one of {} processes shared by all, as a pool",
                table.workers
            ),
            (io, apply) => format!("`--io {io} --apply {apply}`"),
        };
        writeln!(
            md,
            "| {server} | {:.0} | {:.0} | {:.0} / {:.0} |",
            row.one_client_rps, row.eight_clients_rps, row.eight_p50_us, row.eight_p99_us
        )?;
    }
    if let (Some(relay), Some(shared), Some(procs)) = (
        table.relay_floor_over_bare_floor,
        table.shared_floor_over_inline,
        table.procs_over_shared_floor,
    ) {
        writeln!(
            md,
            "\nWith 8 clients the relay floor does {relay:.2}× the bare floor's requests per \
             second: a process round trip per request, even with no pool, no queue and a \
             process per connection, costs that much here. With {} processes shared by the 8 \
             connections (the shared floor: no queue wait, no timeout, no isolation to keep) \
             it does {shared:.2}× inline's; `procs`, with as many workers, does {procs:.2}× \
             the shared floor.",
            table.workers
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn io_models(md: &mut String, results: &Results) -> std::fmt::Result {
    writeln!(
        md,
        "## responsiveness: 2 clients send heavy jobs (about 50 ms) while 4 send `ping` on a fixed schedule
"
    )?;
    writeln!(
        md,
        "| --io | --apply | pings | ping p50 (µs) | ping p99 (µs) | ping max (µs) | heavy jobs | errors |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for r in &results.responsiveness {
        let us = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.io,
            r.strategy,
            r.pings,
            us(r.ping_p50_us),
            us(r.ping_p99_us),
            us(r.ping_max_us),
            r.heavy_jobs,
            r.errors
        )?;
    }
    writeln!(
        md,
        "\n## many connections: idle keep-alive connections held open while 64 others send `sumn 1000` (`--apply threads`)\n"
    )?;
    writeln!(
        md,
        "| --io | idle | opened in (s) | server threads | RSS before (MiB) | RSS with idle (MiB) | peak RSS (MiB) | active req/s | active p99 (µs) | errors |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for c in &results.connections {
        writeln!(
            md,
            "| {} | {} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {} |",
            c.io,
            c.idle,
            c.open_s,
            c.threads,
            c.rss_before_mib,
            c.rss_idle_mib,
            c.rss_peak_mib,
            c.throughput,
            c.p99_us,
            c.errors
        )?;
    }
    writeln!(md)
}

fn mark(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn targets(md: &mut String, results: &Results) -> std::fmt::Result {
    let t = &results.targets;
    writeln!(md, "## Targets, as measured in this run\n")?;
    writeln!(
        md,
        "Heavy: the **CPU ratio** is throughput ÷ (lanes ÷ the job's CPU time in its fastest \
         context), lanes being the cores (one for exclusive): the strategy's own share of the \
         cores (its CPU during the point, less its own CPU per request under the tiny \
         workload, ÷ lanes) divided by how much longer the job runs in its context than in \
         the fastest. That slowdown is measured side by side, each strategy's server timing \
         the job in turn, one at a time, in interleaved rounds (medians):\n"
    )?;
    if t.contexts.is_empty() {
        writeln!(
            md,
            "(not measured in this run: the ratio is the own share)\n"
        )?;
    } else {
        writeln!(md, "| context | the job, ms | slowdown |\n|---|---:|---:|")?;
        for c in &t.contexts {
            writeln!(
                md,
                "| `--apply {}` | {:.3} | {:.3} |",
                c.strategy, c.job_ms, c.slowdown
            )?;
        }
        writeln!(
            md,
            "\nThe probe ratio (defined above the heavy table) is shown beside it, a \
             cross-check from wall time.\n"
        )?;
    }
    for h in &t.heavy {
        let each: Vec<String> = h
            .points
            .iter()
            .map(|r| {
                let own = r
                    .own_share
                    .map_or_else(String::new, |share| format!(", own share {share:.2}"));
                format!(
                    "{} clients: CPU ratio {:.2} ({:.2} cores busy, {:.3} overhead, job {:.2} ms{own}; probe ratio {:.2})",
                    r.clients, r.ratio, r.cores_busy, r.overhead_cores, r.job_cpu_ms, r.probe_ratio
                )
            })
            .collect();
        writeln!(
            md,
            "- heavy, clients ≥ cores, {} (against {}): {}; target {}: {}",
            h.strategy,
            h.limit,
            each.join(", "),
            h.target,
            mark(h.met)
        )?;
    }
    let ratio = |md: &mut String, what: &str, r: &RatioTarget| {
        writeln!(
            md,
            "- {what} = {:.2} (target {}): {}",
            r.ratio,
            r.target,
            mark(r.met)
        )
    };
    ratio(
        md,
        "tiny, 1 client: inline p50 ÷ TCP floor",
        &t.tiny_inline_over_tcp_floor,
    )?;
    ratio(
        md,
        "tiny, 1 client: (procs − inline) p50 ÷ socketpair floor",
        &t.tiny_procs_extra_over_socketpair_floor,
    )?;
    if let Some(table) = &results.side_by_side {
        for (what, r) in [
            (
                "tiny, 8 clients: procs ÷ inline throughput",
                &table.procs_over_inline,
            ),
            (
                "tiny, 8 clients: procs ÷ inline p99",
                &table.procs_p99_over_inline,
            ),
            (
                "tiny, 8 clients: `--io events` ÷ `--io threads` throughput, both procs",
                &table.events_procs_over_threads_procs,
            ),
            (
                "tiny, 8 clients: `procs --inline-below 100us` ÷ inline throughput",
                &table.hybrid_over_inline,
            ),
        ] {
            ratio(md, what, r)?;
        }
    }
    writeln!(
        md,
        "- the whole run: {:.1} min (target ≤ 5 min for the default run): {}",
        results.elapsed_s / 60.0,
        mark(results.elapsed_s <= 300.0)
    )?;
    Ok(())
}
