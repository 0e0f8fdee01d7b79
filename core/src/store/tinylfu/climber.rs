//! Hill climbing of the admission window's size, after Caffeine's adaptive W-TinyLFU.
//!
//! The climber watches the hit rate over samples of requests (hits + misses). After each full
//! sample it moves the window budget by a step: in the same direction as the last move if the
//! hit rate did not drop, in the other direction if it did. The step starts at
//! [`STEP_DIVISOR`]ths of the budget (first move: shrink), decays to 98 % of itself after every
//! move, and is reset to its initial size (keeping its sign) when the hit rate changes by at
//! least [`RESTART_PPM`], so a changed workload is followed quickly. All arithmetic is on
//! integers (rates in parts per million), so a model can reproduce every decision exactly.

/// Hit-rate change, in parts per million, that resets the step to its initial size (5 %).
pub(crate) const RESTART_PPM: i64 = 50_000;

/// Initial step: `budget / STEP_DIVISOR` bytes (6.25 %).
pub(crate) const STEP_DIVISOR: i64 = 16;

/// Decay of the step after every move: `step * DECAY_NUM / DECAY_DEN` (98 %).
const DECAY_NUM: i64 = 49;
const DECAY_DEN: i64 = 50;

/// Hill-climbing state: what the last sample measured and where to move next.
#[derive(Debug, Clone)]
pub(crate) struct Climber {
    /// Initial step size, bytes.
    initial_step: i64,
    /// Signed size of the next move, bytes (negative: shrink the window).
    step: i64,
    /// Hit rate of the previous sample, parts per million.
    previous_ppm: i64,
    /// Hits and misses counted when the current sample started.
    start: (u64, u64),
}

impl Climber {
    /// A climber for a store of `budget` bytes; its first move shrinks the window.
    pub(crate) fn new(budget: u64) -> Self {
        let initial_step = i64::try_from(budget).unwrap_or(i64::MAX) / STEP_DIVISOR;
        Climber {
            initial_step,
            step: -initial_step,
            previous_ppm: 0,
            start: (0, 0),
        }
    }

    /// Given the store's running hit and miss counts, returns the signed window adjustment in
    /// bytes once at least `sample` requests were counted since the current sample started
    /// (and starts the next sample), else `None`.
    pub(crate) fn observe(&mut self, hits: u64, misses: u64, sample: u64) -> Option<i64> {
        let sample_hits = hits.saturating_sub(self.start.0);
        let requests = sample_hits + misses.saturating_sub(self.start.1);
        if requests < sample.max(1) {
            return None;
        }
        let rate = i64::try_from(u128::from(sample_hits) * 1_000_000 / u128::from(requests))
            .unwrap_or(1_000_000);
        let change = rate - self.previous_ppm;
        let amount = if change >= 0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART_PPM {
            if amount >= 0 {
                self.initial_step
            } else {
                -self.initial_step
            }
        } else {
            amount * DECAY_NUM / DECAY_DEN
        };
        self.previous_ppm = rate;
        self.start = (hits, misses);
        Some(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_once_per_sample_and_reverses_when_the_rate_drops() {
        let mut climber = Climber::new(1_600);
        assert_eq!(climber.observe(5, 4, 10), None, "sample not full");
        // First sample: 50 % vs 0 % before: a rise of >= 5 %, keep direction (shrink), restart.
        assert_eq!(climber.observe(5, 5, 10), Some(-100));
        // 60 %: +10 %, keep shrinking at full step.
        assert_eq!(climber.observe(11, 9, 10), Some(-100));
        // 59 %: a small drop: reverse (grow), step decays.
        assert_eq!(climber.observe(70, 50, 100), Some(100));
        // 59 % again: no drop, keep growing with the decayed step.
        assert_eq!(climber.observe(129, 91, 100), Some(98));
    }
}
