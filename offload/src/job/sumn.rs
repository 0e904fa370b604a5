//! `sumn n`: the sum 1 + 2 + … + n, the slow way, exactly as the original.
//!
//! The point of the job is its CPU cost, one addition per step, so the loop
//! must survive the optimizer: each addend passes through
//! [`std::hint::black_box`], which stops LLVM from turning the loop into
//! `n * (n + 1) / 2`. `cargo bench -p ysum-offload` shows the time growing linearly
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
        total += sum_stretch(next, stretch_end);
        next = stretch_end;
        if next > 0 {
            cancel.check()?;
        }
    }
    Ok(total)
}

/// The hot loop: `top + (top - 1) + … + (bottom + 1)`, one addition per step.
///
/// It is a function of its own, never inlined, so that there is exactly one
/// copy of it in the binary. Inlined into its caller, LLVM unswitched the loop
/// on the fields of [`Cancel`] and emitted four copies, one per combination of
/// deadline and flags; each landed at a different offset from a 64-byte
/// boundary, and the three that straddled one ran 5–15% slower per step (the
/// front end fetches a loop that crosses a cache line in two pieces). So the
/// same job cost less in a procs worker (no deadline) than on a server thread
/// (a deadline). With one copy, and loops aligned to 64 bytes by the workspace's
/// `.cargo/config.toml`, the job costs the same in every context; the test
/// `hot_loop_sits_in_one_cache_line` checks the release binary's layout.
#[inline(never)]
fn sum_stretch(top: u64, bottom: u64) -> u128 {
    let mut total: u128 = 0;
    let mut next = top;
    while next > bottom {
        total += u128::from(black_box(next));
        next -= 1;
    }
    total
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

    /// The release build has exactly one copy of the hot loop, in
    /// `sum_stretch`, and that loop lies inside one 64-byte cache line, so the
    /// job's speed cannot depend on the caller's deadline or flags (see
    /// [`sum_stretch`]). Reads this test binary's own machine code with
    /// `objdump`; meaningless in a debug build, hence ignored there (CI runs it
    /// with `cargo test --release -p ysum-offload --lib -- --ignored`).
    #[test]
    #[ignore = "reads the release build's machine code: run with --release -- --ignored"]
    fn hot_loop_sits_in_one_cache_line() {
        if cfg!(debug_assertions) {
            panic!("run this test on a release build (cargo test --release)");
        }
        // Keep both functions in the binary whatever the other tests do.
        assert_eq!(sumn(10, &Cancel::never()), Ok(55));
        let exe = std::env::current_exe().expect("the test binary's path");
        let listing = std::process::Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(&exe)
            .output()
            .expect("objdump (binutils) must be installed to check the layout");
        assert!(listing.status.success(), "objdump failed on {exe:?}");
        let listing = String::from_utf8_lossy(&listing.stdout);
        let stretches = functions(&listing, "sum_stretch");
        assert_eq!(stretches.len(), 1, "expected one copy of sum_stretch");
        let callers = functions(&listing, "sumn_with_yield_every");
        assert!(!callers.is_empty(), "sumn_with_yield_every not found");
        // The step's carry (`adc $0x0`) appears in sum_stretch alone: the
        // caller only adds whole stretches (an `adc` of two registers).
        for caller in &callers {
            assert!(
                !caller
                    .iter()
                    .any(|(_, text)| text.starts_with("adc") && text.contains("$0x0,")),
                "the hot loop was copied into sumn_with_yield_every: {caller:?}"
            );
        }
        let body = &stretches[0];
        let loops = loops(body);
        assert_eq!(loops.len(), 1, "expected one loop in sum_stretch: {body:?}");
        let (start, end) = loops[0];
        assert_eq!(
            start / 64,
            (end - 1) / 64,
            "the hot loop {start:#x}..{end:#x} straddles a 64-byte boundary"
        );
    }

    /// The loops of a function: (first address, address after the backward
    /// jump) for every jump to an earlier address.
    fn loops(body: &[(u64, String)]) -> Vec<(u64, u64)> {
        body.windows(2)
            .filter_map(|pair| {
                let (at, text) = &pair[0];
                let (next, _) = pair[1];
                let (mnemonic, operands) = text.split_once(' ')?;
                if !mnemonic.starts_with('j') {
                    return None;
                }
                let target = operands.split_whitespace().next()?;
                let target = u64::from_str_radix(target, 16).ok()?;
                (target < *at).then_some((target, next))
            })
            .collect()
    }

    /// Every function in an `objdump -d` listing whose symbol contains `name`,
    /// as (address, instruction text) pairs.
    fn functions(listing: &str, name: &str) -> Vec<Vec<(u64, String)>> {
        let mut found = Vec::new();
        let mut current: Option<Vec<(u64, String)>> = None;
        for line in listing.lines() {
            if line.ends_with(">:") {
                found.extend(current.take());
                if line.contains(name) {
                    current = Some(Vec::new());
                }
            } else if let Some(body) = current.as_mut() {
                let Some((address, text)) = line.split_once(":\t") else {
                    continue;
                };
                if let Ok(address) = u64::from_str_radix(address.trim(), 16) {
                    body.push((address, text.trim().to_string()));
                }
            }
        }
        found.extend(current);
        found
    }

    /// A raised flag stops a huge sum at its first yield point.
    #[test]
    fn cancelled_sum_stops() {
        let flag = AtomicBool::new(true);
        let token = Cancel::never().with_flag(&flag);
        assert_eq!(sumn(u64::MAX, &token), Err(Stop::Cancelled));
    }
}
