//! Admission control: a cap on requests in flight, and the switch that stops new ones at shutdown.

use crate::error::RequestError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Counts requests in flight and refuses one past the cap instead of queueing it. A plain atomic
/// counter: admitting and releasing a request is one atomic operation each (a semaphore would
/// take a lock on every release).
#[derive(Debug)]
pub(crate) struct Admission {
    in_flight: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    /// Woken when the last request in flight completes after [`Admission::close`].
    idle: Notify,
}

/// One admitted request; dropping it releases its place.
#[derive(Debug)]
pub(crate) struct Admitted<'a>(&'a Admission);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let before = self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a request was released twice");
        if before == 1 && self.0.closed.load(Ordering::Acquire) {
            self.0.idle.notify_waiters();
        }
    }
}

impl Admission {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Admission {
            in_flight: AtomicUsize::new(0),
            capacity: max_in_flight.max(1),
            closed: AtomicBool::new(false),
            idle: Notify::new(),
        }
    }

    /// A place for one request, held until the request completes.
    pub(crate) fn admit(&self) -> Result<Admitted<'_>, RequestError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RequestError::ShuttingDown);
        }
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Admitted(self)),
            Err(_) => Err(RequestError::Overloaded(format!(
                "{} requests already in flight",
                self.capacity
            ))),
        }
    }

    /// Refuse every request from now on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// After [`Admission::close`]: wait until every admitted request has completed, at most
    /// `grace`; true if all did.
    pub(crate) async fn drain(&self, grace: Duration) -> bool {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(grace, drained).await.is_ok()
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
    async fn drain_waits_for_requests_up_to_grace() {
        let admission = std::sync::Arc::new(Admission::new(4));
        let permit = admission.admit().unwrap();
        admission.close();
        assert!(!admission.drain(Duration::from_millis(100)).await);
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.drain(Duration::from_secs(60)).await })
        };
        drop(permit);
        assert!(waiter.await.unwrap());
    }
}
