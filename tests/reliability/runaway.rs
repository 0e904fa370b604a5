//! Runaway jobs: `prime 18446744073709551557` (the largest prime below 2⁶⁴,
//! about 2 × 10⁹ trial divisions) against `--job-timeout 200ms`, under every
//! strategy, while other clients go on.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    figures, keep_alive_clients, mixed_request, ms, one_at_a_time, Latencies, Rng, Scale, Server,
};

/// The runaway request.
const RUNAWAY: &str = "prime 18446744073709551557";
/// The promise: a runaway is answered `ERR timeout` within this.
const ANSWERED_WITHIN: Duration = Duration::from_millis(500);
/// How far apart the runaway requests start.
const EVERY: Duration = Duration::from_millis(400);

/// Under `inline`, a runaway job gets `ERR timeout` within 500 ms while other
/// clients are served.
#[test]
fn runaway_job_times_out_inline() {
    runaway("inline");
}

/// Under `exclusive`, a runaway job gets `ERR timeout` within 500 ms; other
/// clients wait for the lock at most that long.
#[test]
fn runaway_job_times_out_exclusive() {
    runaway("exclusive");
}

/// Under `threads`, a runaway job gets `ERR timeout` within 500 ms while other
/// clients are served by the other worker.
#[test]
fn runaway_job_times_out_threads() {
    runaway("threads");
}

/// Under `procs`, a runaway job gets `ERR timeout` within 500 ms (its worker
/// is killed and replaced) while other clients are served.
#[test]
fn runaway_job_times_out_procs() {
    runaway("procs");
}

fn runaway(apply: &str) {
    let _serial = one_at_a_time();
    let scale = Scale::get();
    let seed = Rng::seed();
    let server = Server::start(
        apply,
        &[
            "--workers",
            "2",
            "--job-timeout",
            "200ms",
            "--log-level",
            "error",
        ],
    );
    let run = EVERY * scale.runaways as u32 + Duration::from_millis(200);
    let until = Instant::now() + run;

    let (runaways, bystanders) = thread::scope(|scope| {
        let runaways = scope.spawn(|| {
            let mut conn = server.line_conn();
            let mut replies = Vec::new();
            let mut took = Latencies::default();
            let start = Instant::now();
            for i in 0..scale.runaways {
                let due = start + EVERY * i as u32 + Duration::from_millis(100);
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let sent = Instant::now();
                let reply = conn.request(RUNAWAY);
                took.push(sent.elapsed());
                replies.push(reply);
            }
            (replies, took)
        });
        let bystanders = keep_alive_clients(
            &server,
            2,
            until,
            Duration::from_secs(5),
            seed,
            mixed_request,
        );
        (runaways.join().expect("runaway client"), bystanders)
    });
    let (replies, took) = runaways;
    let stats = server.stats();

    figures(
        &format!("runaway-{apply}"),
        &[
            ("runaways", replies.len().to_string()),
            (
                "timeouts",
                replies
                    .iter()
                    .filter(|r| r.starts_with("ERR timeout "))
                    .count()
                    .to_string(),
            ),
            ("runaway_max", ms(took.max())),
            ("bystander_requests", bystanders.requests.to_string()),
            ("bystander_wrong", bystanders.wrong.len().to_string()),
            ("bystander_lost", bystanders.lost.len().to_string()),
            ("bystander_p99", ms(bystanders.latencies.p99())),
            ("bystander_max", ms(bystanders.latencies.max())),
            ("seed", seed.to_string()),
        ],
    );

    for reply in &replies {
        assert!(
            reply.starts_with("ERR timeout "),
            "{apply}: {RUNAWAY} got {reply:?}"
        );
    }
    assert!(
        took.max() < ANSWERED_WITHIN,
        "{apply}: a runaway was answered after {:?}",
        took.max()
    );
    assert!(
        bystanders.wrong.is_empty(),
        "{apply}: wrong answers {:?}",
        bystanders.wrong
    );
    assert!(
        bystanders.lost.is_empty(),
        "{apply}: lost {:?}",
        bystanders.lost
    );
    assert!(
        bystanders.errors.is_empty(),
        "{apply}: errors {:?}",
        bystanders.errors
    );
    // Served meanwhile: many requests, none held up longer than a runaway's
    // own timeout and then some.
    assert!(
        bystanders.requests >= 10 * scale.runaways as u64,
        "{apply}: only {} bystander requests",
        bystanders.requests
    );
    assert!(
        bystanders.latencies.p99() < ANSWERED_WITHIN,
        "{apply}: bystanders' p99 {:?}",
        bystanders.latencies.p99()
    );
    assert_eq!(
        stats["jobs"]["prime"]["timeout"].as_u64(),
        Some(scale.runaways as u64),
        "{apply}: timeouts counted: {stats}"
    );
    assert!(
        server.pings(),
        "{apply}: the server answers ping afterwards"
    );
}
