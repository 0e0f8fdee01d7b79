//! Capped exponential backoff with seeded jitter, for retrying an unreachable backend.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Delays between retries: each failure doubles the base delay up to `max`; the delay actually
/// waited is drawn uniformly from `[base / 2, base]` ("equal jitter"), so nodes that lost the
/// backend together do not retry in lockstep, yet never retry sooner than half the base.
///
/// The jitter comes from a [`ChaCha8Rng`] seeded by the caller, so one seed gives one sequence of
/// delays (never `thread_rng`).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    base: Duration,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (raised to `initial` if below it),
    /// with jitter drawn from `seed`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            base: initial,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The delay to wait before the next attempt; grows the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base.saturating_mul(2)).min(self.max);
        let half = base / 2;
        let spread = u64::try_from((base - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(self.rng.random_range(0..=spread))
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.base = self.initial;
    }

    /// The largest delay [`next_delay`](Self::next_delay) can return.
    pub fn max(&self) -> Duration {
        self.max
    }
}

/// A child seed for `component` derived from a root `seed`, so each retry loop of one node draws
/// its own jitter while the node's seed still decides all of them.
pub fn derive_seed(seed: u64, component: &str) -> u64 {
    lcache_core::hash::ring_hash(format!("{seed:016x}/{component}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut b = Backoff::new(100 * MS, 1_000 * MS, 7);
        let bases = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for base in bases {
            let d = b.next_delay();
            assert!(
                d >= base * MS / 2 && d <= base * MS,
                "{d:?} for base {base}ms"
            );
        }
        assert_eq!(b.max(), 1_000 * MS);
        b.reset();
        assert!(b.next_delay() <= 100 * MS);
    }

    #[test]
    fn one_seed_gives_one_sequence() {
        let run = |seed| {
            let mut b = Backoff::new(10 * MS, 10_000 * MS, seed);
            (0..20).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn degenerate_bounds_are_repaired() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 0);
        assert!(b.next_delay() <= MS);
        assert_eq!(b.max(), MS);
    }

    #[test]
    fn derived_seeds_differ_per_component_and_are_stable() {
        assert_ne!(derive_seed(1, "watch"), derive_seed(1, "lease"));
        assert_ne!(derive_seed(1, "watch"), derive_seed(2, "watch"));
        assert_eq!(derive_seed(1, "watch"), derive_seed(1, "watch"));
    }
}
