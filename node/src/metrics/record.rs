//! What the request path records for the metrics: one latency histogram per RPC and outcome
//! (the front doors time requests and report them, see `lcache_transport::observe`), one per
//! group's loader, and the count of ring changes. Recording costs two plain stores on the
//! thread's stripe of a histogram; every histogram exists from the start, so no lock is taken.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use lcache_core::latency::LatencyHistogram;
use lcache_transport::observe::{Outcome, Rpc};
use tokio::time::Instant;

use crate::loader::{LoadError, Loaded, Loader};

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

    /// The latency histogram of `rpc` requests that ended with `outcome`.
    pub(crate) fn requests(&self, rpc: Rpc, outcome: Outcome) -> &LatencyHistogram {
        &self.requests[rpc as usize][outcome as usize]
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
