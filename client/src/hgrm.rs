//! The `.hgrm` percentile distribution (`--hgrm FILE`): HdrHistogram's
//! standard text layout, as wrk2 prints it, so that existing HdrHistogram
//! plotters read it.
//!
//! Values are recorded in microseconds and written in milliseconds. The
//! percentiles step in "ticks" that halve the distance to 100 % each time,
//! five ticks per halving. The footer gives the mean, standard deviation,
//! maximum, total count, and the histogram's bucket layout.
//!
//! ```text
//!        Value   Percentile   TotalCount 1/(1-Percentile)
//!
//!        0.045     0.000000            1         1.00
//!        ...
//!        9.887     1.000000        10000          inf
//! #[Mean    =        1.213, StdDeviation   =        0.500]
//! #[Max     =        9.887, Total count    =        10000]
//! #[Buckets =           22, SubBuckets     =         2048]
//! ```

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Percentile ticks per halving of the distance to 100 %.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Recorded values per written unit: microseconds to milliseconds.
pub const VALUE_SCALE: f64 = 1000.0;

/// Writes `h` (values in microseconds) as a `.hgrm` distribution in
/// milliseconds.
///
/// # Errors
///
/// Any error of `out`.
pub fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    let digits = usize::from(h.sigfig());
    writeln!(
        out,
        "{:>12} {:>12} {:>12} {:>12}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut total = 0u64;
        for step in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += step.count_since_last_iteration();
            let percentile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64 / VALUE_SCALE;
            // 1/(1 − 1.0) is infinite, written `inf` as wrk2 does.
            let inverted = 1.0 / (1.0 - percentile);
            writeln!(
                out,
                "{value:12.digits$} {percentile:12.6} {total:12} {inverted:12.2}"
            )?;
        }
    }
    let scaled = |v: f64| v / VALUE_SCALE;
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (scaled(h.mean()), scaled(h.stdev()), scaled(h.max() as f64))
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    )
}

/// The sub-buckets per bucket of a histogram whose lowest discernible value
/// is 1: the power of two that covers 2 × 10^sigfig.
fn sub_buckets(sigfig: u8) -> u64 {
    let single_unit_resolution = 2 * 10u64.pow(u32::from(sigfig));
    single_unit_resolution.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    fn render(h: &Histogram<u64>) -> String {
        let mut out = Vec::new();
        write_hgrm(h, &mut out).expect("a Vec takes any write");
        String::from_utf8(out).expect("ASCII")
    }

    /// The header, the rows and the footer have the standard layout: fixed
    /// columns, milliseconds, percentiles up to 1 with `inf` last, and the
    /// counts adding up to the total.
    #[test]
    fn standard_layout() {
        let mut h = histogram();
        for micros in 1..=10_000u64 {
            h.record(micros).expect("in range");
        }
        let text = render(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value   Percentile   TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.001     0.000000            1         1.00"
        );
        let rows = &lines[2..lines.len() - 3];
        let last = rows.last().expect("rows");
        assert!(
            last.ends_with("1.000000        10000          inf"),
            "{last}"
        );
        assert!(last.starts_with("      10.007 "), "{last}");
        let mut previous = (0.0, 0u64);
        for row in rows {
            let columns: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(columns.len(), 4, "{row}");
            let percentile: f64 = columns[1].parse().expect("percentile");
            let count: u64 = columns[2].parse().expect("count");
            assert!(percentile >= previous.0 && count >= previous.1, "{row}");
            previous = (percentile, count);
        }
        assert!(rows.iter().any(|r| r.contains(" 0.500000 ")));
        assert!(rows.iter().any(|r| r.contains(" 0.990625 ")));
        let footer = &lines[lines.len() - 3..];
        assert_eq!(
            footer[0],
            "#[Mean    =        5.001, StdDeviation   =        2.887]"
        );
        assert_eq!(
            footer[1],
            "#[Max     =       10.007, Total count    =        10000]"
        );
        assert!(footer[2].starts_with("#[Buckets = "), "{}", footer[2]);
        assert!(footer[2].ends_with(", SubBuckets     =         2048]"));
    }

    /// An empty histogram still has a header and a footer.
    #[test]
    fn empty_histogram() {
        let text = render(&histogram());
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
        assert_eq!(text.lines().count(), 5);
    }
}
