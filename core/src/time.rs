//! Time as an input: the runtime reads its clock and passes [`Timestamp`]s in.

use std::time::Duration;

/// A point in time, in milliseconds since an epoch chosen by the runtime (for example node start).
///
/// The core never reads a clock; callers pass `now` explicitly, which keeps every state machine
/// deterministic and lets simulations drive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The instant `duration` later, saturating instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_difference_round_trip() {
        let t = Timestamp::from_millis(1_000);
        let later = t.saturating_add(Duration::from_millis(250));
        assert_eq!(later.as_millis(), 1_250);
        assert_eq!(
            later.saturating_duration_since(t),
            Duration::from_millis(250)
        );
        assert_eq!(t.saturating_duration_since(later), Duration::ZERO);
    }

    #[test]
    fn add_saturates() {
        let t = Timestamp::from_millis(u64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(10)).as_millis(),
            u64::MAX
        );
        assert_eq!(
            Timestamp::ZERO.saturating_add(Duration::MAX).as_millis(),
            u64::MAX
        );
    }
}
