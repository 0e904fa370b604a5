//! The client's own primality check, to verify `prime N` answers.
//!
//! The server decides by trial division, which takes up to a minute for a
//! large prime; the client must not. A Miller–Rabin test with the first
//! twelve primes as witnesses is exact for every `u64` (no composite below
//! 3.3 × 10²⁴ is a strong pseudoprime to all of them), and each step
//! multiplies in `u128`, so nothing overflows.

/// The witnesses: the primes up to 37, enough for every `u64`.
const WITNESSES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];

/// Whether `n` is prime, exactly, in microseconds for any `u64`.
///
/// # Examples
///
/// ```
/// use client::prime::is_prime;
/// assert!(is_prime(1_000_003));
/// assert!(!is_prime(1_000_001));
/// assert!(is_prime(18_446_744_073_709_551_557)); // the largest u64 prime
/// ```
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in WITNESSES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    // n is odd and above 37: write n − 1 = d · 2^s with d odd.
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    WITNESSES.iter().all(|&a| passes_round(n, a, d, s))
}

/// One Miller–Rabin round: whether `n` is a strong probable prime to base
/// `a`, where n − 1 = d · 2^s.
fn passes_round(n: u64, a: u64, d: u64, s: u32) -> bool {
    let mut x = pow_mod(a, d, n);
    if x == 1 || x == n - 1 {
        return true;
    }
    for _ in 1..s {
        x = mul_mod(x, x, n);
        if x == n - 1 {
            return true;
        }
    }
    false
}

/// `a · b mod m`, exact through `u128`.
fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    let product = u128::from(a) * u128::from(b) % u128::from(m);
    u64::try_from(product).expect("a remainder mod a u64 fits in a u64")
}

/// `base^exp mod m` by square-and-multiply.
fn pow_mod(base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    let mut base = base % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trial division, the obvious reference for small numbers.
    fn by_trial_division(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    /// Every number below 100 000 agrees with trial division.
    #[test]
    fn agrees_with_trial_division() {
        for n in 0..100_000 {
            assert_eq!(is_prime(n), by_trial_division(n), "n = {n}");
        }
    }

    /// Known primes near the top of the range, and the primes the docs use.
    #[test]
    fn known_primes() {
        for p in [
            2,
            3,
            37,
            41,
            1_000_003,
            2_147_483_647,
            4_294_967_291,
            4_294_967_311,
            1_000_000_000_000_000_003,
            18_446_744_073_709_551_557,
        ] {
            assert!(is_prime(p), "{p} is prime");
        }
    }

    /// Carmichael numbers and strong pseudoprimes to the smallest bases, the
    /// composites that fool weaker tests, are found composite.
    #[test]
    fn pseudoprimes_are_composite() {
        for c in [
            561,
            1_105,
            2_047,                     // strong pseudoprime to base 2
            3_215_031_751,             // to bases 2, 3, 5 and 7
            341_550_071_728_321,       // to bases 2 to 17
            3_825_123_056_546_413_051, // to bases 2 to 23
            1_000_001,
            4_294_967_297, // 641 × 6700417
            18_446_744_073_709_551_615,
            18_446_744_073_709_551_613, // divisible by 13
            18_446_744_073_709_551_559, // divisible by 41
        ] {
            assert!(!is_prime(c), "{c} is composite");
        }
    }

    /// The squares of large primes are composite (a case without small
    /// factors).
    #[test]
    fn squares_of_primes_are_composite() {
        for p in [65_521u64, 4_294_967_291] {
            assert!(!is_prime(p * p), "{p}²");
        }
    }
}
