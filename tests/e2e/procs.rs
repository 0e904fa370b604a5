//! What only the process pool can show: a worker killed in the middle of a
//! job, and the whole process tree going away when the server is SIGKILLed.
//!
//! The tree is found in `/proc`: the server's only child is the fork server,
//! and the fork server's children are the workers.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{both_io, eventually, states, Io, Proc, Server, IO_TIMEOUT};

both_io!(
    killed_worker_answers_worker_lost,
    sigkill_of_the_server_takes_the_tree_down,
    recycled_and_timed_out_workers_are_counted,
);

/// Workers retired by `--recycle-after` and killed by `--job-timeout` are
/// counted apart in `stats` (and so in `/metrics`), each also a respawn.
fn recycled_and_timed_out_workers_are_counted(io: Io) {
    let server = Server::start(
        io,
        "procs",
        &[
            "--workers",
            "1",
            "--recycle-after",
            "2",
            "--job-timeout",
            "300ms",
        ],
    );
    server.process_tree(1);
    let mut conn = server.line_conn();
    for n in 1..=4u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    assert!(conn.request("sleep 5000").starts_with("ERR timeout"));
    let mut workers = serde_json::Value::Null;
    let counted = eventually(IO_TIMEOUT, || {
        workers = server.stats()["workers"].clone();
        workers["respawned"] == 3 && workers["alive"] == 1
    });
    assert!(counted, "{workers}");
    assert_eq!(workers["recycled"], 2, "two jobs each, twice: {workers}");
    assert_eq!(workers["killed_timeout"], 1, "{workers}");
}

/// SIGKILL of the worker running a job answers that job with
/// `ERR worker-lost …`, and the pool replaces the worker and keeps serving.
fn killed_worker_answers_worker_lost(io: Io) {
    let server = Server::start(io, "procs", &["--workers", "2", "--job-timeout", "0"]);
    let (_, workers) = server.process_tree(2);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 10"), "55");

    // A sum that would run for centuries keeps one worker on the CPU.
    conn.send("sumn 18446744073709551615\n");
    thread::sleep(Duration::from_millis(200));
    let mut running = Vec::new();
    let found = eventually(Duration::from_secs(5), || {
        running = workers
            .iter()
            .filter(|w| w.now().is_some_and(|now| now.state == 'R'))
            .copied()
            .collect();
        running.len() == 1
    });
    assert!(
        found,
        "want exactly one worker in state R: {:?}",
        states(&workers)
    );
    let victim = running[0];
    kill(Pid::from_raw(victim.pid), Signal::SIGKILL).expect("kill the worker");

    let reply = conn.read_line();
    assert!(reply.starts_with("ERR worker-lost "), "got {reply:?}");
    assert_eq!(conn.request("sumn 25000"), "312512500", "serves again");

    let mut stats = serde_json::Value::Null;
    let replaced = eventually(Duration::from_secs(5), || {
        stats = server.stats();
        stats["workers"]["alive"].as_u64() == Some(2)
            && stats["workers"]["respawned"]
                .as_u64()
                .is_some_and(|n| n >= 1)
    });
    assert!(replaced, "the worker was not replaced: {stats}");
    assert!(
        stats["jobs"]["sumn"]["worker_lost"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "worker-lost not counted: {stats}"
    );
}

/// SIGKILL of the server takes the fork server and every worker with it
/// within a second.
fn sigkill_of_the_server_takes_the_tree_down(io: Io) {
    // Orphans are re-parented to this process, which reaps them (in the
    // `Server` guard): the sandbox's pid 1 may not.
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let server = Server::start(io, "procs", &["--workers", "2"]);
    let (fork_server, workers) = server.process_tree(2);
    let tree = [vec![fork_server], workers].concat();
    assert_eq!(server.line_conn().request("sumn 10"), "55");

    let killed = Instant::now();
    server.signal(Signal::SIGKILL);
    server.wait_exit(IO_TIMEOUT);
    let within = Duration::from_secs(1).saturating_sub(killed.elapsed());
    let gone = eventually(within, || tree.iter().all(Proc::has_exited));
    assert!(
        gone,
        "still running {:?} after SIGKILL of the server: {:?}",
        killed.elapsed(),
        states(&tree)
    );
}
