//! The node's clock: tokio time turned into the core's [`Timestamp`]s.

use lcache_core::Timestamp;
use tokio::time::Instant;

/// Reads time through tokio, so paused test clocks and turmoil's simulated time drive the node.
///
/// Timestamps count milliseconds since the clock was started (node start); they never leave the
/// node — remaining lifetimes cross the wire as durations.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// The current time as a core timestamp.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// `instant` as a core timestamp (one clock read can serve both a deadline and the core).
    pub fn at(&self, instant: Instant) -> Timestamp {
        let since = instant.saturating_duration_since(self.epoch);
        Timestamp::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::start();
        assert_eq!(clock.now(), Timestamp::ZERO);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now().as_millis(), 1_500);
    }
}
