//! A weighted mix of jobs (`--mix 'sumn:1=90,prime:1000003=10'`), and the
//! [`Picker`] that deals them out in exact proportion.
//!
//! The picker is a smooth weighted round-robin (the one nginx uses for
//! upstream weights): over every run of `total weight` picks each job comes
//! up exactly its weight in times, spread out rather than in blocks, and no
//! random numbers are involved, so runs are repeatable.

use std::fmt;
use std::str::FromStr;

use crate::job::{Job, JobKind, JobSpecError};

/// The largest weight one job may have.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Jobs with their weights; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Each job with its weight (at least 1).
    entries: Vec<(Job, u32)>,
}

/// A mix that could not be read; the message quotes the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// Nothing but separators.
    #[error("the mix {mix:?} names no job (write it like sumn:25000=90,prime:1000003=10)")]
    Empty {
        /// The mix as given.
        mix: String,
    },
    /// One entry's job spec is bad.
    #[error("in the mix entry {entry:?}: {source}")]
    Job {
        /// The entry as given.
        entry: String,
        /// What is wrong with its job.
        source: JobSpecError,
    },
    /// One entry's weight is not a whole number from 1 to [`MAX_WEIGHT`].
    #[error("the mix entry {entry:?} needs a weight from 1 to {MAX_WEIGHT} after '='")]
    BadWeight {
        /// The entry as given.
        entry: String,
    },
}

impl Mix {
    /// A mix of one job.
    pub fn single(job: Job) -> Mix {
        Mix {
            entries: vec![(job, 1)],
        }
    }

    /// The jobs and their weights, in the order given.
    pub fn entries(&self) -> &[(Job, u32)] {
        &self.entries
    }

    /// The kinds of job in the mix, in [`JobKind`] order, each once.
    pub fn kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self.entries.iter().map(|(job, _)| job.kind()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// A request whose reply no job of the mix can have: `sumn n` for the
    /// smallest n from 1 up that the mix does not ask for (every other job
    /// answers a word, and distinct n have distinct sums). It ends each
    /// kept-alive connection, so that a reply sent twice shows.
    pub fn sentinel(&self) -> Job {
        let taken = |n: u64| self.entries.iter().any(|&(job, _)| job == Job::Sumn(n));
        let n = (1..).find(|&n| !taken(n)).expect("the mix is finite");
        Job::Sumn(n)
    }

    /// A picker for one thread; `offset` (the thread's index) staggers the
    /// threads so that they do not all send the same job at once.
    pub fn picker(&self, offset: usize) -> Picker {
        let mut picker = Picker {
            entries: self.entries.clone(),
            current: vec![0; self.entries.len()],
            total: self.entries.iter().map(|&(_, w)| i64::from(w)).sum(),
        };
        let skip = offset % usize::try_from(picker.total).unwrap_or(1);
        for _ in 0..skip {
            picker.next_job();
        }
        picker
    }
}

impl FromStr for Mix {
    type Err = MixError;

    /// Reads `JOB=WEIGHT,JOB=WEIGHT,…`; a job without `=WEIGHT` weighs 1.
    fn from_str(mix: &str) -> Result<Self, Self::Err> {
        let mut entries = Vec::new();
        for entry in mix.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (spec, weight) = match entry.rsplit_once('=') {
                Some((spec, weight)) => {
                    let weight = weight
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=MAX_WEIGHT).contains(w))
                        .ok_or_else(|| MixError::BadWeight {
                            entry: entry.to_owned(),
                        })?;
                    (spec.trim(), weight)
                }
                None => (entry, 1),
            };
            let job = spec.parse().map_err(|source| MixError::Job {
                entry: entry.to_owned(),
                source,
            })?;
            entries.push((job, weight));
        }
        if entries.is_empty() {
            return Err(MixError::Empty {
                mix: mix.to_owned(),
            });
        }
        Ok(Mix { entries })
    }
}

impl fmt::Display for Mix {
    /// The mix as written on the command line: `sumn:1=90,prime:7=10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (job, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{job}={weight}")?;
        }
        Ok(())
    }
}

/// Deals out the jobs of a [`Mix`] in proportion to their weights.
#[derive(Debug, Clone)]
pub struct Picker {
    /// The mix's jobs and weights.
    entries: Vec<(Job, u32)>,
    /// Each entry's running credit.
    current: Vec<i64>,
    /// The sum of the weights.
    total: i64,
}

impl Picker {
    /// The next job: every entry earns its weight in credit, the richest
    /// is picked and pays the total.
    pub fn next_job(&mut self) -> Job {
        let mut best = 0;
        for (i, &(_, weight)) in self.entries.iter().enumerate() {
            self.current[i] += i64::from(weight);
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        self.entries[best].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights are read, a missing weight is 1, and the mix prints back.
    #[test]
    fn mixes_parse() {
        let mix: Mix = "sumn:1=90, prime:1000003=10".parse().expect("valid");
        assert_eq!(
            mix.entries(),
            &[(Job::Sumn(1), 90), (Job::Prime(1_000_003), 10)]
        );
        assert_eq!(mix.to_string(), "sumn:1=90,prime:1000003=10");
        let mix: Mix = "ping,sleep:5=3,".parse().expect("valid");
        assert_eq!(mix.entries(), &[(Job::Ping, 1), (Job::Sleep(5), 3)]);
        assert_eq!(mix.kinds(), vec![JobKind::Sleep, JobKind::Ping]);
    }

    /// The sentinel is a sumn the mix never sends.
    #[test]
    fn sentinel_unused() {
        assert_eq!(Mix::single(Job::Ping).sentinel(), Job::Sumn(1));
        let mix: Mix = "sumn:1,sumn:2,prime:3".parse().expect("valid");
        assert_eq!(mix.sentinel(), Job::Sumn(3));
    }

    /// Bad weights, bad jobs and empty mixes are refused, quoting the part
    /// at fault.
    #[test]
    fn bad_mixes_quoted() {
        for (mix, quoted) in [
            ("sumn:1=0", "sumn:1=0"),
            ("sumn:1=-3", "sumn:1=-3"),
            ("sumn:1=ninety", "sumn:1=ninety"),
            ("sumn:1=", "sumn:1="),
            ("sumn:1=90,fib:3=10", "fib:3=10"),
            ("prime=5", "prime=5"),
            ("sumn:1=1000001", "sumn:1=1000001"),
            (",,", ",,"),
        ] {
            let err = mix.parse::<Mix>().expect_err(mix);
            assert!(err.to_string().contains(&format!("{quoted:?}")), "{err}");
        }
    }

    /// Over one round of the total weight, each job comes up exactly its
    /// weight in times, and a light job is not dealt in a block.
    #[test]
    fn picks_in_proportion() {
        let mix: Mix = "sumn:1=90,prime:7=10".parse().expect("valid");
        for offset in [0, 1, 37] {
            let mut picker = mix.picker(offset);
            let picks: Vec<Job> = (0..100).map(|_| picker.next_job()).collect();
            let primes: Vec<usize> = (0..100).filter(|&i| picks[i] == Job::Prime(7)).collect();
            assert_eq!(primes.len(), 10, "offset {offset}");
            assert!(
                primes.windows(2).all(|w| w[1] - w[0] >= 5),
                "spread out: {primes:?}"
            );
        }
    }
}
