//! Worker chaos: keep-alive clients run a sumn/prime mix against `--apply
//! procs` while a loop SIGKILLs a random worker every 200 ms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{
    eventually, figures, keep_alive_clients, mib, mixed_request, ms, one_at_a_time, open_fds, Proc,
    Rng, Scale, Server,
};

/// Worker processes in the pool.
const WORKERS: usize = 4;
/// Keep-alive clients.
const CLIENTS: usize = 4;
/// How often a worker is killed.
const KILL_EVERY: Duration = Duration::from_millis(200);
/// The server's `--job-timeout`.
const JOB_TIMEOUT: Duration = Duration::from_secs(2);

/// Every request under worker chaos gets the right answer or
/// `ERR worker-lost`, none waits past the job timeout, and afterwards the
/// pool has its K workers, no zombie, and the server's memory and
/// descriptors are back where they were.
#[test]
fn killing_workers_loses_only_their_jobs() {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let seed = Rng::seed();
    let server = Server::start(
        "procs",
        &[
            "--workers",
            "4",
            "--job-timeout",
            "2s",
            "--log-level",
            "error",
        ],
    );
    let (fork_server, _) = server
        .process_tree_within(WORKERS, Duration::from_secs(10))
        .expect("the pool starts with its workers");

    // Warm up with the same load and no faults, so that "before" is the
    // server's steady state (thread arenas, buffers), not an idle process.
    let warm = keep_alive_clients(
        &server,
        CLIENTS,
        Instant::now() + Duration::from_secs(1),
        JOB_TIMEOUT,
        seed,
        mixed_request,
    );
    assert!(
        warm.wrong.is_empty() && warm.lost.is_empty(),
        "warm-up: {warm:?}"
    );
    thread::sleep(Duration::from_millis(200));
    let before = server.memory();
    let fds_before = open_fds(server.pid());

    let stop = AtomicBool::new(false);
    let kills = AtomicU64::new(0);
    let until = Instant::now() + scale.chaos_run;
    let tally = thread::scope(|scope| {
        scope.spawn(|| {
            let mut rng = Rng::new(seed ^ 0x5eed);
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(KILL_EVERY);
                let live: Vec<Proc> = Proc::children_of(fork_server.pid)
                    .into_iter()
                    .filter(|p| !p.is_zombie())
                    .collect();
                if live.is_empty() || stop.load(Ordering::Relaxed) {
                    continue;
                }
                let victim = live[rng.below(live.len() as u64) as usize];
                if kill(Pid::from_raw(victim.pid), Signal::SIGKILL).is_ok() {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Time over the job timeout means a hung request.
        let tally = keep_alive_clients(
            &server,
            CLIENTS,
            until,
            JOB_TIMEOUT + Duration::from_secs(2),
            seed,
            mixed_request,
        );
        stop.store(true, Ordering::Relaxed);
        tally
    });
    let kills = kills.into_inner();
    let peak = server.memory().peak_kib;

    // The pool is whole again: K live workers, nothing unreaped.
    let mut stats = serde_json::Value::Null;
    let whole = eventually(Duration::from_secs(5), || {
        stats = server.stats();
        let workers = Proc::children_of(fork_server.pid);
        stats["workers"]["alive"].as_u64() == Some(WORKERS as u64)
            && workers.len() == WORKERS
            && workers.iter().all(|p| !p.is_zombie())
    });
    let zombies: Vec<Proc> = [
        Proc::children_of(server.pid()),
        Proc::children_of(fork_server.pid),
    ]
    .concat()
    .into_iter()
    .filter(Proc::is_zombie)
    .collect();
    // Memory and descriptors settle once the replacements are in.
    let mut after = server.memory();
    let settled = eventually(Duration::from_secs(3), || {
        after = server.memory();
        // Besides the steady state's, `procs` keeps a reply channel per
        // caller's mailbox per worker it has answered: one per client per
        // worker at most, whichever workers those are now.
        after.rss_kib * 10 <= before.rss_kib * 11
            && open_fds(server.pid()) <= fds_before + CLIENTS * WORKERS
    });
    let fds_after = open_fds(server.pid());
    let worker_lost = tally.errors_of("worker-lost");

    figures(
        "worker-chaos",
        &[
            ("seconds", scale.chaos_run.as_secs().to_string()),
            ("workers", WORKERS.to_string()),
            ("clients", CLIENTS.to_string()),
            ("requests", tally.requests.to_string()),
            ("right", tally.right.to_string()),
            ("kills", kills.to_string()),
            ("worker_lost", worker_lost.to_string()),
            ("wrong", tally.wrong.len().to_string()),
            ("lost", tally.lost.len().to_string()),
            ("p99", ms(tally.latencies.p99())),
            ("max", ms(tally.latencies.max())),
            ("rss_before", mib(before.rss_kib)),
            ("rss_after", mib(after.rss_kib)),
            ("peak_rss", mib(peak)),
            ("fds_before", fds_before.to_string()),
            ("fds_after", fds_after.to_string()),
            ("respawned", stats["workers"]["respawned"].to_string()),
            ("seed", seed.to_string()),
        ],
    );

    assert!(tally.wrong.is_empty(), "wrong answers: {:?}", tally.wrong);
    assert!(
        tally.lost.is_empty(),
        "requests without a reply: {:?}",
        tally.lost
    );
    let other = tally.errors_other_than(&["worker-lost"]);
    assert!(other.is_empty(), "errors other than worker-lost: {other:?}");
    assert!(
        tally.latencies.max() < JOB_TIMEOUT + Duration::from_secs(1),
        "a request took {:?}, past the job timeout {JOB_TIMEOUT:?}",
        tally.latencies.max()
    );
    assert!(
        kills >= scale.chaos_run.as_millis() as u64 / 400,
        "only {kills} kills"
    );
    assert!(
        worker_lost <= kills,
        "{worker_lost} worker-lost replies for {kills} kills"
    );
    assert!(tally.right > 0, "nothing was answered right: {tally:?}");
    assert!(whole, "the pool is not back to {WORKERS} workers: {stats}");
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert!(
        settled,
        "after the run: RSS {} KiB (before {} KiB), {fds_after} descriptors (before {fds_before})",
        after.rss_kib, before.rss_kib
    );
}
