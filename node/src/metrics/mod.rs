//! Prometheus metrics of a node: [`Metrics`] encodes them in the Prometheus text format, and
//! [`serve`] answers `GET /metrics` with them (`lcache-node --metrics-listen HOST:PORT`).
//!
//! What is exported (every name is `lcache_…`; counters end in `_total`, durations are seconds):
//! - every counter of [`GroupCounters`](lcache_core::group::GroupCounters) as
//!   `lcache_<counter>_total{group}`, with the counter's own doc as help (walked from
//!   `GroupCounters::NAMES`/`DOCS`, so a new counter is exported without a change here);
//! - per group and store tier (`tier` = `main`, `hot`, `misses`): `lcache_store_bytes`,
//!   `lcache_store_entries`, `lcache_store_budget_bytes`, `lcache_store_evictions_total`,
//!   `lcache_store_expirations_total`;
//! - histograms: `lcache_request_duration_seconds{rpc,outcome}` (requests served over gRPC or
//!   RESP), `lcache_peer_call_duration_seconds{peer,rpc}` (calls to peers),
//!   `lcache_load_duration_seconds{group}` (loader runs);
//! - `lcache_members`, `lcache_ring_changes_total`, `lcache_requests_in_flight`,
//!   `lcache_loads_running`, `lcache_discovery_connected`, `lcache_discovery_registered`.
//!
//! Recording is cheap and lock-free (see `record`); the counters and store states are read
//! only when scraped.

mod export;
mod http;
pub(crate) mod record;

use std::fmt;
use std::sync::Arc;

use prometheus_client::registry::Registry;

pub(crate) use export::{NodeCollector, SessionProbe};
pub use http::serve;

/// The Content-Type of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A node's metrics, read when encoded. Cheap to clone; obtained from
/// [`Node::metrics`](crate::Node::metrics). Holding one keeps the node's stores alive (like a
/// [`NodeProbe`](crate::NodeProbe)), not the node serving.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(collector: impl prometheus_client::collector::Collector) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        Metrics {
            registry: Arc::new(registry),
        }
    }

    /// Every metric now, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            // Writing into a String cannot fail; an encoder refusing a metric would be a bug.
            tracing::error!(error = %err, "encoding the metrics failed");
        }
        text
    }
}
