//! Admission control: a cap on requests in flight, and the switch that stops new ones at shutdown.

use crate::error::RequestError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hands out one permit per request in flight; refuses instead of queueing when none is left.
#[derive(Debug)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    capacity: u32,
    closed: AtomicBool,
}

impl Admission {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        let capacity =
            u32::try_from(max_in_flight.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Admission {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            closed: AtomicBool::new(false),
        }
    }

    /// A permit for one request, held until the request completes.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, RequestError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RequestError::ShuttingDown);
        }
        self.permits.clone().try_acquire_owned().map_err(|_| {
            RequestError::Overloaded(format!("{} requests already in flight", self.capacity))
        })
    }

    /// Refuse every request from now on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.capacity as usize - self.permits.available_permits()
    }

    /// Wait until every admitted request has completed, at most `grace`; true if all did.
    pub(crate) async fn drain(&self, grace: Duration) -> bool {
        let all = self.permits.acquire_many(self.capacity);
        matches!(tokio::time::timeout(grace, all).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_capacity_and_after_close() {
        let admission = Admission::new(2);
        let a = admission.admit().unwrap();
        let _b = admission.admit().unwrap();
        assert!(matches!(
            admission.admit(),
            Err(RequestError::Overloaded(_))
        ));
        assert_eq!(admission.in_flight(), 2);
        drop(a);
        let _c = admission.admit().unwrap();
        admission.close();
        assert!(matches!(admission.admit(), Err(RequestError::ShuttingDown)));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_permits_up_to_grace() {
        let admission = Arc::new(Admission::new(4));
        let permit = admission.admit().unwrap();
        assert!(!admission.drain(Duration::from_millis(100)).await);
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.drain(Duration::from_secs(60)).await })
        };
        drop(permit);
        assert!(waiter.await.unwrap());
    }
}
