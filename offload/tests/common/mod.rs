//! Helpers shared by the offload test targets.
#![allow(dead_code, unreachable_pub)]

use offload::{Answer, Job, Strategy};

/// A small deterministic generator, so that failures replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `count` random jobs, quick enough for a debug build: sums up to 200 000,
/// primality up to 10¹⁰, sleeps up to 2 ms.
pub fn random_jobs(count: usize, seed: u64) -> Vec<Job> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| match rng.next() % 3 {
            0 => Job::Sumn(rng.next() % 200_000),
            1 => Job::Prime(rng.next() % 10_000_000_000),
            _ => Job::Sleep(rng.next() % 3),
        })
        .collect()
}

/// The answer checked by other means: the closed form for sums.
pub fn closed_form(job: Job) -> Option<Answer> {
    match job {
        Job::Sumn(n) => Some(Answer::Sum(u128::from(n) * (u128::from(n) + 1) / 2)),
        Job::Sleep(_) => Some(Answer::Slept),
        _ => None,
    }
}

/// One process as /proc shows it: (state, parent pid).
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Zombie children of any of `parents`.
pub fn zombies_of(parents: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(proc_state(*pid), Some(('Z', parent)) if parents.contains(&parent)))
        .collect()
}

/// True when `pid` has exited (gone, or a zombie waiting for its reaper).
pub fn has_exited(pid: u32) -> bool {
    !matches!(proc_state(pid), Some((state, _)) if state != 'Z')
}

/// Applies `jobs` through `strategy` from four threads at once (a quarter
/// each) and returns the answers in the order of `jobs`.
pub fn apply_from_four_threads(strategy: &Strategy, jobs: &[Job]) -> Vec<Answer> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(jobs.len().div_ceil(4).max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|j| strategy.apply(*j).expect("answer"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect()
    })
}

/// Collects the results of `Strategy::submit` calls, numbered, to prove that
/// every submission completes exactly once.
pub struct Completions {
    tx: std::sync::mpsc::Sender<(usize, Result<Answer, offload::ApplyError>)>,
    rx: std::sync::mpsc::Receiver<(usize, Result<Answer, offload::ApplyError>)>,
    submitted: usize,
}

impl Completions {
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        Completions {
            tx,
            rx,
            submitted: 0,
        }
    }

    /// Submits `job`; returns its number.
    pub fn submit(&mut self, strategy: &Strategy, job: Job) -> usize {
        let id = self.submitted;
        self.submitted += 1;
        let tx = self.tx.clone();
        strategy.submit(job, move |result| {
            tx.send((id, result)).expect("the test still listens");
        });
        id
    }

    /// The result of submission `id` if it has completed already (and no
    /// other completion is waiting before it).
    pub fn try_next(&self) -> Option<(usize, Result<Answer, offload::ApplyError>)> {
        self.rx.try_recv().ok()
    }

    /// Waits (at most `within`) for every submission to complete, and checks
    /// that each completed exactly once; returns the results by number.
    pub fn all(self, within: std::time::Duration) -> Vec<Result<Answer, offload::ApplyError>> {
        let Completions { tx, rx, submitted } = self;
        drop(tx);
        let deadline = std::time::Instant::now() + within;
        let mut results: Vec<Option<Result<Answer, offload::ApplyError>>> = vec![None; submitted];
        for _ in 0..submitted {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (id, result) = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("not every submission completed: {results:?}"));
            assert!(results[id].is_none(), "submission {id} completed twice");
            results[id] = Some(result);
        }
        // Nothing more may arrive: every callback has been used up.
        assert!(rx.try_recv().is_err(), "a completion too many");
        results.into_iter().map(Option::unwrap).collect()
    }
}
