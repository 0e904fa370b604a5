//! `prime n`: trial division over the odd divisors up to isqrt(n), the prime
//! checker of the reading in `shared/seeds/001`, for every `u64`.
//!
//! The divisor never exceeds isqrt(u64::MAX) = 2³² − 1, so `d += 2` cannot
//! overflow, and `u64::isqrt` is exact where a float square root is not.

use super::cancel::{Cancel, Stop, YIELD_EVERY};

/// Whether `n` is prime, by trial division, stopping at a yield point every
/// [`YIELD_EVERY`] divisions when `cancel` says so.
///
/// The worst case is a prime near `u64::MAX`: about 2.1 × 10⁹ divisions.
///
/// # Errors
///
/// Returns the [`Stop`] reason when the job is cancelled or runs out of time.
///
/// # Examples
///
/// ```
/// use offload::job::{is_prime, Cancel};
/// assert_eq!(is_prime(1_000_003, &Cancel::never()), Ok(true));
/// assert_eq!(is_prime(1_000_001, &Cancel::never()), Ok(false));
/// ```
pub fn is_prime(n: u64, cancel: &Cancel<'_>) -> Result<bool, Stop> {
    is_prime_from(n, 3, cancel)
}

/// Trial division of `n` by the odd numbers from `first_divisor` (odd, ≥ 3)
/// up to isqrt(n): `false` as soon as one divides `n`.
///
/// Split out so that tests can check the far end of the range of the largest
/// inputs without running the whole two-billion-step loop.
pub(crate) fn is_prime_from(n: u64, first_divisor: u64, cancel: &Cancel<'_>) -> Result<bool, Stop> {
    debug_assert!(first_divisor >= 3 && first_divisor % 2 == 1);
    if n < 2 {
        return Ok(false);
    }
    if n < 4 {
        return Ok(true);
    }
    if n.is_multiple_of(2) {
        return Ok(false);
    }
    let root = n.isqrt();
    let mut divisor = first_divisor;
    while divisor <= root {
        let stretch_end = root.min(divisor.saturating_add(2 * YIELD_EVERY));
        match first_odd_divisor(n, divisor, stretch_end) {
            Ok(()) => return Ok(false),
            Err(next) => divisor = next,
        }
        if divisor <= root {
            cancel.check()?;
        }
    }
    Ok(true)
}

/// The hot loop: tries the odd divisors from `divisor` up to `last`; `Ok` as
/// soon as one divides `n`, else `Err` with the next divisor to try.
///
/// Never inlined, for the reason given at `sumn`'s `sum_stretch`: inlined, the
/// loop was copied once per combination of the caller's deadline and flags, and
/// the copies ran at different speeds depending on where they fell.
#[inline(never)]
fn first_odd_divisor(n: u64, mut divisor: u64, last: u64) -> Result<(), u64> {
    while divisor <= last {
        if n.is_multiple_of(divisor) {
            return Ok(());
        }
        divisor += 2;
    }
    Err(divisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent oracle: deterministic Miller–Rabin for 64-bit numbers
    /// (these twelve bases are enough below 3.3 × 10²⁴).
    fn miller_rabin(n: u64) -> bool {
        fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
            (u128::from(a) * u128::from(b) % u128::from(m)) as u64
        }
        fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
            let mut acc = 1 % m;
            base %= m;
            while exp > 0 {
                if exp & 1 == 1 {
                    acc = mul_mod(acc, base, m);
                }
                base = mul_mod(base, base, m);
                exp >>= 1;
            }
            acc
        }
        const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
        if n < 2 {
            return false;
        }
        for p in BASES {
            if n.is_multiple_of(p) {
                return n == p;
            }
        }
        let (mut d, mut s) = (n - 1, 0);
        while d % 2 == 0 {
            d /= 2;
            s += 1;
        }
        'bases: for a in BASES {
            let mut x = pow_mod(a, d, n);
            if x == 1 || x == n - 1 {
                continue;
            }
            for _ in 1..s {
                x = mul_mod(x, x, n);
                if x == n - 1 {
                    continue 'bases;
                }
            }
            return false;
        }
        true
    }

    fn check(n: u64) -> bool {
        is_prime(n, &Cancel::never()).expect("never cancelled")
    }

    /// The first numbers, where off-by-one mistakes live.
    #[test]
    fn small_numbers() {
        let primes: Vec<u64> = (0..60).filter(|&n| check(n)).collect();
        assert_eq!(
            primes,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
        );
    }

    /// Squares of primes are found composite: the divisor equal to isqrt(n) is
    /// tried.
    #[test]
    fn prime_squares_are_composite() {
        for p in [3u64, 5, 7, 101, 65_521, 1_000_003] {
            assert!(!check(p * p), "{p}²");
        }
    }

    /// Trial division agrees with Miller–Rabin on a spread of numbers up to
    /// about 10¹² (a root of 10⁶, quick even in a debug build).
    #[test]
    fn agrees_with_miller_rabin() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = state % 1_000_000_000_000;
            assert_eq!(check(n), miller_rabin(n), "n = {n}");
        }
        for n in 999_999_999_900..1_000_000_000_000 {
            assert_eq!(check(n), miller_rabin(n), "n = {n}");
        }
    }

    /// The known values of the issue, confirmed by the oracle.
    #[test]
    fn oracle_confirms_known_values() {
        for p in [
            5_000_111_000_222_021,
            9_999_999_999_999_917,
            999_999_999_999_999_989,
            18_446_744_073_709_551_557,
        ] {
            assert!(miller_rabin(p), "{p} is prime");
        }
        for c in [9_999_999_999_999_999, 18_446_744_030_759_878_681] {
            assert!(!miller_rabin(c), "{c} is composite");
        }
        assert_eq!(4_294_967_291u64 * 4_294_967_291, 18_446_744_030_759_878_681);
    }

    /// The values that a debug build checks whole in well under a second.
    #[test]
    fn known_values_in_full() {
        assert!(check(5_000_111_000_222_021), "root 7.1e7"); // 3.5e7 divisions
        assert!(!check(9_999_999_999_999_999));
    }

    /// Near u64::MAX no step overflows: the last stretch of divisors before
    /// isqrt(n) is tried for the largest known prime and for 4294967291², whose
    /// only odd divisor is the very last candidate. (The whole loops are run by
    /// `cargo test --release -- --ignored`.)
    #[test]
    fn top_of_range_tail() {
        let top_prime = 18_446_744_073_709_551_557u64;
        let root = top_prime.isqrt();
        assert_eq!(root, 4_294_967_295);
        let near_root = (root - 4_000_001) | 1;
        assert_eq!(
            is_prime_from(top_prime, near_root, &Cancel::never()),
            Ok(true)
        );

        let square = 18_446_744_030_759_878_681u64;
        assert_eq!(square.isqrt(), 4_294_967_291);
        let near_root = (square.isqrt() - 4_000_000) | 1;
        assert_eq!(
            is_prime_from(square, near_root, &Cancel::never()),
            Ok(false)
        );
        // u64::MAX = (2³² − 1)(2³² + 1): its last candidate, isqrt itself, divides it.
        assert_eq!(
            is_prime_from(u64::MAX, near_root, &Cancel::never()),
            Ok(false)
        );
    }

    /// Every known value, by the full loop (minutes in debug; run with
    /// `cargo test --release -p ysum-offload -- --ignored`).
    #[test]
    #[ignore = "about 2 × 10⁹ divisions; run in release"]
    fn known_values_whole_loop() {
        for p in [
            9_999_999_999_999_917,
            999_999_999_999_999_989,
            18_446_744_073_709_551_557,
        ] {
            assert!(check(p), "{p}");
        }
        assert!(!check(18_446_744_030_759_878_681));
    }
}
