//! `sumn n`: the sum 1 + 2 + … + n, the slow way, exactly as the original.
//!
//! The point of the job is its CPU cost, one addition per step, so the loop
//! must survive the optimizer: each addend passes through
//! [`std::hint::black_box`], which stops LLVM from turning the loop into
//! `n * (n + 1) / 2`. `cargo bench -p offload` shows the time growing linearly
//! in `n`.

use std::hint::black_box;

use super::cancel::{Cancel, Stop, YIELD_EVERY};

/// Sums `1..=n` by counting down from `n`, one addition per step, stopping at
/// a yield point when `cancel` says so.
///
/// The result is exact: n(n+1)/2 < 2¹²⁸ for every `u64` n.
///
/// # Errors
///
/// Returns the [`Stop`] reason when the job is cancelled or runs out of time.
///
/// # Examples
///
/// ```
/// use offload::job::{sumn, Cancel};
/// assert_eq!(sumn(25_000, &Cancel::never()), Ok(312_512_500));
/// ```
pub fn sumn(n: u64, cancel: &Cancel<'_>) -> Result<u128, Stop> {
    sumn_with_yield_every(n, YIELD_EVERY, cancel)
}

/// [`sumn`] with the distance between yield points as a parameter, so that the
/// benchmark can measure what the yield points cost (`u64::MAX` means none).
#[doc(hidden)]
pub fn sumn_with_yield_every(n: u64, yield_every: u64, cancel: &Cancel<'_>) -> Result<u128, Stop> {
    let mut total: u128 = 0;
    let mut next = n;
    while next > 0 {
        let stretch_end = next.saturating_sub(yield_every);
        while next > stretch_end {
            total += u128::from(black_box(next));
            next -= 1;
        }
        if next > 0 {
            cancel.check()?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn closed_form(n: u64) -> u128 {
        let n = u128::from(n);
        n * (n + 1) / 2
    }

    /// Small and boundary values agree with n(n+1)/2, the seed's 25000 included.
    #[test]
    fn matches_closed_form() {
        for n in [0, 1, 2, 3, 10, 99_999, 100_000, 100_001, 250_000] {
            assert_eq!(sumn(n, &Cancel::never()), Ok(closed_form(n)), "n = {n}");
        }
        assert_eq!(sumn(25_000, &Cancel::never()), Ok(312_512_500));
    }

    /// The yield spacing does not change the answer, down to a check every step.
    #[test]
    fn yield_spacing_is_invisible() {
        for every in [1, 2, 7, 1000, u64::MAX] {
            assert_eq!(
                sumn_with_yield_every(12_345, every, &Cancel::never()),
                Ok(closed_form(12_345))
            );
        }
    }

    /// The largest n cannot overflow the u128 result (checked by the formula,
    /// since the loop would take a century).
    #[test]
    fn largest_answer_fits() {
        assert_eq!(
            closed_form(u64::MAX),
            170_141_183_460_469_231_722_463_931_679_029_329_920
        );
    }

    /// A raised flag stops a huge sum at its first yield point.
    #[test]
    fn cancelled_sum_stops() {
        let flag = AtomicBool::new(true);
        let token = Cancel::never().with_flag(&flag);
        assert_eq!(sumn(u64::MAX, &token), Err(Stop::Cancelled));
    }
}
