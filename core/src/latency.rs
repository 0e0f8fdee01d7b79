//! Latency histograms recorded with atomics: no lock on the path that records, a consistent
//! enough read for exporters (Prometheus) that walk them.
//!
//! A histogram keeps one copy of its counts per stripe (`crate::stripe`): a thread with a stripe
//! of its own records with plain loads and stores (no locked instruction on the request path),
//! others add atomically to a shared copy, and a read sums the copies.
//!
//! The buckets are fixed ([`BUCKET_BOUNDS_SECONDS`]): from 100 µs (a local hit served over
//! loopback) to 10 s (the longest default load timeout). A duration is given by the caller, so
//! nothing here reads a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stripe::{owned_stripe, OWNED_STRIPES};

/// Upper bounds of the buckets, in seconds (a `+Inf` bucket follows them).
pub const BUCKET_BOUNDS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// [`BUCKET_BOUNDS_SECONDS`] in nanoseconds, what [`LatencyHistogram::observe`] compares with.
const BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of durations: a count per bucket (plus `+Inf`) and the sum, kept per stripe.
#[derive(Debug)]
pub struct LatencyHistogram {
    /// One copy per owned stripe, then the shared one.
    stripes: Box<[Counts]>,
}

/// One stripe's counts, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Counts {
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            stripes: (0..=OWNED_STRIPES).map(|_| Counts::default()).collect(),
        }
    }
}

/// What a [`LatencyHistogram`] held when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// Observations.
    pub count: u64,
    /// Sum of the observed durations, in seconds.
    pub sum_seconds: f64,
    /// `(upper bound in seconds, observations above the previous bound and at or below this
    /// one)` per bucket, in [`BUCKET_BOUNDS_SECONDS`] order: not cumulative, as
    /// `prometheus-client` encodes them. Observations above the last bound are `count` minus
    /// their sum.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencyHistogram {
    /// Records one duration: two plain load-and-stores on this thread's stripe, or two relaxed
    /// atomic additions for a thread without one.
    pub fn observe(&self, elapsed: Duration) {
        self.observe_many(elapsed, 1);
    }

    /// Records `count` observations of the same duration (the requests of one pipelined batch)
    /// at the cost of one.
    pub fn observe_many(&self, elapsed: Duration, count: u64) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        let total = nanos.saturating_mul(count);
        match owned_stripe().and_then(|stripe| self.stripes.get(stripe)) {
            Some(counts) => {
                // This thread is the only writer of its stripe.
                let add = |cell: &AtomicU64, n: u64| {
                    cell.store(
                        cell.load(Ordering::Relaxed).wrapping_add(n),
                        Ordering::Relaxed,
                    );
                };
                add(&counts.buckets[bucket], count);
                add(&counts.sum_nanos, total);
            }
            None => {
                let shared = &self.stripes[OWNED_STRIPES];
                shared.buckets[bucket].fetch_add(count, Ordering::Relaxed);
                shared.sum_nanos.fetch_add(total, Ordering::Relaxed);
            }
        }
    }

    /// Observations in bucket `i` (the last one is `+Inf`), over every stripe.
    fn bucket(&self, i: usize) -> u64 {
        self.stripes
            .iter()
            .map(|counts| counts.buckets[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        (0..=BOUNDS_NANOS.len()).map(|i| self.bucket(i)).sum()
    }

    /// The histogram now (each bucket read on its own: observations made during the read may
    /// show in some buckets and not yet in the sum).
    pub fn snapshot(&self) -> LatencySnapshot {
        let buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_SECONDS
            .iter()
            .enumerate()
            .map(|(i, bound)| (*bound, self.bucket(i)))
            .collect();
        let beyond = self.bucket(BOUNDS_NANOS.len());
        let count = buckets.iter().map(|(_, n)| n).sum::<u64>() + beyond;
        let sum_nanos = self
            .stripes
            .iter()
            .map(|counts| counts.sum_nanos.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add);
        LatencySnapshot {
            count,
            sum_seconds: sum_nanos as f64 / 1e9,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_nanos_match_the_bounds_in_seconds() {
        for (seconds, nanos) in BUCKET_BOUNDS_SECONDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((seconds * 1e9).round() as u64, nanos);
        }
        assert!(BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_pass() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(100)); // exactly on the first bound: le 0.0001
        h.observe(Duration::from_micros(101)); // le 0.00025
        h.observe(Duration::from_millis(3)); // le 0.005
        h.observe(Duration::from_secs(60)); // +Inf only
        h.observe_many(Duration::from_millis(3), 0); // nothing
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(h.count(), 4);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 1));
        assert_eq!(s.buckets[4], (0.0025, 0));
        assert_eq!(s.buckets[5], (0.005, 1));
        assert_eq!(
            s.buckets.iter().map(|(_, n)| n).sum::<u64>(),
            3,
            "60 s is past every bound"
        );
        let expected = 0.0001 + 0.000101 + 0.003 + 60.0;
        assert!((s.sum_seconds - expected).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn observations_from_more_threads_than_stripes_are_all_counted() {
        let h = LatencyHistogram::default();
        std::thread::scope(|scope| {
            for t in 0..3 * OWNED_STRIPES as u64 {
                let h = &h;
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        h.observe(Duration::from_micros(50 + t));
                    }
                });
            }
        });
        let s = h.snapshot();
        let threads = 3 * OWNED_STRIPES as u64;
        assert_eq!(s.count, threads * 1_000);
        assert_eq!(
            s.buckets[0].1,
            threads * 1_000,
            "every observation is under 100 µs"
        );
        let micros: u64 = (0..threads).map(|t| 50 + t).sum();
        assert!((s.sum_seconds - micros as f64 * 1_000.0 / 1e6).abs() < 1e-6);
    }

    #[test]
    fn a_batch_counts_as_its_observations_one_by_one() {
        let (batch, one_by_one) = (LatencyHistogram::default(), LatencyHistogram::default());
        batch.observe_many(Duration::from_micros(300), 16);
        for _ in 0..16 {
            one_by_one.observe(Duration::from_micros(300));
        }
        assert_eq!(batch.snapshot(), one_by_one.snapshot());
        assert_eq!(batch.count(), 16);
    }

    #[test]
    fn an_empty_histogram_reads_zero() {
        let s = LatencyHistogram::default().snapshot();
        assert_eq!(s.count, 0);
        assert_eq!(s.sum_seconds, 0.0);
        assert!(s.buckets.iter().all(|(_, n)| *n == 0));
        assert_eq!(s.buckets.len(), BUCKET_BOUNDS_SECONDS.len());
    }
}
