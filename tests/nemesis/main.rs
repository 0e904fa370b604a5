//! A fault schedule on separate hosts (issue 28), in the manner of Jepsen:
//! the whole system (Redis behind Sentinel, two `sumserver --apply remote`,
//! three `sumworker`s, HAProxy, `sumclient`) runs on hosts of its own, each
//! a network namespace on a bridge of the test's own, while a nemesis
//! partitions, pauses, kills, restarts, fails over and shifts clocks on a
//! schedule drawn from a seed; then a checker judges every answer the
//! client recorded against the faults that were active at the time, and
//! the broker's state after each heal.
//!
//! `short_schedule` (here, about a minute) applies every kind of fault
//! once, some in combination; `long_schedule` is what `scripts/nemesis
//! --duration 10m [--seed N]` runs. `YSUM_SEED=N` replays a schedule (the
//! same faults at the same times; the interleaving of the processes is the
//! machine's). Ignored, with the reason, without root, `ip` or `nft`, or an
//! engine (server/build.rs); mandatory with `YSUM_REQUIRE_ENGINES=1`.
//!
//! # Layout
//!
//! - `netns`: the bed: namespaces, bridge, veths, partitions (nft), and
//!   running a thread inside a namespace.
//! - `daemon`: a process on one host, started, killed, paused by pid.
//! - `cluster`: the system on the bed, and the queries made from `ctl`.
//! - `schedule`: the faults and their schedule, from a seed (`rng`).
//! - `nemesis`: applying and healing the schedule's faults.
//! - `observer`: the broker's stream and pending list, read throughout.
//! - `history`: the client's history and report, on the run's timeline.
//! - `checker`: the verdict and the figures; `known`: the findings
//!   reported and not fixed yet.
//! - `run`: one run from start to end; `timeline`: its clock and every
//!   duration.
//! - `checker_tests`: the checker fails on wrong, lost, doubled and
//!   implausible answers, from histories made by hand and from broken
//!   servers.

mod checker;
mod checker_tests;
mod cluster;
mod daemon;
mod history;
mod known;
mod nemesis;
mod netns;
mod observer;
#[path = "../common/prime.rs"]
mod prime;
#[allow(dead_code)]
#[path = "../common/process.rs"]
mod process;
mod rng;
mod run;
mod schedule;
mod timeline;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Runs the tests that start processes one at a time: a run loads the
/// machine, and it reaps the orphans re-parented to this process.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `YSUM_SEED`, or one from the clock.
fn seed() -> u64 {
    match std::env::var("YSUM_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("YSUM_SEED={text:?} is not a whole number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000),
    }
}

/// `YSUM_NEMESIS_KINDS` (`kill-worker,pause-worker`), or every kind: the
/// deck to deal from, to replay one kind of fault while looking into it.
fn kinds() -> Vec<schedule::Kind> {
    match std::env::var("YSUM_NEMESIS_KINDS") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                schedule::Kind::named(name.trim())
                    .unwrap_or_else(|| panic!("YSUM_NEMESIS_KINDS: no fault is called {name:?}"))
            })
            .collect(),
        Err(_) => schedule::Kind::ALL.to_vec(),
    }
}

/// `10m`, `90s`, `1h` (for `YSUM_NEMESIS_DURATION`).
fn parse_length(text: &str) -> Duration {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a length such as 10m, 90s or 1h"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("{text:?} is not a length such as 10m, 90s or 1h"),
    }
}

/// The short schedule: every kind of fault once, about 40 % of the steps
/// two at once, under 200 requests/s; every answer right or a plausible
/// error, nothing stale after any heal, throughput back within 2 s,
/// nothing left behind.
#[test]
#[cfg_attr(
    no_netns,
    ignore = "needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ip (iproute2) and nft (nftables) to \
              make network namespaces; see server/build.rs"
)]
#[cfg_attr(
    all(not(no_netns), any(no_redis, no_sentinel, no_haproxy, no_faketime)),
    ignore = "needs redis-server, redis-sentinel, haproxy and libfaketime (apt-get install -y \
              redis-server redis-sentinel haproxy faketime)"
)]
fn short_schedule() {
    let _one = one_at_a_time();
    let seed = seed();
    let out = std::env::temp_dir().join(format!("ysum-nemesis-{}", std::process::id()));
    let outcome = run::run(&run::Settings {
        seed,
        length: Duration::ZERO,
        profile: schedule::SHORT,
        rate: 200,
        out: out.clone(),
        kinds: kinds(),
        replay: format!(
            "YSUM_SEED={seed} cargo test -p ysum-server --test nemesis short_schedule -- --nocapture"
        ),
    });
    println!("{}", outcome.summary);
    println!(
        "figures: the short schedule took {:.1} s",
        outcome.took.as_secs_f64()
    );
    assert!(
        outcome.verdict.passed(),
        "seed {seed}: the checker found {} new kinds of failure (the run's files are in {}):\n{}",
        outcome.verdict.new_findings(),
        out.display(),
        outcome.summary
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// The long schedule, for `scripts/nemesis`: its length, seed, rate and
/// folder from `YSUM_NEMESIS_DURATION` (default 10m), `YSUM_SEED`,
/// `YSUM_NEMESIS_RATE` (default 400) and `YSUM_NEMESIS_OUT`; the folder is
/// kept.
#[test]
#[cfg_attr(
    no_netns,
    ignore = "needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ip (iproute2) and nft (nftables) to \
              make network namespaces; see server/build.rs"
)]
#[cfg_attr(
    not(no_netns),
    ignore = "the long schedule (10 minutes): run it with scripts/nemesis"
)]
fn long_schedule() {
    let _one = one_at_a_time();
    let seed = seed();
    let length = parse_length(&std::env::var("YSUM_NEMESIS_DURATION").unwrap_or("10m".into()));
    let rate = std::env::var("YSUM_NEMESIS_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(400);
    let out = std::env::var_os("YSUM_NEMESIS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ysum-nemesis-long-{seed}")));
    let outcome = run::run(&run::Settings {
        seed,
        length,
        profile: schedule::LONG,
        rate,
        out: out.clone(),
        kinds: kinds(),
        replay: format!(
            "scripts/nemesis --duration {}s --seed {seed} --rate {rate}",
            length.as_secs()
        ),
    });
    println!("{}", outcome.summary);
    println!("nemesis: the run's files are in {}", out.display());
    assert!(
        outcome.verdict.passed(),
        "seed {seed}: the checker found {} new kinds of failure (see {})",
        outcome.verdict.new_findings(),
        out.join("summary.txt").display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths read as the script writes them.
    #[test]
    fn lengths() {
        assert_eq!(parse_length("10m"), Duration::from_secs(600));
        assert_eq!(parse_length("90s"), Duration::from_secs(90));
        assert_eq!(parse_length("45"), Duration::from_secs(45));
        assert_eq!(parse_length("1h"), Duration::from_secs(3600));
    }
}
