//! [`Deadline`]: the one way a request's time limit travels, from the server that received it,
//! through the node, to the transport that forwards it.

use std::time::Duration;

use tokio::time::Instant;

/// An absolute point on tokio's clock by which a request must be answered.
///
/// The server turns a caller's `grpc-timeout` into one; the node narrows it (its own caps) and
/// hands it to the peer transport, which sends what is left of it as the next `grpc-timeout`.
/// Read through tokio, so paused test clocks and simulated time drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        Deadline(now.checked_add(timeout).unwrap_or_else(|| far_future(now)))
    }

    /// The deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left from now; zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_past(self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of the two.
    pub fn min(self, other: Deadline) -> Deadline {
        Deadline(self.0.min(other.0))
    }

    /// This deadline, but no later than `timeout` from now.
    pub fn within(self, timeout: Duration) -> Deadline {
        self.min(Deadline::after(timeout))
    }
}

/// About thirty years from `now`: later than any request lives, early enough not to overflow.
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_time_follows_tokio_time() {
        let d = Deadline::after(Duration::from_millis(300));
        assert_eq!(d.remaining(), Duration::from_millis(300));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(d.remaining(), Duration::from_millis(200));
        assert!(!d.is_past());
        assert_eq!(
            d.within(Duration::from_millis(50)).remaining(),
            Duration::from_millis(50)
        );
        assert_eq!(d.within(Duration::from_secs(5)), d);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert!(d.is_past());
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(Deadline::after(Duration::MAX).remaining() > Duration::from_secs(86_400));
    }
}
