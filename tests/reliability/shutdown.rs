//! Shutdown under load: SIGTERM while four clients keep the server busy (it
//! answers what it read, exits 0 within `--grace`, leaves no process), and
//! SIGKILL (the fork server and every worker follow within a second).

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    eventually, expected, figures, mixed_request, ms, one_at_a_time, states, Latencies, Proc, Rng,
    Scale, Server, IO_TIMEOUT,
};

/// Clients.
const CLIENTS: usize = 4;
/// The server's `--grace`.
const GRACE: Duration = Duration::from_secs(3);

/// What one client saw of a run that ended with the server.
#[derive(Debug, Default)]
struct Ending {
    /// Replies with the right answer.
    right: u64,
    /// Right answers that arrived after the signal: requests in flight then.
    right_after_signal: u64,
    /// `ERR shutting-down` replies.
    shutting_down: u64,
    /// Anything else: wrong answers, other errors, cut replies, timeouts.
    bad: Vec<(String, String)>,
    /// Requests sent that got no reply at all, the connection closing
    /// instead: the server never read them. At most the last one.
    unanswered: u64,
}

/// A third of the requests sleep 200 ms, so that some are always in flight.
fn with_sleeps(rng: &mut Rng) -> String {
    if rng.below(3) == 0 {
        "sleep 200".to_owned()
    } else {
        mixed_request(rng)
    }
}

/// Sends requests one at a time until the server closes the connection.
fn run_until_closed(
    server: &Server,
    seed: u64,
    signalled: &std::sync::OnceLock<Instant>,
) -> Ending {
    let mut rng = Rng::new(seed);
    let mut ending = Ending::default();
    let mut conn = server.line_conn();
    conn.set_read_timeout(GRACE + Duration::from_secs(2));
    let deadline = Instant::now() + IO_TIMEOUT + GRACE;
    while Instant::now() < deadline {
        let request = with_sleeps(&mut rng);
        if conn.try_send(format!("{request}\n").as_bytes()).is_err() {
            break;
        }
        match conn.try_read_line() {
            Ok(reply) if reply == expected(&request) => {
                ending.right += 1;
                if signalled.get().is_some() {
                    ending.right_after_signal += 1;
                }
            }
            Ok(reply) if reply.starts_with("ERR shutting-down ") => {
                // A polite client pauses before it tries again.
                ending.shutting_down += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Ok(reply) => ending.bad.push((request, reply)),
            Err(err) if is_plain_close(&err) => {
                ending.unanswered += 1;
                break;
            }
            Err(err) => {
                ending.bad.push((request, err.to_string()));
                break;
            }
        }
    }
    ending
}

/// 50 to 150 ms, a different amount each round.
fn off_grid(seed: u64, round: usize) -> Duration {
    Duration::from_millis(50 + Rng::new(seed ^ round as u64).below(100))
}

/// A close with not one byte of a reply: EOF or a reset.
fn is_plain_close(err: &io::Error) -> bool {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => true,
        io::ErrorKind::UnexpectedEof => err.to_string().contains("unterminated bytes \"\""),
        _ => false,
    }
}

/// SIGTERM under `inline` in the middle of four clients' load.
#[test]
fn sigterm_under_load_answers_what_was_read_inline() {
    sigterm_under_load("inline");
}

/// SIGTERM under `exclusive` in the middle of four clients' load.
#[test]
fn sigterm_under_load_answers_what_was_read_exclusive() {
    sigterm_under_load("exclusive");
}

/// SIGTERM under `threads` in the middle of four clients' load.
#[test]
fn sigterm_under_load_answers_what_was_read_threads() {
    sigterm_under_load("threads");
}

/// SIGTERM under `procs` in the middle of four clients' load; the fork
/// server and the workers go too.
#[test]
fn sigterm_under_load_answers_what_was_read_procs() {
    sigterm_under_load("procs");
}

/// Every request the server read is answered (right, or `ERR
/// shutting-down`); it exits 0 within `--grace`; no process is left.
fn sigterm_under_load(apply: &str) {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let seed = Rng::seed();
    let mut exits = Latencies::default();
    let mut total = Ending::default();
    for round in 0..scale.shutdown_rounds {
        let server = Server::start(apply, &["--workers", "2", "--grace", "3s"]);
        if apply == "procs" {
            server
                .process_tree_within(2, IO_TIMEOUT)
                .expect("the pool starts");
        }
        let tree = server.descendants();
        let signalled = std::sync::OnceLock::new();
        let (endings, status, took) = thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let (server, signalled) = (&server, &signalled);
                    scope.spawn(move || {
                        run_until_closed(server, seed ^ (i + round * CLIENTS) as u64, signalled)
                    })
                })
                .collect();
            // Off the 200 ms grid of the sleeps, which all started together:
            // a signal on it would find every sleep about to end.
            thread::sleep(scale.shutdown_after + off_grid(seed, round));
            server.signal(Signal::SIGTERM);
            let at = Instant::now();
            signalled.set(at).unwrap();
            let status = server.wait_exit(GRACE + Duration::from_secs(2));
            let took = at.elapsed();
            let endings: Vec<Ending> = clients
                .into_iter()
                .map(|c| c.join().expect("client"))
                .collect();
            (endings, status, took)
        });
        let log = server.log();
        for ending in &endings {
            assert!(
                ending.bad.is_empty(),
                "{apply} round {round}: {:?}",
                ending.bad
            );
            assert!(ending.unanswered <= 1, "{apply} round {round}: {ending:?}");
            total.right += ending.right;
            total.right_after_signal += ending.right_after_signal;
            total.shutting_down += ending.shutting_down;
            total.unanswered += ending.unanswered;
        }
        assert_eq!(
            status.code(),
            Some(0),
            "{apply} round {round}: exit status {status}"
        );
        assert!(
            took < GRACE,
            "{apply} round {round}: exited {took:?} after SIGTERM"
        );
        assert!(
            !log.contains("cutting the remaining requests short"),
            "{apply} round {round}: requests were cut:\n{log}"
        );
        assert!(
            eventually(Duration::from_secs(1), || tree.iter().all(Proc::has_exited)),
            "{apply} round {round}: left behind {:?}",
            states(&tree)
        );
        exits.push(took);
    }
    figures(
        &format!("sigterm-{apply}"),
        &[
            ("rounds", scale.shutdown_rounds.to_string()),
            ("answered", total.right.to_string()),
            (
                "answered_after_signal",
                total.right_after_signal.to_string(),
            ),
            ("shutting_down", total.shutting_down.to_string()),
            ("never_read", total.unanswered.to_string()),
            ("wrong", "0".to_owned()),
            ("lost", "0".to_owned()),
            ("exit_max", ms(exits.max())),
            ("seed", seed.to_string()),
        ],
    );
    assert!(
        total.right_after_signal > 0,
        "{apply}: nothing was in flight at the signal"
    );
}

/// SIGKILL of a loaded `procs` server takes the fork server and every worker
/// with it within a second, round after round.
#[test]
fn sigkill_under_load_takes_the_tree_within_a_second() {
    let _serial = one_at_a_time();
    // Orphans are re-parented to this process, which reaps them (in the
    // `Server` guard): the sandbox's pid 1 may not.
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let scale = Scale::get();
    let seed = Rng::seed();
    let mut gone = Latencies::default();
    for round in 0..scale.shutdown_rounds * 2 {
        let server = Server::start("procs", &["--workers", "4", "--log-level", "error"]);
        let (fork_server, workers) = server
            .process_tree_within(4, IO_TIMEOUT)
            .expect("the pool starts");
        let tree = [vec![fork_server], workers].concat();
        let signalled = std::sync::OnceLock::new();
        let took = thread::scope(|scope| {
            for i in 0..CLIENTS {
                let (server, signalled) = (&server, &signalled);
                scope.spawn(move || {
                    run_until_closed(server, seed ^ (i + round * CLIENTS) as u64, signalled)
                });
            }
            thread::sleep(scale.shutdown_after);
            server.signal(Signal::SIGKILL);
            let at = Instant::now();
            signalled.set(at).unwrap();
            server.wait_exit(IO_TIMEOUT);
            let all_gone = eventually(Duration::from_secs(2), || tree.iter().all(Proc::has_exited));
            let took = at.elapsed();
            assert!(all_gone, "round {round}: left behind {:?}", states(&tree));
            took
        });
        assert!(
            took < Duration::from_secs(1),
            "round {round}: the tree took {took:?} to go"
        );
        gone.push(took);
    }
    figures(
        "sigkill-procs",
        &[
            ("rounds", gone.len().to_string()),
            ("descendants_per_round", "5".to_owned()),
            ("tree_gone_max", ms(gone.max())),
            ("seed", seed.to_string()),
        ],
    );
}
