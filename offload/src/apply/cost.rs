//! What a job will cost, known from its argument before it runs: `sumn n`
//! is n additions, `prime n` at most isqrt(n)/2 trial divisions. The time of
//! one step is measured on this machine at start-up, by a short timed run of
//! the real job loops, so that the prediction holds wherever the server runs
//! rather than on the machine where a constant was measured.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::job::{Cancel, Job};

/// Additions per timed `sumn` run: about 0.1 ms at a nanosecond each, long
/// enough to dwarf the clock's cost, short enough to keep start-up quick.
const SUMN_STEPS: u64 = 100_000;

/// A prime whose trial division takes isqrt(p)/2 = 15 811 divisions, about
/// as long as the `sumn` run.
const CALIBRATION_PRIME: u64 = 1_000_000_007;

/// Timed runs of each loop; the median is kept, so that one run slowed by a
/// preemption does not skew the prediction.
const RUNS: usize = 7;

/// The measured time of one step of each job loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepCosts {
    /// Nanoseconds per `sumn` addition.
    pub sumn_step_ns: f64,
    /// Nanoseconds per `prime` trial division.
    pub prime_step_ns: f64,
}

impl StepCosts {
    /// Times the real job loops on this thread, under `cancel` (the token a
    /// job run in this context gets, since its checks are part of the cost),
    /// and keeps the median of [`RUNS`] runs of each. Takes about 2 ms.
    pub(crate) fn calibrate(cancel: &Cancel<'_>) -> StepCosts {
        let divisions = prime_steps(CALIBRATION_PRIME);
        StepCosts {
            sumn_step_ns: median_ns(Job::Sumn(SUMN_STEPS), cancel) / SUMN_STEPS as f64,
            prime_step_ns: median_ns(Job::Prime(CALIBRATION_PRIME), cancel) / divisions as f64,
        }
    }

    /// How long `job` will run at these step costs; `None` for a job whose
    /// time is not CPU work the argument predicts (`sleep`, which waits, and
    /// the fault-injection job).
    pub(crate) fn predict(&self, job: Job) -> Option<Duration> {
        let nanos = match job {
            Job::Sumn(n) => n as f64 * self.sumn_step_ns,
            Job::Prime(n) => prime_steps(n) as f64 * self.prime_step_ns,
            Job::Sleep(_) => return None,
            #[cfg(feature = "fault-injection")]
            Job::Panic => return None,
        };
        // Saturates for absurd products instead of panicking.
        Some(Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(Duration::MAX))
    }
}

/// The most trial divisions `prime n` makes: the odd divisors from 3 up to
/// isqrt(n), none for n below 9 or even (answered before the loop).
pub(crate) fn prime_steps(n: u64) -> u64 {
    if n < 9 || n.is_multiple_of(2) {
        return 0;
    }
    (n.isqrt() - 1) / 2
}

/// The median wall time of [`RUNS`] runs of `job`, in nanoseconds.
fn median_ns(job: Job, cancel: &Cancel<'_>) -> f64 {
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            // The answer is known (the loops' own tests check it); only the
            // time matters, and `black_box` keeps the call from being folded.
            let _ = std::hint::black_box(job).run(cancel);
            started.elapsed().as_nanos() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSTS: StepCosts = StepCosts {
        sumn_step_ns: 0.5,
        prime_step_ns: 4.0,
    };

    /// The step count of `prime` matches the loop's divisors 3, 5, … ≤ isqrt(n).
    #[test]
    fn prime_steps_count_the_odd_divisors() {
        for (n, steps) in [(0, 0), (7, 0), (8, 0), (9, 1), (25, 2), (1_000_000, 0)] {
            assert_eq!(prime_steps(n), steps, "n = {n}");
        }
        let odd_divisors = |n: u64| (3..=n.isqrt()).step_by(2).count() as u64;
        for n in [49, 97, 1_000_003, CALIBRATION_PRIME] {
            assert_eq!(prime_steps(n), odd_divisors(n), "n = {n}");
        }
        assert_eq!(prime_steps(u64::MAX), (4_294_967_295 - 1) / 2);
    }

    /// The prediction is steps times the step cost; sleep is never predicted.
    #[test]
    fn prediction_is_steps_times_cost() {
        assert_eq!(COSTS.predict(Job::Sumn(0)), Some(Duration::ZERO));
        assert_eq!(
            COSTS.predict(Job::Sumn(2_000)),
            Some(Duration::from_micros(1))
        );
        assert_eq!(
            COSTS.predict(Job::Prime(1_000_003)),
            Some(Duration::from_nanos(4 * 499))
        );
        assert_eq!(COSTS.predict(Job::Sleep(0)), None);
        // The largest prime below 2⁶⁴ is seconds of work, and does not overflow.
        let biggest = COSTS
            .predict(Job::Prime(18_446_744_073_709_551_557))
            .unwrap();
        assert!(biggest > Duration::from_secs(1), "{biggest:?}");
        assert!(COSTS.predict(Job::Sumn(u64::MAX)).unwrap() > Duration::from_secs(1_000));
    }

    /// Calibration measures real, positive step costs, and predicts a timed
    /// run within a wide margin (the machine may be loaded: the bound only
    /// catches a prediction off by an order of magnitude, such as a unit
    /// error or a loop the optimizer removed).
    #[test]
    fn calibration_predicts_a_real_run() {
        let cancel = Cancel::never();
        let costs = StepCosts::calibrate(&cancel);
        assert!(
            costs.sumn_step_ns > 0.01 && costs.sumn_step_ns < 100.0,
            "{costs:?}"
        );
        assert!(
            costs.prime_step_ns > 0.05 && costs.prime_step_ns < 1_000.0,
            "{costs:?}"
        );
        let job = Job::Sumn(2_000_000);
        let predicted = costs.predict(job).unwrap();
        let best = (0..5)
            .map(|_| {
                let started = Instant::now();
                job.run(&cancel).unwrap();
                started.elapsed()
            })
            .min()
            .unwrap();
        assert!(
            best > predicted / 10 && best < predicted * 10,
            "predicted {predicted:?}, ran {best:?}"
        );
    }
}
