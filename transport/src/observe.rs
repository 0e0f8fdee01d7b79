//! What front doors report about the requests they serve: which RPC, how it ended, how long it
//! took. The handler ([`CacheHandler::observe`]) turns that into
//! metrics.
//!
//! A front door times requests because only it knows when the answer left: gRPC answers each
//! request on its own, so each is timed on its own ([`RequestTimer`]); RESP answers a pipelined
//! batch with one write, so every command of a batch took the batch's time, and the clock is read
//! once per batch ([`BatchTimer`]) instead of once per command (which, measured, was a sixth of
//! the server's CPU per pipelined `SET`).

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ServiceError;
use crate::CacheHandler;

/// The RPCs of the cache API, as the `rpc` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `Get` (RESP `GET`, `MGET`, `EXISTS`: one per key).
    Get,
    /// `Set`.
    Set,
    /// `Delete` (RESP `DEL`: one per key).
    Delete,
    /// `Invalidate`, from a key's owner.
    Invalidate,
    /// `Stats` (RESP `INFO`).
    Stats,
}

impl Rpc {
    /// Every RPC, in the order of their discriminants.
    pub const ALL: [Rpc; 5] = [Rpc::Get, Rpc::Set, Rpc::Delete, Rpc::Invalidate, Rpc::Stats];

    /// The RPC's `rpc` label.
    pub fn label(self) -> &'static str {
        match self {
            Rpc::Get => "get",
            Rpc::Set => "set",
            Rpc::Delete => "delete",
            Rpc::Invalidate => "invalidate",
            Rpc::Stats => "stats",
        }
    }
}

/// How a request ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a value or an acknowledgement.
    Ok,
    /// A get answered "not found".
    Miss,
    /// Refused as malformed (bad key or value, unknown group, ...).
    Invalid,
    /// A forwarded write reached a node that does not own the key.
    NotOwner,
    /// Refused because a bound was reached.
    Overloaded,
    /// The owner was unreachable, or this node is shutting down.
    Unavailable,
    /// The loader failed.
    LoadFailed,
    /// The request's deadline passed.
    DeadlineExceeded,
    /// A bug or an unexpected failure.
    Internal,
    /// The caller went away (or the server dropped the request at its deadline) before an
    /// answer.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in the order of their discriminants.
    pub const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::Miss,
        Outcome::Invalid,
        Outcome::NotOwner,
        Outcome::Overloaded,
        Outcome::Unavailable,
        Outcome::LoadFailed,
        Outcome::DeadlineExceeded,
        Outcome::Internal,
        Outcome::Cancelled,
    ];

    /// The outcome's `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Miss => "miss",
            Outcome::Invalid => "invalid",
            Outcome::NotOwner => "not_owner",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
            Outcome::LoadFailed => "load_failed",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::Internal => "internal",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The outcome of a request that ended with `err`.
    pub fn of_error(err: &ServiceError) -> Outcome {
        match err {
            ServiceError::InvalidArgument(_) | ServiceError::UnknownGroup(_) => Outcome::Invalid,
            ServiceError::Unavailable(_) | ServiceError::NotServing(_) => Outcome::Unavailable,
            ServiceError::NotOwner(_) => Outcome::NotOwner,
            ServiceError::LoadFailed(_) => Outcome::LoadFailed,
            ServiceError::DeadlineExceeded(_) => Outcome::DeadlineExceeded,
            ServiceError::ResourceExhausted(_) => Outcome::Overloaded,
            ServiceError::Internal(_) => Outcome::Internal,
        }
    }

    /// The outcome of a request that ended with `result`; `miss` tells an `Ok` that found
    /// nothing.
    pub fn of<R>(result: &Result<R, ServiceError>, miss: impl FnOnce(&R) -> bool) -> Self {
        match result {
            Ok(value) if miss(value) => Outcome::Miss,
            Ok(_) => Outcome::Ok,
            Err(err) => Outcome::of_error(err),
        }
    }
}

/// Where a front door reports the requests it served.
pub trait RequestObserver {
    /// `count` requests of `rpc` ended with `outcome`, each `elapsed` after it arrived.
    fn observe(&self, rpc: Rpc, outcome: Outcome, elapsed: Duration, count: u64);
}

/// A handler observes what its front doors served ([`CacheHandler::observe`]).
impl<H: CacheHandler + ?Sized> RequestObserver for H {
    fn observe(&self, rpc: Rpc, outcome: Outcome, elapsed: Duration, count: u64) {
        CacheHandler::observe(self, rpc, outcome, elapsed, count);
    }
}

/// Times one request from its arrival; reports it when dropped, as [`Outcome::Cancelled`] unless
/// [`RequestTimer::finish`] said how it ended (a request whose future is dropped was cancelled).
pub struct RequestTimer<'a, O: RequestObserver + ?Sized> {
    observer: &'a O,
    rpc: Rpc,
    arrived: Instant,
    /// Whether the request was reported (by [`RequestTimer::finish`]).
    reported: bool,
}

impl<O: RequestObserver + ?Sized> std::fmt::Debug for RequestTimer<'_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTimer")
            .field("rpc", &self.rpc)
            .field("arrived", &self.arrived)
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

impl<'a, O: RequestObserver + ?Sized> RequestTimer<'a, O> {
    /// Times a request of `rpc` that arrived at `arrived`.
    pub fn start(observer: &'a O, rpc: Rpc, arrived: Instant) -> Self {
        RequestTimer {
            observer,
            rpc,
            arrived,
            reported: false,
        }
    }

    /// Reports the request as ended with `outcome`; returns how long after its arrival (one
    /// clock read, for the caller to reuse, e.g. in the response).
    pub fn finish(mut self, outcome: Outcome) -> Duration {
        self.reported = true;
        let elapsed = self.arrived.elapsed();
        self.observer.observe(self.rpc, outcome, elapsed, 1);
        elapsed
    }
}

impl<O: RequestObserver + ?Sized> Drop for RequestTimer<'_, O> {
    fn drop(&mut self) {
        if !self.reported {
            let elapsed = self.arrived.elapsed();
            self.observer
                .observe(self.rpc, Outcome::Cancelled, elapsed, 1);
        }
    }
}

/// Counts the requests of one batch (the commands one read brought in), to report them all
/// with one clock read when the batch's answers are written ([`BatchTimer::report`]).
#[derive(Debug, Default)]
pub struct BatchTimer {
    /// Requests ended, by RPC then outcome (in their `ALL` orders).
    ended: [[u32; Outcome::ALL.len()]; Rpc::ALL.len()],
    /// Whether any request ended since the last report.
    any: bool,
    /// The request being served, if one is (reported as cancelled if the batch is abandoned).
    serving: Option<Rpc>,
}

impl BatchTimer {
    /// A request of `rpc` is being served.
    pub fn begin(&mut self, rpc: Rpc) {
        self.serving = Some(rpc);
    }

    /// A request of `rpc` ended with `outcome`.
    pub fn end(&mut self, rpc: Rpc, outcome: Outcome) {
        self.serving = None;
        let cell = &mut self.ended[rpc as usize][outcome as usize];
        *cell = cell.saturating_add(1);
        self.any = true;
    }

    /// Reports every request ended since the last report as having taken `arrived.elapsed()`
    /// (one clock read), and forgets them.
    pub fn report<O: RequestObserver + ?Sized>(&mut self, observer: &O, arrived: Instant) {
        if !self.any {
            return;
        }
        let elapsed = arrived.elapsed();
        for (rpc, outcomes) in Rpc::ALL.iter().zip(self.ended.iter_mut()) {
            for (outcome, count) in Outcome::ALL.iter().zip(outcomes.iter_mut()) {
                if *count > 0 {
                    observer.observe(*rpc, *outcome, elapsed, u64::from(*count));
                    *count = 0;
                }
            }
        }
        self.any = false;
    }

    /// The batch is abandoned (its connection went away): the request being served, if any,
    /// was cancelled; then everything is reported.
    pub fn abandon<O: RequestObserver + ?Sized>(&mut self, observer: &O, arrived: Instant) {
        if let Some(rpc) = self.serving.take() {
            self.end(rpc, Outcome::Cancelled);
        }
        self.report(observer, arrived);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps every report.
    #[derive(Default)]
    struct Reports(Mutex<Vec<(Rpc, Outcome, u64)>>);

    impl RequestObserver for Reports {
        fn observe(&self, rpc: Rpc, outcome: Outcome, _elapsed: Duration, count: u64) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((rpc, outcome, count));
        }
    }

    impl Reports {
        fn taken(&self) -> Vec<(Rpc, Outcome, u64)> {
            std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    #[test]
    fn labels_are_distinct_and_indices_match_the_orders() {
        for (i, rpc) in Rpc::ALL.iter().enumerate() {
            assert_eq!(*rpc as usize, i);
        }
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        let mut labels: Vec<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Outcome::ALL.len());
        // The `rpc` label values are published metric labels (README, Metrics).
        let rpcs: Vec<_> = Rpc::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(rpcs, ["get", "set", "delete", "invalidate", "stats"]);
        let result: Result<Option<u8>, ServiceError> = Ok(None);
        assert_eq!(Outcome::of(&result, Option::is_none), Outcome::Miss);
        let found: Result<Option<u8>, ServiceError> = Ok(Some(1));
        assert_eq!(Outcome::of(&found, Option::is_none), Outcome::Ok);
        let failed: Result<(), ServiceError> = Err(ServiceError::NotOwner("k".into()));
        assert_eq!(Outcome::of(&failed, |_| false), Outcome::NotOwner);
    }

    #[tokio::test]
    async fn a_timer_reports_its_outcome_or_cancelled_when_dropped_unfinished() {
        let reports = Reports::default();
        RequestTimer::start(&reports, Rpc::Get, Instant::now()).finish(Outcome::Miss);
        drop(RequestTimer::start(&reports, Rpc::Set, Instant::now()));
        assert_eq!(
            reports.taken(),
            [
                (Rpc::Get, Outcome::Miss, 1),
                (Rpc::Set, Outcome::Cancelled, 1)
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_reports_each_rpc_and_outcome_once_with_its_count() {
        let reports = Reports::default();
        let mut batch = BatchTimer::default();
        let arrived = Instant::now();
        batch.report(&reports, arrived);
        assert!(reports.taken().is_empty(), "nothing to report");
        for _ in 0..3 {
            batch.begin(Rpc::Set);
            batch.end(Rpc::Set, Outcome::Ok);
        }
        batch.begin(Rpc::Get);
        batch.end(Rpc::Get, Outcome::Miss);
        batch.report(&reports, arrived);
        assert_eq!(
            reports.taken(),
            [(Rpc::Get, Outcome::Miss, 1), (Rpc::Set, Outcome::Ok, 3)]
        );
        batch.report(&reports, arrived);
        assert!(
            reports.taken().is_empty(),
            "a report forgets what it reported"
        );
        // Abandoned while a delete was being served: it was cancelled.
        batch.begin(Rpc::Get);
        batch.end(Rpc::Get, Outcome::Ok);
        batch.begin(Rpc::Delete);
        batch.abandon(&reports, arrived);
        assert_eq!(
            reports.taken(),
            [
                (Rpc::Get, Outcome::Ok, 1),
                (Rpc::Delete, Outcome::Cancelled, 1)
            ]
        );
    }
}
