//! Panics: the hidden `panic 1` job (compiled in by the `fault-injection`
//! feature of test builds) mixed into a load, under every strategy.

use std::time::Instant;

use crate::support::{
    figures, keep_alive_clients, mixed_request, ms, one_at_a_time, Proc, Rng, Scale, Server,
    IO_TIMEOUT,
};

/// Worker threads or processes.
const WORKERS: usize = 2;

/// One request in ten panics; the rest are the usual mix.
fn with_panics(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        "panic 1".to_owned()
    } else {
        mixed_request(rng)
    }
}

/// Under `inline`, panicking jobs among four clients' load answer only their
/// own callers `ERR internal`.
#[test]
fn panics_under_load_harm_only_their_callers_inline() {
    panics("inline");
}

/// Under `exclusive`, a panicking job answers its caller `ERR internal` and
/// releases the lock for the others.
#[test]
fn panics_under_load_harm_only_their_callers_exclusive() {
    panics("exclusive");
}

/// Under `threads`, panicking jobs answer `ERR internal` and the pool keeps
/// its workers.
#[test]
fn panics_under_load_harm_only_their_callers_threads() {
    panics("threads");
}

/// Under `procs`, panicking jobs answer `ERR internal` and the very same
/// worker processes go on (none is lost or replaced).
#[test]
fn panics_under_load_harm_only_their_callers_procs() {
    panics("procs");
}

fn panics(apply: &str) {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let seed = Rng::seed();
    let server = Server::start_faulty(apply, &["--workers", "2"]);
    let tree = (apply == "procs").then(|| {
        server
            .process_tree_within(WORKERS, IO_TIMEOUT)
            .expect("the pool starts with its workers")
    });
    let tally = keep_alive_clients(
        &server,
        4,
        Instant::now() + scale.panic_run,
        IO_TIMEOUT,
        seed,
        with_panics,
    );
    let stats = server.stats();
    let panicked: u64 = ["sumn", "prime", "sleep", "panic"]
        .iter()
        .map(|kind| stats["jobs"][kind]["panicked"].as_u64().unwrap_or(0))
        .sum();
    figures(
        &format!("panics-{apply}"),
        &[
            ("requests", tally.requests.to_string()),
            ("panics_injected", tally.panics.to_string()),
            ("server_counted", panicked.to_string()),
            ("wrong", tally.wrong.len().to_string()),
            ("lost", tally.lost.len().to_string()),
            ("p99", ms(tally.latencies.p99())),
            ("workers_alive", stats["workers"]["alive"].to_string()),
            ("respawned", stats["workers"]["respawned"].to_string()),
            ("seed", seed.to_string()),
        ],
    );
    assert!(tally.wrong.is_empty(), "{apply}: wrong {:?}", tally.wrong);
    assert!(tally.lost.is_empty(), "{apply}: lost {:?}", tally.lost);
    assert!(
        tally.errors.is_empty(),
        "{apply}: errors {:?}",
        tally.errors
    );
    assert!(tally.panics >= 5, "{apply}: only {} panics", tally.panics);
    assert_eq!(panicked, tally.panics, "{apply}: panics counted: {stats}");
    if apply == "threads" || apply == "procs" {
        assert_eq!(
            stats["workers"]["alive"].as_u64(),
            Some(WORKERS as u64),
            "{apply}: {stats}"
        );
        assert_eq!(
            stats["workers"]["respawned"].as_u64(),
            Some(0),
            "{apply}: {stats}"
        );
    }
    if let Some((fork_server, workers)) = tree {
        let (same_fork_server, same_workers) = server
            .process_tree_within(WORKERS, IO_TIMEOUT)
            .expect("the pool still has its workers");
        let pids = |procs: &[Proc]| procs.iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(
            fork_server.pid, same_fork_server.pid,
            "the fork server is the same"
        );
        assert_eq!(pids(&workers), pids(&same_workers), "the same worker pids");
        assert!(
            workers
                .iter()
                .all(|w| w.now().is_some_and(|now| !now.is_zombie())),
            "the very same worker processes run: {workers:?}"
        );
    }
    assert!(server.pings(), "{apply}: ping afterwards");
}
