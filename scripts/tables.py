#!/usr/bin/env python3
"""Prints the tables of docs/results.md from a results.json of scripts/bench.

Every figure in those tables comes from the file given, except the Python
2009 rows of the seed table, copied from the seed post (David Beazley's
"yieldable thread" post: the README's "Readings"), whose server ran Python
on a 4-core machine. Those rows are for 1000
requests: they are printed only beside a run that made 1000 requests per
point (a --quick run makes 200, and its seconds cannot stand beside them).
"""
import argparse
import json
import sys

# Seconds for 1000 requests of sumn 25000, from the post, by client threads.
ORIGINAL = {
    "plain threads": {1: 4.35, 2: 7.81, 4: 9.53, 8: 10.21},
    "inline (yieldable thread)": {1: 4.96, 2: 7.83, 4: 9.26, 8: 9.96},
    "exclusive": {1: 4.56, 2: 5.75, 4: 5.75, 8: 5.82},
    "multiprocessing.Pool": {1: 4.51, 2: 2.30, 4: 1.45, 8: 1.60},
}
PYTHON_NAME = {"inline": "inline (yieldable thread)", "exclusive": "exclusive",
               "threads": None, "procs": "multiprocessing.Pool"}


def points(results, workload, strategy):
    for w in results["workloads"]:
        if w["workload"] == workload:
            for s in w["strategies"]:
                if s["strategy"] == strategy:
                    return {p["clients"]: p for p in s["points"]}
    raise KeyError((workload, strategy))


def seed_table(results, with_python):
    print("| server | 1 client (s) | 2 (s) | 4 (s) | 8 (s) |")
    print("|---|---:|---:|---:|---:|")
    if with_python:
        for name, row in ORIGINAL.items():
            cells = " | ".join(f"{row[c]:.2f}" for c in (1, 2, 4, 8))
            print(f"| Python 2009: {name} | {cells} |")
    for strategy in ("inline", "exclusive", "threads", "procs"):
        pts = points(results, "seed", strategy)
        cells = " | ".join(f"{pts[c]['seconds']:.3f}" for c in (1, 2, 4, 8))
        print(f"| ysum: {strategy} | {cells} |")


def sweep_table(results, workload, value, fmt):
    print("| strategy | 1 client | 2 | 4 | 8 |")
    print("|---|---:|---:|---:|---:|")
    for strategy in ("inline", "exclusive", "threads", "procs"):
        pts = points(results, workload, strategy)
        print(f"| {strategy} | " + " | ".join(fmt.format(value(pts[c])) for c in (1, 2, 4, 8)) + " |")


def main():
    parser = argparse.ArgumentParser(
        prog="scripts/tables.py",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_json", help="a results.json written by scripts/bench, "
                        "such as results/published/results.json")
    args = parser.parse_args()
    try:
        with open(args.results_json, encoding="utf-8") as f:
            results = json.load(f)
    except (OSError, ValueError) as err:
        parser.exit(2, f"scripts/tables.py: cannot read {args.results_json}: {err}\n")
    requests = sorted({p["requests"] for s in ("inline", "exclusive", "threads", "procs")
                       for p in points(results, "seed", s).values()})
    with_python = requests == [1000]
    counts = "/".join(map(str, requests))
    print(f"### seed: seconds for {counts} requests of sumn 25000\n")
    if not with_python:
        print(f"(This run made {counts} requests per point, not the post's 1000: "
              "the Python 2009 rows are left out.)\n")
    seed_table(results, with_python)
    for workload in ("heavy", "tiny"):
        print(f"\n### {workload}: requests per second\n")
        sweep_table(results, workload, lambda p: p["throughput"], "{:.0f}")
        print(f"\n### {workload}: p99 latency (µs)\n")
        sweep_table(results, workload, lambda p: p["p99_us"], "{:.0f}")
        print(f"\n### {workload}: cores the server kept busy\n")
        sweep_table(results, workload, lambda p: p["cores_busy"], "{:.2f}")
    print("\n### heavy: CPU ratio, throughput ÷ (lanes ÷ the job's CPU time during each point)\n")
    print("| strategy | limit | 2 clients | 4 | 8 | target | |")
    print("|---|---|---|---|---|---|---|")
    for h in results["targets"]["heavy"]:
        cells = {r["clients"]: f"**{r['ratio']:.2f}** ({r['cores_busy']:.2f} busy − {r['overhead_cores']:.3f}; probe {r['probe_ratio']:.2f})" for r in h["points"]}
        print(f"| {h['strategy']} | {h['limit']} | " + " | ".join(cells[c] for c in (2, 4, 8)) + f" | {h['target']} | {'met' if h['met'] else 'NOT met'} |")
    t = results["targets"]
    print("\n| tiny, 1 client | ratio | target | |\n|---|---:|---|---|")
    for key, label in (("tiny_inline_over_tcp_floor", "inline p50 ÷ TCP ping-pong"),
                       ("tiny_procs_extra_over_socketpair_floor", "(procs − inline) p50 ÷ socketpair round trip")):
        r = t[key]
        print(f"| {label} | {r['ratio']:.2f} | {r['target']} | {'met' if r['met'] else 'NOT met'} |")
    print("\n### responsiveness: ping latency beside 50 ms jobs (µs)\n")
    print("| --io | --apply | pings | p50 | p99 | max | heavy jobs | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results["responsiveness"]:
        us = lambda v: "—" if v is None else f"{v:.0f}"
        print(f"| {r['io']} | {r['strategy']} | {r['pings']} | {us(r['ping_p50_us'])} | {us(r['ping_p99_us'])} | {us(r['ping_max_us'])} | {r['heavy_jobs']} | {r['errors']} |")
    print("\n### many connections (`--apply threads`)\n")
    print("| --io | idle connections | server threads | RSS before (MiB) | RSS with idle (MiB) | peak RSS (MiB) | 64 active: req/s | p99 (µs) | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in results["connections"]:
        print(f"| {c['io']} | {c['idle']} | {c['threads']} | {c['rss_before_mib']:.1f} | {c['rss_idle_mib']:.1f} | {c['rss_peak_mib']:.1f} | {c['throughput']:.0f} | {c['p99_us']:.0f} | {c['errors']} |")
    f = results["floors"]
    print("\n### floors\n")
    print("| what | value |\n|---|---|")
    print(f"| TCP request/reply over loopback | {f['tcp_ping_pong_us']:.1f} µs |")
    print(f"| socketpair round trip between two processes | {f['socketpair_ping_pong_us']:.1f} µs |")
    if f.get("python_pool_apply_us") is not None:
        print(f"| Python `multiprocessing.Pool.apply`, tiny job | {f['python_pool_apply_us']:.0f} µs |")
    print(f"| `sumn 25000` through an idle server | {f['sumn_25000_us']:.1f} µs |")
    print(f"| `sumn {f['heavy_n']}` (heavy job), median around the heavy points | {f['heavy_job_ms_median']:.2f} ms |")
    print(f"| physical limit: cores ÷ that job time | {f['heavy_physical_limit_rps']:.0f} req/s |")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        # The reader stopped early (| head): not an error.
        sys.stderr.close()
