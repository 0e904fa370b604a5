//! Latencies in the shape Prometheus reads: a count per fixed bucket, from
//! 1 µs to 60 s, derived from the strategy's HdrHistograms when a snapshot is
//! taken. The histograms stay the one record of each latency: `stats`
//! quotes their percentiles, `/metrics` these buckets.

use hdrhistogram::Histogram;

/// The upper bounds of the buckets, in microseconds: 1, 2 and 5 for each
/// power of ten from 1 µs to 50 s, then 60 s. Values above the last bound
/// count only in [`LatencyBuckets::count`] (Prometheus' `+Inf` bucket).
pub const BUCKET_BOUNDS_US: [u64; 25] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000,
    60_000_000,
];

/// One latency's values, counted per bucket of [`BUCKET_BOUNDS_US`].
///
/// HdrHistogram keeps 3 significant digits, so a value within 0.1 % above a
/// bound may count in that bound's bucket, and the sum is exact to the same
/// 0.1 %.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyBuckets {
    /// Values in each bucket: above the previous bound, at or below this
    /// one (not cumulative).
    pub per_bucket: [u64; BUCKET_BOUNDS_US.len()],
    /// Every value recorded, those above the last bound included.
    pub count: u64,
    /// The sum of the values, in microseconds.
    pub sum_us: u64,
}

impl LatencyBuckets {
    /// Counts `histogram`'s values (in microseconds) per bucket.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let mut buckets = LatencyBuckets::default();
        for bin in histogram.iter_recorded() {
            let count = bin.count_at_value();
            // The bin's lowest value decides: a bin never straddles a
            // bound by more than its width (0.1 % of its values).
            let value = histogram.lowest_equivalent(bin.value_iterated_to());
            let median = histogram.median_equivalent(bin.value_iterated_to());
            buckets.count += count;
            buckets.sum_us = buckets.sum_us.saturating_add(median.saturating_mul(count));
            if let Some(slot) = BUCKET_BOUNDS_US.iter().position(|&bound| value <= bound) {
                buckets.per_bucket[slot] += count;
            }
        }
        buckets
    }

    /// `(upper bound in µs, values at or below it)` for every bucket,
    /// cumulative as Prometheus' `le` buckets are; the `+Inf` bucket is
    /// [`LatencyBuckets::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut below = 0;
        BUCKET_BOUNDS_US
            .iter()
            .zip(self.per_bucket)
            .map(move |(&bound, count)| {
                below += count;
                (bound, below)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for &v in values {
            h.record(v).expect("in range");
        }
        h
    }

    /// Values land in the bucket of the first bound at or above them; a
    /// value past 60 s counts only in the total.
    #[test]
    fn values_land_in_their_bucket() {
        let buckets = LatencyBuckets::of(&histogram(&[1, 2, 3, 1_000, 1_001, 70_000_000]));
        assert_eq!(buckets.count, 6);
        assert_eq!(buckets.per_bucket[0], 1, "1 µs");
        assert_eq!(buckets.per_bucket[1], 1, "2 µs");
        assert_eq!(buckets.per_bucket[2], 1, "3 µs ≤ 5 µs");
        assert_eq!(buckets.per_bucket[9], 1, "1 ms");
        assert_eq!(buckets.per_bucket[10], 1, "1.001 ms ≤ 2 ms");
        assert_eq!(
            buckets.per_bucket.iter().sum::<u64>(),
            5,
            "70 s is past 60 s"
        );
        let sum = 1 + 2 + 3 + 1_000 + 1_001 + 70_000_000u64;
        assert!(
            buckets.sum_us.abs_diff(sum) <= sum / 1000,
            "{}",
            buckets.sum_us
        );
    }

    /// Cumulative counts never go down and end at the values under 60 s.
    #[test]
    fn cumulative_counts_rise() {
        let buckets = LatencyBuckets::of(&histogram(&[5, 50, 500, 5_000, 5_000, 59_000_000]));
        let cumulative: Vec<(u64, u64)> = buckets.cumulative().collect();
        assert_eq!(cumulative.len(), BUCKET_BOUNDS_US.len());
        assert!(cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(cumulative.last(), Some(&(60_000_000, 6)));
        assert_eq!(cumulative[2], (5, 1));
        assert_eq!(cumulative[11], (5_000, 5));
    }
}
