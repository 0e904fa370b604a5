//! The `procs` strategy, tested from a binary that keeps the host's duty:
//! `main` calls `offload::fork_server_main_if_requested()` before anything
//! else, so that every pool can start its fork server (and a replacement)
//! from this executable.
//!
//! Run with `cargo test -p ysum-offload --test procs`; a name filter may follow
//! (`-- kill`).

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use offload::{Answer, ApplyError, BusyReason, Exit, Job, Strategy, StrategyConfig, StrategyKind};

/// Set in the environment of a copy of this binary that plays a server to be
/// killed by SIGKILL.
const VICTIM_ENV: &str = "OFFLOAD_TEST_VICTIM";

const K: usize = 2;

/// A test case: it panics to fail.
type Case = fn();

fn main() -> ExitCode {
    offload::fork_server_main_if_requested();
    if std::env::var_os(VICTIM_ENV).is_some() {
        return victim();
    }
    // Orphans of the killed victim come to this process, which reaps them,
    // instead of to a pid 1 that may not.
    nix::sys::prctl::set_child_subreaper(true).expect("become a subreaper");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, Case); 18] = [
        ("smoke", smoke),
        (
            "identical_answers_across_strategies",
            identical_answers_across_strategies,
        ),
        ("kill_busy_worker_20_times", kill_busy_worker_20_times),
        (
            "a_kill_fails_only_the_running_job",
            a_kill_fails_only_the_running_job,
        ),
        (
            "worker_descriptors_stay_bounded",
            worker_descriptors_stay_bounded,
        ),
        (
            "idle_worker_death_is_replaced",
            idle_worker_death_is_replaced,
        ),
        ("timeout_kills_and_replaces", timeout_kills_and_replaces),
        (
            "staggered_timeouts_each_end_on_time",
            staggered_timeouts_each_end_on_time,
        ),
        ("panic_is_contained", panic_is_contained),
        ("recycling_replaces_workers", recycling_replaces_workers),
        (
            "busy_when_all_workers_are_taken",
            busy_when_all_workers_are_taken,
        ),
        (
            "submit_completes_exactly_once",
            submit_completes_exactly_once,
        ),
        (
            "an_event_loop_reads_the_results",
            an_event_loop_reads_the_results,
        ),
        (
            "no_orphans_when_the_server_is_killed",
            no_orphans_when_the_server_is_killed,
        ),
        ("busy_at_the_queue_wait", busy_at_the_queue_wait),
        ("zero_queue_wait_serves", zero_queue_wait_serves),
        ("fork_server_death_is_healed", fork_server_death_is_healed),
        (
            "fork_server_inherits_no_stray_descriptors",
            fork_server_inherits_no_stray_descriptors,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2?})", started.elapsed());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    if !common::zombies_of(&[std::process::id()]).is_empty() {
        println!("a fork server was not reaped at the end");
        failed += 1;
    }
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn pool(tweak: impl FnOnce(&mut StrategyConfig)) -> Strategy {
    let mut config = StrategyConfig::new(StrategyKind::Procs);
    config.workers = K;
    tweak(&mut config);
    Strategy::start(&config).expect("pool starts")
}

/// Waits for the pool to have K workers again; returns how long it took.
fn back_to_k(strategy: &Strategy, since: Instant) -> Duration {
    assert!(
        strategy.wait_for_workers(Duration::from_secs(2)),
        "pool back to {K} workers"
    );
    assert_eq!(strategy.worker_pids().len(), K);
    since.elapsed()
}

fn assert_no_zombies(strategy: &Strategy) {
    let parents = [
        std::process::id(),
        strategy.fork_server_pid().expect("procs"),
    ];
    assert_eq!(common::zombies_of(&parents), Vec::<u32>::new(), "zombies");
}

/// Smoke: the seed's job gives the seed's answer, from K live workers, and
/// dropping the pool ends them all.
fn smoke() {
    let strategy = pool(|_| {});
    assert_eq!(
        strategy.apply(Job::Sumn(25_000)),
        Ok(Answer::Sum(312_512_500))
    );
    let pids = strategy.worker_pids();
    assert_eq!(pids.len(), K);
    assert!(pids.iter().all(|&pid| common::proc_state(pid)
        .is_some_and(|(_, parent)| Some(parent) == strategy.fork_server_pid())));
    drop(strategy);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids.iter().all(|&pid| common::has_exited(pid)) {
        assert!(
            Instant::now() < deadline,
            "workers still alive after the pool was dropped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The same few hundred random jobs, applied from four threads, give the same
/// answers under all four strategies.
fn identical_answers_across_strategies() {
    let jobs = common::random_jobs(300, 11);
    let run = |strategy: &Strategy| common::apply_from_four_threads(strategy, &jobs);
    let procs = run(&pool(|_| {}));
    for kind in [
        StrategyKind::Inline,
        StrategyKind::Exclusive,
        StrategyKind::Threads,
    ] {
        let other = run(&Strategy::start(&StrategyConfig::new(kind)).expect("starts"));
        assert_eq!(procs, other, "procs vs {kind}");
    }
    for (job, answer) in jobs.iter().zip(&procs) {
        if let Some(expected) = common::closed_form(*job) {
            assert_eq!(*answer, expected, "{job}");
        }
    }
}

/// SIGKILL a busy worker 20 times in a row: each time only its job fails, as
/// `WorkerLost` naming its pid and SIGKILL; the next jobs succeed; the pool is
/// back to K workers (median under 100 ms); no zombie is left.
fn kill_busy_worker_20_times() {
    let strategy = pool(|c| c.job_timeout = None);
    let mut respawn_times = Vec::new();
    for round in 0..20 {
        std::thread::scope(|scope| {
            let victim_job = scope.spawn(|| strategy.apply(Job::Sumn(u64::MAX)));
            let busy = loop {
                if let [pid] = strategy.busy_worker_pids()[..] {
                    break pid;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            // Another job, on the other worker, is not disturbed.
            assert_eq!(
                strategy.apply(Job::Sumn(100)),
                Ok(Answer::Sum(5050)),
                "round {round}"
            );
            kill(Pid::from_raw(busy as i32), Signal::SIGKILL).expect("kill the busy worker");
            let killed_at = Instant::now();
            let result = victim_job.join().expect("no panic");
            assert_eq!(
                result,
                Err(ApplyError::WorkerLost {
                    job: Job::Sumn(u64::MAX),
                    pid: busy,
                    exit: Exit::Signal(9)
                }),
                "round {round}"
            );
            assert!(
                killed_at.elapsed() < Duration::from_secs(1),
                "the loss was seen promptly"
            );
            respawn_times.push(back_to_k(&strategy, killed_at));
            assert!(!strategy.worker_pids().contains(&busy));
            for n in [1, 10, 1000] {
                assert_eq!(
                    strategy.apply(Job::Sumn(n)),
                    Ok(Answer::Sum(u128::from(n) * u128::from(n + 1) / 2))
                );
            }
        });
    }
    assert_no_zombies(&strategy);
    let stats = strategy.stats();
    assert_eq!(stats.jobs[&offload::JobKind::Sumn].worker_lost, 20);
    assert_eq!(stats.workers.respawned, 20);
    respawn_times.sort();
    let median = respawn_times[respawn_times.len() / 2];
    println!(
        "    back to {K} workers after a kill: median {median:.2?}, max {:.2?}",
        respawn_times.last().unwrap()
    );
    assert!(
        median < Duration::from_millis(100),
        "median respawn {median:?}"
    );
}

/// Every submission to the pool completes exactly once, on a collector thread,
/// without `submit` ever blocking: answered, busy (queue full), timed out,
/// worker lost, and refused or cut short at shutdown.
fn submit_completes_exactly_once() {
    let strategy = pool(|c| {
        // Room for three waiting later.
        c.queue = 3;
        c.job_timeout = Some(Duration::from_millis(300));
    });
    let mut completions = common::Completions::new();
    let started = Instant::now();
    let answered = completions.submit(&strategy, Job::Sumn(25_000));
    let timed_out = completions.submit(&strategy, Job::Sleep(5_000));
    let lost = completions.submit(&strategy, Job::Sleep(5_000));
    // Wait until both sleeps run, so that the queue is empty again.
    let busy = loop {
        let pids = strategy.busy_worker_pids();
        if pids.len() == K && strategy.stats().queued == 0 {
            break pids[0];
        }
        assert!(started.elapsed() < Duration::from_secs(2), "workers busy");
        std::thread::sleep(Duration::from_millis(1));
    };
    // Both workers are busy: three more wait, the next is refused at once.
    let submitting = Instant::now();
    let waiting = [
        completions.submit(&strategy, Job::Sumn(10)),
        completions.submit(&strategy, Job::Sumn(20)),
        completions.submit(&strategy, Job::Sumn(3)),
    ];
    let refused = completions.submit(&strategy, Job::Sumn(30));
    assert!(
        submitting.elapsed() < Duration::from_millis(100),
        "submit blocked: {:?}",
        submitting.elapsed()
    );
    // One of the two sleeps is lost, the other times out.
    kill(Pid::from_raw(busy as i32), Signal::SIGKILL).expect("kill a busy worker");
    let results = completions.all(Duration::from_secs(10));
    assert_eq!(results[answered], Ok(Answer::Sum(312_512_500)));
    let sleeps = [&results[timed_out], &results[lost]];
    assert!(
        sleeps
            .iter()
            .any(|r| matches!(r, Err(ApplyError::WorkerLost { .. }))),
        "{sleeps:?}"
    );
    assert!(
        sleeps.iter().all(|r| matches!(
            r,
            Err(ApplyError::WorkerLost { .. } | ApplyError::Timeout { .. })
        )),
        "{sleeps:?}"
    );
    assert_eq!(results[waiting[0]], Ok(Answer::Sum(55)));
    assert_eq!(results[waiting[1]], Ok(Answer::Sum(210)));
    assert_eq!(results[waiting[2]], Ok(Answer::Sum(6)));
    assert!(
        matches!(results[refused], Err(ApplyError::Busy { .. })),
        "{:?}",
        results[refused]
    );
    back_to_k(&strategy, Instant::now());

    // Shutdown: a job cut short, a job still waiting, a job submitted after.
    let mut completions = common::Completions::new();
    completions.submit(&strategy, Job::Sleep(5_000));
    completions.submit(&strategy, Job::Sleep(5_000));
    completions.submit(&strategy, Job::Sumn(1));
    while strategy.busy_worker_pids().len() < K {
        std::thread::sleep(Duration::from_millis(1));
    }
    strategy.shutdown();
    completions.submit(&strategy, Job::Sumn(2));
    let stopping = Instant::now();
    drop(strategy);
    for (id, result) in completions.all(Duration::from_secs(10)).iter().enumerate() {
        assert!(
            matches!(result, Err(ApplyError::ShuttingDown { .. })),
            "submission {id}: {result:?}"
        );
    }
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
}

/// An event loop that takes the reading of results over gets them on its
/// own thread, each exactly once, only when it runs them, and with the same
/// outcomes as the pool's own collector: answers, a job that waited in the
/// queue, a timeout, and a worker lost (whose result waits for the fork
/// server's report on a thread of its own).
fn an_event_loop_reads_the_results() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::sync::Mutex;
    type Outcome = (usize, std::thread::ThreadId, Result<Answer, ApplyError>);

    let strategy = pool(|c| c.job_timeout = Some(Duration::from_millis(300)));
    let results = strategy
        .take_completion_fd()
        .expect("procs hands its results over");
    // The collector's own thread has stopped reading once its wait is over.
    std::thread::sleep(Duration::from_millis(50));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let submit = |id: usize, job: Job| {
        let outcomes = Arc::clone(&outcomes);
        strategy.submit(job, move |result| {
            let me = std::thread::current().id();
            outcomes.lock().unwrap().push((id, me, result));
        });
    };
    let run_until = |count: usize, within: Duration| {
        let deadline = Instant::now() + within;
        while outcomes.lock().unwrap().len() < count && Instant::now() < deadline {
            let mut fds = [PollFd::new(results, PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(20u8)).unwrap_or(0) > 0 {
                strategy.run_completions();
            }
        }
    };

    // Answered only when the loop runs them.
    submit(0, Job::Sumn(25_000));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        outcomes.lock().unwrap().is_empty(),
        "completed without the loop"
    );
    run_until(1, Duration::from_secs(5));

    // Both workers busy with sleeps; tiny jobs wait in the queue behind them.
    submit(1, Job::Sleep(5_000));
    submit(2, Job::Sleep(5_000));
    let started = Instant::now();
    let busy = loop {
        let pids = strategy.busy_worker_pids();
        if pids.len() == K {
            break pids[0];
        }
        assert!(started.elapsed() < Duration::from_secs(2), "workers busy");
        std::thread::sleep(Duration::from_millis(1));
    };
    const TINY: usize = 100;
    for id in 3..3 + TINY {
        submit(id, Job::Sumn(id as u64));
    }
    kill(Pid::from_raw(busy as i32), Signal::SIGKILL).expect("kill a busy worker");
    run_until(3 + TINY, Duration::from_secs(10));

    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 3 + TINY, "every job completed once");
    let mut seen = [false; 3 + TINY];
    let here = std::thread::current().id();
    for (id, thread, result) in outcomes.iter() {
        assert!(!std::mem::replace(&mut seen[*id], true), "job {id} twice");
        match (*id, result) {
            (0, result) => assert_eq!(result, &Ok(Answer::Sum(312_512_500))),
            (1 | 2, Err(ApplyError::WorkerLost { .. })) => {}
            (1 | 2, Err(ApplyError::Timeout { .. })) => {
                assert_eq!(*thread, here, "a timeout is told on the loop's thread");
            }
            (id, result) => {
                let n = id as u128;
                assert_eq!(result, &Ok(Answer::Sum(n * (n + 1) / 2)), "job {id}");
                assert_eq!(*thread, here, "job {id} completed on another thread");
            }
        }
    }
    let lost = outcomes
        .iter()
        .filter(|(_, _, r)| matches!(r, Err(ApplyError::WorkerLost { .. })))
        .count();
    assert_eq!(lost, 1, "exactly the killed worker's job is lost");
}

/// Tiny jobs queue in a busy worker's channel behind the one it runs. Kill
/// busy workers again and again under a steady stream of them, from `apply`
/// callers and from `submit`: each kill fails at most the job its worker was
/// running (`WorkerLost`); the jobs queued behind it are sent to another
/// worker and answered, every answer right, none lost or answered twice.
fn a_kill_fails_only_the_running_job() {
    // One worker for eight callers, so that its channel mostly holds more
    // than the job it runs.
    let strategy = pool(|c| {
        c.workers = 1;
        c.job_timeout = None;
    });
    let stop = std::sync::atomic::AtomicBool::new(false);
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let check = |job: Job, result: Result<Answer, ApplyError>, lost: &mut u64| match result {
        Ok(answer) => assert_eq!(Some(answer), common::closed_form(job), "{job}"),
        Err(ApplyError::WorkerLost { .. }) => *lost += 1,
        Err(err) => panic!("{job}: {err}"),
    };
    let (kills, behind, lost, answered) = std::thread::scope(|scope| {
        let mut callers = Vec::new();
        for thread in 0..6u64 {
            let (strategy, stop) = (&strategy, &stop);
            callers.push(scope.spawn(move || {
                let (mut lost, mut answered) = (0, 0);
                let mut n = thread;
                while !stop.load(relaxed) {
                    n += 7;
                    // Small enough to queue behind one another, in a debug
                    // build too.
                    let job = Job::Sumn(1_000 + n % 500);
                    check(job, strategy.apply(job), &mut lost);
                    answered += 1;
                }
                (lost, answered)
            }));
        }
        for thread in 0..2u64 {
            let (strategy, stop) = (&strategy, &stop);
            callers.push(scope.spawn(move || {
                let (mut lost, mut answered) = (0, 0);
                let mut round = thread;
                while !stop.load(relaxed) {
                    round += 1;
                    let jobs: Vec<Job> = (0..8)
                        .map(|i| Job::Sumn(1_000 + (round * 8 + i) % 500))
                        .collect();
                    let mut completions = common::Completions::new();
                    for &job in &jobs {
                        completions.submit(strategy, job);
                    }
                    for (job, result) in jobs.iter().zip(completions.all(Duration::from_secs(5))) {
                        check(*job, result, &mut lost);
                        answered += 1;
                    }
                }
                (lost, answered)
            }));
        }
        let (mut kills, mut behind) = (0u64, 0u64);
        let began = Instant::now();
        while began.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(30));
            // A worker running a job with others queued behind it, if one is
            // seen within 20 ms; else the last one seen running a job.
            let mut target = None;
            for _ in 0..20 {
                let loads = strategy.busy_worker_loads();
                if let Some(&(pid, held)) = loads.iter().max_by_key(|(_, held)| *held) {
                    target = Some((pid, held));
                    if held > 1 {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Some((pid, held)) = target {
                if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                    kills += 1;
                    behind += u64::from(held > 1);
                }
            }
        }
        stop.store(true, relaxed);
        let (mut lost, mut answered) = (0, 0);
        for caller in callers {
            let (l, a) = caller.join().expect("no caller panicked");
            lost += l;
            answered += a;
        }
        (kills, behind, lost, answered)
    });
    println!("    {kills} kills ({behind} with jobs queued behind), {lost} jobs lost, {answered} answered");
    assert!(kills >= 10, "only {kills} kills landed");
    assert!(behind >= 5, "only {behind} kills with jobs queued behind");
    assert!(lost <= kills, "{lost} jobs lost to {kills} kills");
    assert!(answered > 20 * kills, "only {answered} jobs answered");
    assert!(strategy.wait_for_workers(Duration::from_secs(2)));
    assert_eq!(strategy.worker_pids().len(), 1);
    assert_no_zombies(&strategy);
}

/// A worker keeps a channel to each caller's mailbox it has answered;
/// mailboxes are pooled, so however many threads come and go (one per
/// connection, under `--io threads`), a worker holds no more descriptors
/// than there were callers at once.
fn worker_descriptors_stay_bounded() {
    let strategy = pool(|_| {});
    for _ in 0..25 {
        std::thread::scope(|scope| {
            for thread in 0..8u64 {
                let strategy = &strategy;
                scope.spawn(move || {
                    for n in 0..3 {
                        let job = Job::Sumn(thread + n);
                        assert_eq!(strategy.apply(job).ok(), common::closed_form(job));
                    }
                });
            }
        });
    }
    for pid in strategy.worker_pids() {
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("a worker's descriptors")
            .count();
        println!("    worker {pid}: {open} descriptors after 200 caller threads");
        assert!(open <= 24, "worker {pid} holds {open} descriptors");
    }
}

/// A worker killed while idle costs no job: it is replaced, and the next jobs
/// all succeed.
fn idle_worker_death_is_replaced() {
    let strategy = pool(|_| {});
    let victim = strategy.worker_pids()[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill an idle worker");
    let killed_at = Instant::now();
    while strategy.worker_pids().contains(&victim) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(1),
            "death noticed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    back_to_k(&strategy, killed_at);
    for _ in 0..10 {
        assert_eq!(
            strategy.apply(Job::Prime(1_000_003)),
            Ok(Answer::Prime(true))
        );
    }
    assert_no_zombies(&strategy);
}

/// A job over its timeout: the caller gets `Timeout` on time, the worker is
/// killed, reaped and replaced.
fn timeout_kills_and_replaces() {
    let strategy = pool(|c| c.job_timeout = Some(Duration::from_millis(200)));
    let before = strategy.worker_pids();
    let started = Instant::now();
    let result = strategy.apply(Job::Prime(18_446_744_073_709_551_557));
    let took = started.elapsed();
    assert!(
        matches!(result, Err(ApplyError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while strategy
        .worker_pids()
        .iter()
        .filter(|pid| before.contains(pid))
        .count()
        != K - 1
    {
        assert!(
            Instant::now() < deadline,
            "the timed-out worker was replaced"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    back_to_k(&strategy, started);
    assert_eq!(strategy.apply(Job::Sleep(1)), Ok(Answer::Slept));
    assert_no_zombies(&strategy);
    assert_eq!(strategy.stats().jobs[&offload::JobKind::Prime].timeout, 1);
}

/// Two runaway jobs sent 300 ms apart, on two workers, with a 500 ms
/// timeout: each ends at its own deadline. The watchdog sleeps until the
/// earliest deadline still to come; had it slept a whole timeout after the
/// first kill, the second job would end 700 ms after it was sent.
fn staggered_timeouts_each_end_on_time() {
    let limit = Duration::from_millis(500);
    let strategy = pool(|c| c.job_timeout = Some(limit));
    let runaway = || {
        let started = Instant::now();
        let result = strategy.apply(Job::Prime(18_446_744_073_709_551_557));
        (result, started.elapsed())
    };
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(runaway);
        std::thread::sleep(Duration::from_millis(300));
        let second = scope.spawn(runaway);
        (first.join().unwrap(), second.join().unwrap())
    });
    for (result, took) in [first, second] {
        assert!(
            matches!(result, Err(ApplyError::Timeout { .. })),
            "{result:?}"
        );
        // Never early; and well before the 700 ms a late watchdog gives.
        assert!(
            took >= limit && took < limit + Duration::from_millis(150),
            "took {took:?} with a limit of {limit:?}"
        );
    }
    back_to_k(&strategy, Instant::now());
    assert_eq!(strategy.stats().jobs[&offload::JobKind::Prime].timeout, 2);
    assert_no_zombies(&strategy);
}

/// A panicking job becomes `JobPanicked` for its caller; the worker process
/// survives it and the pool keeps K workers.
fn panic_is_contained() {
    let strategy = pool(|_| {});
    let before = strategy.worker_pids();
    let result = strategy.apply(Job::Panic);
    assert!(
        matches!(&result, Err(ApplyError::JobPanicked { message, .. }) if message.contains("fault-injection")),
        "{result:?}"
    );
    assert_eq!(strategy.apply(Job::Sumn(3)), Ok(Answer::Sum(6)));
    assert_eq!(strategy.worker_pids(), before, "no worker was lost");
}

/// With recycling after 3 jobs, 9 jobs on one worker retire it twice.
fn recycling_replaces_workers() {
    let strategy = pool(|c| {
        c.workers = 1;
        c.recycle_after = Some(3);
    });
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..9 {
        assert!(strategy.wait_for_workers(Duration::from_secs(2)));
        seen.extend(strategy.worker_pids());
        assert_eq!(
            strategy.apply(Job::Sumn(n)),
            Ok(Answer::Sum(u128::from(n) * u128::from(n + 1) / 2))
        );
    }
    assert!(seen.len() >= 3, "three workers served nine jobs: {seen:?}");
    assert!(strategy.wait_for_workers(Duration::from_secs(2)));
    assert!(strategy.stats().workers.respawned >= 2);
    assert_no_zombies(&strategy);
}

/// With every worker taken, a job waits the queue wait and is refused as
/// busy; the queue is empty afterwards.
fn busy_when_all_workers_are_taken() {
    let strategy = pool(|c| {
        c.workers = 1;
        c.queue_wait = Duration::from_millis(50);
    });
    std::thread::scope(|scope| {
        scope.spawn(|| strategy.apply(Job::Sleep(500)));
        while strategy.busy_worker_pids().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        let result = strategy.apply(Job::Sumn(1));
        assert!(matches!(result, Err(ApplyError::Busy { .. })), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(50));
    });
    assert_eq!(strategy.stats().queued, 0);
}

/// A job that no worker takes within the queue wait is refused at that
/// moment, whether applied or submitted (as an event loop does), and is never
/// run afterwards.
fn busy_at_the_queue_wait() {
    let wait = Duration::from_millis(100);
    let strategy = pool(|c| {
        c.workers = 1;
        c.queue_wait = wait;
    });
    let busy = Err(ApplyError::Busy {
        job: Job::Sumn(5),
        reason: BusyReason::Waited { queue_wait: wait },
    });
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| strategy.apply(Job::Sleep(1_500)));
        while strategy.busy_worker_pids().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut completions = common::Completions::new();
        let submitted = Instant::now();
        completions.submit(&strategy, Job::Sumn(5));
        let (_, result) = loop {
            if let Some(done) = completions.try_next() {
                break done;
            }
            assert!(submitted.elapsed() < Duration::from_secs(5), "no answer");
            std::thread::sleep(Duration::from_millis(1));
        };
        let took = submitted.elapsed();
        assert_eq!(result, busy);
        assert!(
            took >= wait && took < Duration::from_millis(800),
            "{took:?}"
        );
        println!("    submitted job refused after {took:.2?} (queue wait {wait:?})");

        let started = Instant::now();
        assert_eq!(strategy.apply(Job::Sumn(5)), busy);
        let took = started.elapsed();
        assert!(
            took >= wait && took < Duration::from_millis(800),
            "{took:?}"
        );
        assert_eq!(sleeper.join().expect("no panic"), Ok(Answer::Slept));
    });
    // The worker is free again: a refused job still queued would run now.
    std::thread::sleep(Duration::from_millis(200));
    let sumn = strategy.stats().jobs[&offload::JobKind::Sumn].clone();
    assert_eq!((sumn.ok, sumn.busy), (0, 2), "{sumn:?}");
}

/// A queue wait of zero serves jobs while a worker is free, one after the
/// other, and refuses at once, saying so, when every worker is taken.
fn zero_queue_wait_serves() {
    let strategy = pool(|c| {
        c.workers = 1;
        c.queue_wait = Duration::ZERO;
    });
    for n in 1..=20 {
        assert_eq!(
            strategy.apply(Job::Sumn(n)),
            Ok(Answer::Sum(u128::from(n) * u128::from(n + 1) / 2))
        );
    }
    std::thread::scope(|scope| {
        scope.spawn(|| strategy.apply(Job::Sleep(500)));
        while strategy.busy_worker_pids().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let started = Instant::now();
        assert_eq!(
            strategy.apply(Job::Sumn(1)),
            Err(ApplyError::Busy {
                job: Job::Sumn(1),
                reason: BusyReason::NoneFree
            })
        );
        assert!(started.elapsed() < Duration::from_millis(200));
    });
}

/// SIGKILL the fork server: jobs get pool-down or an answer, never a long
/// wait; the dead fork server is reaped (no zombie); a new one with K new
/// workers is up within about a second, counted in the stats; and the new
/// workers are full members (timeouts kill and replace them, a killed busy
/// worker is reported lost).
fn fork_server_death_is_healed() {
    let strategy = pool(|c| c.job_timeout = Some(Duration::from_millis(300)));
    let old = strategy.fork_server_pid().expect("procs");
    let old_workers = strategy.worker_pids();
    let mut completions = common::Completions::new();
    let in_flight = completions.submit(&strategy, Job::Sleep(250));
    while strategy.busy_worker_pids().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill the fork server");
    let killed_at = Instant::now();
    let (mut pool_down, mut answered) = (0, 0);
    loop {
        let asked = Instant::now();
        match strategy.apply(Job::Sumn(10)) {
            Ok(answer) => {
                assert_eq!(answer, Answer::Sum(55));
                answered += 1;
            }
            Err(ApplyError::PoolDown { .. }) => pool_down += 1,
            Err(other) => panic!("neither an answer nor pool-down: {other}"),
        }
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "a job waited {:?}",
            asked.elapsed()
        );
        let back = strategy
            .fork_server_pid()
            .is_some_and(|pid| pid != 0 && pid != old)
            && strategy.stats().workers.alive == K;
        if back && answered > 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "the pool did not come back"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let healed = killed_at.elapsed();
    println!("    pool back {healed:.2?} after its fork server was killed ({pool_down} jobs refused as pool-down)");
    assert!(healed < Duration::from_secs(3), "{healed:?}");
    let results = completions.all(Duration::from_secs(5));
    assert!(
        matches!(results[in_flight], Err(ApplyError::PoolDown { .. })),
        "the job in flight: {:?}",
        results[in_flight]
    );
    assert!(common::has_exited(old), "the old fork server is not reaped");
    assert!(old_workers.iter().all(|&pid| common::has_exited(pid)));
    assert_no_zombies(&strategy);
    assert_eq!(strategy.stats().workers.fork_server_restarts, 1);

    // The new workers are full members.
    let result = strategy.apply(Job::Prime(18_446_744_073_709_551_557));
    assert!(
        matches!(result, Err(ApplyError::Timeout { .. })),
        "{result:?}"
    );
    assert!(strategy.wait_for_workers(Duration::from_secs(2)));
    std::thread::scope(|scope| {
        let victim_job = scope.spawn(|| strategy.apply(Job::Sleep(5_000)));
        let busy = loop {
            if let [pid] = strategy.busy_worker_pids()[..] {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        kill(Pid::from_raw(busy as i32), Signal::SIGKILL).expect("kill the busy worker");
        assert_eq!(
            victim_job.join().expect("no panic"),
            Err(ApplyError::WorkerLost {
                job: Job::Sleep(5_000),
                pid: busy,
                exit: Exit::Signal(9)
            })
        );
    });
    back_to_k(&strategy, Instant::now());
    assert_eq!(strategy.apply(Job::Sumn(3)), Ok(Answer::Sum(6)));
    assert_no_zombies(&strategy);
}

/// The fork server, started from this executable, holds its stdio and its
/// two channel ends, and nothing else of this process (every other
/// descriptor is close-on-exec); its workers' stdin is /dev/null.
fn fork_server_inherits_no_stray_descriptors() {
    // Descriptors this process holds that a careless spawn would pass on.
    let _file = std::fs::File::open("/proc/self/status").expect("a file");
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a socket");
    let strategy = pool(|_| {});
    let pid = strategy.fork_server_pid().expect("procs");
    let descriptors = || -> Vec<(u32, String)> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the fork server's descriptors")
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let fd = entry.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(entry.path()).ok()?;
                Some((fd, target.to_string_lossy().into_owned()))
            })
            .collect()
    };
    let only_its_own = |fds: &[(u32, String)]| {
        let extra: Vec<_> = fds.iter().filter(|(fd, _)| *fd > 2).collect();
        extra.len() == 2
            && extra
                .iter()
                .all(|(_, target)| target.starts_with("socket:"))
    };
    // The pool may hear of a worker while the fork server is still on its
    // way out of sending it (the worker's page and channel end go with that
    // message and are closed after it), or spawning the next one: what it
    // holds once that settles is what it keeps. A leaked descriptor stays,
    // and fails this at the deadline.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fds = descriptors();
    while !only_its_own(&fds) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        fds = descriptors();
    }
    assert!(only_its_own(&fds), "the fork server holds {fds:?}");
    // Its stdin is the pool's socket; a worker's is /dev/null, and stays
    // open after the worker has received descriptors of its own.
    assert_eq!(strategy.apply(Job::Sumn(10)), Ok(Answer::Sum(55)));
    for worker in strategy.worker_pids() {
        let stdin = std::fs::read_link(format!("/proc/{worker}/fd/0")).expect("fd 0");
        assert_eq!(stdin, std::path::Path::new("/dev/null"), "worker {worker}");
    }
}

/// A server killed with SIGKILL leaves no orphan: its fork server and every
/// worker exit within a second.
fn no_orphans_when_the_server_is_killed() {
    use std::io::{BufRead, BufReader};
    let mut victim = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(VICTIM_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the victim");
    let mut line = String::new();
    BufReader::new(victim.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("pids");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 1 + K, "fork server and workers: {line:?}");
    assert!(pids.iter().all(|&pid| !common::has_exited(pid)));
    victim.kill().expect("SIGKILL the victim");
    let killed_at = Instant::now();
    victim.wait().expect("reap the victim");
    while !pids.iter().all(|&pid| common::has_exited(pid)) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(1),
            "orphans left: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for pid in pids {
        // They were re-parented to this subreaper: reap them.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
    }
}

/// The victim's life: a pool with busy workers, its pids on stdout, then a
/// wait for the SIGKILL (or a minute, so that nothing can outlive the test).
fn victim() -> ExitCode {
    let config = StrategyConfig {
        workers: K,
        ..StrategyConfig::new(StrategyKind::Procs)
    };
    let strategy = Arc::new(Strategy::start(&config).expect("pool"));
    for _ in 0..K {
        let strategy = Arc::clone(&strategy);
        std::thread::spawn(move || strategy.apply(Job::Sleep(60_000)));
    }
    let mut pids = vec![strategy.fork_server_pid().expect("procs")];
    pids.extend(strategy.worker_pids());
    println!(
        "{}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::thread::sleep(Duration::from_secs(60));
    ExitCode::FAILURE
}
