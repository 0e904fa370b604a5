//! The in-process strategies (`inline`, `exclusive`, `threads`) under the
//! ordinary test harness. `procs` must not be forked from this threaded
//! process; it has its own target, `procs.rs`.

mod common;

use std::time::{Duration, Instant};

use offload::{
    Answer, ApplyError, BusyReason, Job, StartError, Strategy, StrategyConfig, StrategyKind,
};

const IN_PROCESS: [StrategyKind; 3] = [
    StrategyKind::Inline,
    StrategyKind::Exclusive,
    StrategyKind::Threads,
];

fn start(kind: StrategyKind, tweak: impl FnOnce(&mut StrategyConfig)) -> Strategy {
    let mut config = StrategyConfig::new(kind);
    tweak(&mut config);
    Strategy::start(&config).expect("strategy starts")
}

/// Smoke: the seed's job gives the seed's answer under each strategy.
#[test]
fn smoke() {
    for kind in IN_PROCESS {
        let strategy = start(kind, |_| {});
        assert_eq!(
            strategy.apply(Job::Sumn(25_000)),
            Ok(Answer::Sum(312_512_500)),
            "{kind}"
        );
        assert_eq!(strategy.stats().jobs[&offload::JobKind::Sumn].ok, 1);
    }
}

/// The same random jobs, applied from four threads at once, give the same
/// answers under every in-process strategy, and the sums match the formula.
#[test]
fn identical_answers_from_many_threads() {
    let jobs = common::random_jobs(300, 7);
    let mut results = Vec::new();
    for kind in IN_PROCESS {
        let strategy = start(kind, |c| c.workers = 2);
        let answers = common::apply_from_four_threads(&strategy, &jobs);
        results.push(answers);
    }
    for (job, answer) in jobs.iter().zip(&results[0]) {
        if let Some(expected) = common::closed_form(*job) {
            assert_eq!(*answer, expected, "{job}");
        }
    }
    assert_eq!(results[0], results[1], "inline vs exclusive");
    assert_eq!(results[0], results[2], "inline vs threads");
}

/// A runaway job stops at a yield point soon after the job timeout.
#[test]
fn timeout_stops_runaway_job() {
    for kind in IN_PROCESS {
        let strategy = start(kind, |c| c.job_timeout = Some(Duration::from_millis(100)));
        let started = Instant::now();
        let result = strategy.apply(Job::Prime(18_446_744_073_709_551_557));
        let took = started.elapsed();
        assert!(
            matches!(result, Err(ApplyError::Timeout { .. })),
            "{kind}: {result:?}"
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{kind}: {took:?}"
        );
        // The strategy is still whole.
        assert_eq!(
            strategy.apply(Job::Prime(7)),
            Ok(Answer::Prime(true)),
            "{kind}"
        );
        assert_eq!(strategy.stats().jobs[&offload::JobKind::Prime].timeout, 1);
    }
}

/// A panicking job fails its caller only; the strategy keeps its workers.
#[test]
fn panic_is_contained() {
    for kind in IN_PROCESS {
        let strategy = start(kind, |c| c.workers = 2);
        let result = strategy.apply(Job::Panic);
        assert!(
            matches!(&result, Err(ApplyError::JobPanicked { message, .. }) if message.contains("fault-injection")),
            "{kind}: {result:?}"
        );
        assert_eq!(strategy.apply(Job::Sumn(10)), Ok(Answer::Sum(55)), "{kind}");
        let stats = strategy.stats();
        assert_eq!(stats.workers.alive, stats.workers.configured, "{kind}");
    }
}

/// With every worker busy, a job waits the queue wait and is refused as busy;
/// with the queue full, it is refused at once.
#[test]
fn busy_when_no_worker_is_free() {
    for kind in [StrategyKind::Exclusive, StrategyKind::Threads] {
        let strategy = start(kind, |c| {
            c.workers = 1;
            c.queue = 1;
            c.queue_wait = Duration::from_millis(50);
        });
        std::thread::scope(|scope| {
            scope.spawn(|| strategy.apply(Job::Sleep(600)));
            while strategy.stats().workers.busy == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = Instant::now();
            let result = strategy.apply(Job::Sumn(1));
            assert!(
                matches!(result, Err(ApplyError::Busy { .. })),
                "{kind}: {result:?}"
            );
            assert!(started.elapsed() >= Duration::from_millis(50), "{kind}");
        });
        assert_eq!(
            strategy.stats().jobs[&offload::JobKind::Sumn].busy,
            1,
            "{kind}"
        );
        assert_eq!(strategy.stats().queued, 0, "{kind}: nothing left queued");
    }
}

/// `exclusive` runs one job at a time: two 100 ms sleeps from two threads
/// take at least 200 ms; under `threads` with two workers they overlap.
#[test]
fn exclusive_serialises_threads_overlap() {
    for (kind, serial) in [
        (StrategyKind::Exclusive, true),
        (StrategyKind::Threads, false),
    ] {
        let strategy = start(kind, |c| c.workers = 2);
        let started = Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| strategy.apply(Job::Sleep(100)).expect("slept"));
            scope.spawn(|| strategy.apply(Job::Sleep(100)).expect("slept"));
        });
        let took = started.elapsed();
        assert_eq!(
            took >= Duration::from_millis(200),
            serial,
            "{kind}: {took:?}"
        );
    }
}

/// `procs` refuses to start in a binary whose `main` does not call
/// `fork_server_main_if_requested` (this test harness's does not), with an
/// error that says what to call, instead of running the binary again.
#[test]
fn procs_refuses_an_unprepared_host() {
    let err = Strategy::start(&StrategyConfig::new(StrategyKind::Procs)).expect_err("unprepared");
    assert!(matches!(err, StartError::HostNotPrepared), "{err}");
    assert!(
        err.to_string().contains("fork_server_main_if_requested"),
        "{err}"
    );
}

/// Under `threads`, a job that no worker takes within the queue wait is
/// refused at the deadline, not when a worker frees up, and never runs;
/// both for `apply` and for `submit`.
#[test]
fn threads_busy_at_the_queue_wait() {
    let wait = Duration::from_millis(100);
    let strategy = start(StrategyKind::Threads, |c| {
        c.workers = 1;
        c.queue_wait = wait;
    });
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| strategy.apply(Job::Sleep(1_500)));
        while strategy.stats().workers.busy == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let result = strategy.apply(Job::Sumn(5));
        let took = started.elapsed();
        let busy = Err(ApplyError::Busy {
            job: Job::Sumn(5),
            reason: BusyReason::Waited { queue_wait: wait },
        });
        assert_eq!(result, busy);
        assert!(
            took >= wait && took < Duration::from_millis(800),
            "{took:?}"
        );

        let (tx, rx) = std::sync::mpsc::channel();
        let submitted = Instant::now();
        strategy.submit(Job::Sumn(5), move |result| {
            let _ = tx.send((result, submitted.elapsed()));
        });
        let (result, took) = rx.recv_timeout(Duration::from_secs(5)).expect("completed");
        assert_eq!(result, busy);
        assert!(
            took >= wait && took < Duration::from_millis(800),
            "{took:?}"
        );
        assert_eq!(sleeper.join().expect("no panic"), Ok(Answer::Slept));
    });
    // The worker is free again: had the refused jobs stayed queued, it would
    // run them now.
    std::thread::sleep(Duration::from_millis(100));
    let sumn = strategy.stats().jobs[&offload::JobKind::Sumn].clone();
    assert_eq!((sumn.ok, sumn.busy), (0, 2), "{sumn:?}");
}

/// A queue wait of zero serves a job when a worker is free, and refuses it
/// at once, saying so, when none is; the same under every queued strategy
/// but `procs` (tested in `procs.rs`).
#[test]
fn zero_queue_wait_means_a_free_worker_now() {
    for kind in [StrategyKind::Exclusive, StrategyKind::Threads] {
        let strategy = start(kind, |c| {
            c.workers = 1;
            c.queue_wait = Duration::ZERO;
        });
        // Give the worker thread time to wait for work.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(strategy.apply(Job::Sumn(5)), Ok(Answer::Sum(15)), "{kind}");
        let (tx, rx) = std::sync::mpsc::channel();
        strategy.submit(Job::Sumn(5), move |result| {
            let _ = tx.send(result);
        });
        assert_eq!(rx.recv().expect("completed"), Ok(Answer::Sum(15)), "{kind}");
        std::thread::scope(|scope| {
            scope.spawn(|| strategy.apply(Job::Sleep(500)));
            while strategy.stats().workers.busy == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let started = Instant::now();
            let result = strategy.apply(Job::Sumn(1));
            assert_eq!(
                result,
                Err(ApplyError::Busy {
                    job: Job::Sumn(1),
                    reason: BusyReason::NoneFree
                }),
                "{kind}"
            );
            assert!(started.elapsed() < Duration::from_millis(200), "{kind}");
        });
    }
}
