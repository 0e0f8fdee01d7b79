//! What the request path records for the metrics: one latency histogram per RPC and outcome,
//! one per group's loader, and the count of ring changes. Recording costs a clock read and a few
//! relaxed atomic additions; every histogram exists from the start, so no lock is taken.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use lcache_core::latency::LatencyHistogram;
use lcache_transport::ServiceError;
use tokio::time::Instant;

use crate::loader::{LoadError, Loaded, Loader};

/// The RPCs of the cache API, as the `rpc` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    Get,
    Set,
    Delete,
    Invalidate,
    Stats,
}

impl Rpc {
    pub(crate) const ALL: [Rpc; 5] = [Rpc::Get, Rpc::Set, Rpc::Delete, Rpc::Invalidate, Rpc::Stats];

    pub(crate) fn label(self) -> &'static str {
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
pub(crate) enum Outcome {
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
    pub(crate) const ALL: [Outcome; 10] = [
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

    pub(crate) fn label(self) -> &'static str {
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
    pub(crate) fn of_error(err: &ServiceError) -> Outcome {
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
    pub(crate) fn of<R>(result: &Result<R, ServiceError>, miss: impl FnOnce(&R) -> bool) -> Self {
        match result {
            Ok(value) if miss(value) => Outcome::Miss,
            Ok(_) => Outcome::Ok,
            Err(err) => Outcome::of_error(err),
        }
    }
}

/// Everything a node records for its metrics while it serves.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    /// Latency of the requests served, by [`Rpc`] then [`Outcome`] (in their `ALL` orders).
    requests: [[LatencyHistogram; Outcome::ALL.len()]; Rpc::ALL.len()],
    /// Latency of each group's loader runs, by group name.
    pub(crate) loads: BTreeMap<String, Arc<LatencyHistogram>>,
    /// Membership changes applied to the ring (one per member added, changed or removed).
    pub(crate) ring_changes: AtomicU64,
}

impl NodeMetrics {
    /// Metrics of a node hosting `groups`.
    pub(crate) fn new<'a>(groups: impl IntoIterator<Item = &'a str>) -> Self {
        NodeMetrics {
            requests: Default::default(),
            loads: groups
                .into_iter()
                .map(|name| (name.to_owned(), Arc::default()))
                .collect(),
            ring_changes: AtomicU64::new(0),
        }
    }

    /// Starts timing a request of `rpc`; it is recorded as [`Outcome::Cancelled`] unless
    /// [`RequestTimer::finish`] says how it ended.
    pub(crate) fn time(&self, rpc: Rpc) -> RequestTimer<'_> {
        self.time_from(rpc, Instant::now())
    }

    /// Times an `rpc` request that arrived at `started` (read by its front door).
    pub(crate) fn time_from(&self, rpc: Rpc, started: Instant) -> RequestTimer<'_> {
        RequestTimer {
            histograms: &self.requests[rpc as usize],
            started,
            outcome: Outcome::Cancelled,
        }
    }

    /// The latency histogram of `rpc` requests that ended with `outcome`.
    pub(crate) fn requests(&self, rpc: Rpc, outcome: Outcome) -> &LatencyHistogram {
        &self.requests[rpc as usize][outcome as usize]
    }
}

/// Times one request; records it when dropped.
pub(crate) struct RequestTimer<'a> {
    histograms: &'a [LatencyHistogram; Outcome::ALL.len()],
    started: Instant,
    outcome: Outcome,
}

impl RequestTimer<'_> {
    /// When the request started: also its arrival for the runtime, so a request reads the
    /// clock once on the way in.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Records the request as ended with `outcome`.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        self.histograms[self.outcome as usize].observe(self.started.elapsed());
    }
}

/// A [`Loader`] whose runs are timed into a histogram (a run cut short by the load timeout, or
/// a panic, is recorded when it is dropped).
pub(crate) struct TimedLoader {
    pub(crate) inner: Arc<dyn Loader>,
    pub(crate) histogram: Arc<LatencyHistogram>,
}

#[async_trait]
impl Loader for TimedLoader {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let _timed = LoadTimer {
            histogram: &self.histogram,
            started: Instant::now(),
        };
        self.inner.load(key).await
    }
}

struct LoadTimer<'a> {
    histogram: &'a LatencyHistogram,
    started: Instant,
}

impl Drop for LoadTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[tokio::test]
    async fn a_timer_records_its_outcome_or_cancelled_when_dropped_unfinished() {
        let metrics = NodeMetrics::new(["g"]);
        metrics.time(Rpc::Get).finish(Outcome::Miss);
        drop(metrics.time(Rpc::Set));
        assert_eq!(metrics.requests(Rpc::Get, Outcome::Miss).count(), 1);
        assert_eq!(metrics.requests(Rpc::Set, Outcome::Cancelled).count(), 1);
        assert_eq!(metrics.requests(Rpc::Get, Outcome::Ok).count(), 0);
        let result: Result<Option<u8>, ServiceError> = Ok(None);
        assert_eq!(Outcome::of(&result, Option::is_none), Outcome::Miss);
        let failed: Result<(), ServiceError> = Err(ServiceError::NotOwner("k".into()));
        assert_eq!(Outcome::of(&failed, |_| false), Outcome::NotOwner);
    }
}
