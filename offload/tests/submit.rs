//! `Strategy::submit`, the non-blocking way in, for the in-process strategies
//! (`procs` has its cases in `procs.rs`): every submission completes exactly
//! once — answered, busy, timed out, or refused at shutdown.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Completions;
use offload::{Answer, ApplyError, BusyReason, Job, Strategy, StrategyConfig, StrategyKind};

const IN_PROCESS: [StrategyKind; 3] = [
    StrategyKind::Inline,
    StrategyKind::Exclusive,
    StrategyKind::Threads,
];

const WAIT: Duration = Duration::from_secs(10);

fn start(kind: StrategyKind, tweak: impl FnOnce(&mut StrategyConfig)) -> Strategy {
    let mut config = StrategyConfig::new(kind);
    tweak(&mut config);
    Strategy::start(&config).expect("strategy starts")
}

/// Smoke: a submitted job's answer comes back through the callback, and is
/// counted in the statistics like an applied one.
#[test]
fn smoke() {
    for kind in IN_PROCESS {
        let strategy = start(kind, |_| {});
        let mut completions = Completions::new();
        completions.submit(&strategy, Job::Sumn(25_000));
        completions.submit(&strategy, Job::Prime(1_000_003));
        assert_eq!(
            completions.all(WAIT),
            vec![Ok(Answer::Sum(312_512_500)), Ok(Answer::Prime(true))],
            "{kind}"
        );
        assert_eq!(
            strategy.stats().jobs[&offload::JobKind::Sumn].ok,
            1,
            "{kind}"
        );
    }
}

/// `inline` and `exclusive` run the job on the submitting thread: the
/// callback has run before `submit` returns.
#[test]
fn inline_and_exclusive_complete_before_returning() {
    for kind in [StrategyKind::Inline, StrategyKind::Exclusive] {
        let strategy = start(kind, |_| {});
        let called = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&called);
        strategy.submit(Job::Sleep(20), move |result| {
            assert_eq!(result, Ok(Answer::Slept));
            flag.store(true, Ordering::SeqCst);
        });
        assert!(called.load(Ordering::SeqCst), "{kind}");
    }
}

/// `threads`: `submit` returns at once while a worker runs the job, and a
/// full queue is refused as busy at once instead of waited on.
#[test]
fn threads_submit_never_waits() {
    let strategy = start(StrategyKind::Threads, |c| {
        c.workers = 1;
        c.queue = 1;
        c.queue_wait = Duration::from_secs(5);
    });
    let mut completions = Completions::new();
    let started = Instant::now();
    completions.submit(&strategy, Job::Sleep(300));
    while strategy.stats().workers.busy == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    completions.submit(&strategy, Job::Sleep(1)); // waits in the queue
    let refused = completions.submit(&strategy, Job::Sumn(1)); // no room
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "submit waited: {:?}",
        started.elapsed()
    );
    let results = completions.all(WAIT);
    assert_eq!(results[0], Ok(Answer::Slept));
    assert_eq!(results[1], Ok(Answer::Slept));
    assert!(
        matches!(
            results[refused],
            Err(ApplyError::Busy {
                reason: BusyReason::QueueFull { queued: 1 },
                ..
            })
        ),
        "{:?}",
        results[refused]
    );
    assert_eq!(strategy.stats().queued, 0);
}

/// `exclusive`: while another thread holds the token, a submission is busy
/// at once rather than waiting for it.
#[test]
fn exclusive_submit_does_not_wait_for_the_token() {
    let strategy = start(StrategyKind::Exclusive, |c| {
        c.queue_wait = Duration::from_secs(5)
    });
    std::thread::scope(|scope| {
        scope.spawn(|| strategy.apply(Job::Sleep(300)));
        while strategy.stats().workers.busy == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut completions = Completions::new();
        let started = Instant::now();
        completions.submit(&strategy, Job::Sumn(1));
        assert!(started.elapsed() < Duration::from_millis(100));
        let results = completions.all(WAIT);
        assert!(
            matches!(results[0], Err(ApplyError::Busy { .. })),
            "{results:?}"
        );
    });
}

/// A submitted job over its timeout completes as a timeout.
#[test]
fn submitted_job_times_out() {
    for kind in IN_PROCESS {
        let strategy = start(kind, |c| c.job_timeout = Some(Duration::from_millis(100)));
        let mut completions = Completions::new();
        completions.submit(&strategy, Job::Prime(18_446_744_073_709_551_557));
        let results = completions.all(WAIT);
        assert!(
            matches!(results[0], Err(ApplyError::Timeout { .. })),
            "{kind}: {results:?}"
        );
    }
}

/// Shutdown: jobs submitted afterwards are refused, the one running stops at
/// its next yield point, and the ones still queued when the strategy is
/// dropped complete as shutting down — none is lost.
#[test]
fn every_submission_completes_at_shutdown() {
    let strategy = start(StrategyKind::Threads, |c| {
        c.workers = 1;
        c.queue = 8;
    });
    let mut completions = Completions::new();
    completions.submit(&strategy, Job::Sleep(2_000));
    for _ in 0..5 {
        completions.submit(&strategy, Job::Sumn(u64::MAX));
    }
    while strategy.stats().workers.busy == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    strategy.shutdown();
    let late = completions.submit(&strategy, Job::Sumn(1));
    let started = Instant::now();
    drop(strategy);
    let results = completions.all(WAIT);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "stopped promptly"
    );
    for (id, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(ApplyError::ShuttingDown { .. })),
            "submission {id}: {result:?}"
        );
    }
    assert!(matches!(
        results[late],
        Err(ApplyError::ShuttingDown { job: Job::Sumn(1) })
    ));
}

/// `apply` and `submit` share the queue: jobs from both, at once, all come
/// back with the right answers.
#[test]
fn apply_and_submit_together() {
    let strategy = start(StrategyKind::Threads, |c| c.workers = 2);
    let jobs = common::random_jobs(100, 11);
    let mut completions = Completions::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for job in &jobs {
                let answer = strategy.apply(*job).expect("answer");
                if let Some(expected) = common::closed_form(*job) {
                    assert_eq!(answer, expected, "{job}");
                }
            }
        });
        for job in &jobs {
            completions.submit(&strategy, *job);
        }
    });
    for (job, result) in jobs.iter().zip(completions.all(WAIT)) {
        if let Some(expected) = common::closed_form(*job) {
            assert_eq!(result, Ok(expected), "{job}");
        } else {
            assert!(result.is_ok(), "{job}: {result:?}");
        }
    }
}
