//! The Prometheus collector of a node: on each scrape it reads the groups' counters and stores,
//! the recorded histograms, the membership and the discovery session, and encodes them with
//! `prometheus-client`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lcache_core::group::{GroupCounters, GroupStats};
use lcache_core::latency::LatencyHistogram;
use lcache_discovery::SessionState;
use lcache_transport::Transport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::runtime::Runtime;
use lcache_transport::observe::{Outcome, Rpc};

/// Reads the discovery's session state at scrape time.
pub(crate) type SessionProbe = Arc<dyn Fn() -> SessionState + Send + Sync>;

/// Encodes a node's metrics on each scrape.
pub(crate) struct NodeCollector<T> {
    pub(crate) runtime: Arc<Runtime<T>>,
    pub(crate) session: SessionProbe,
}

impl<T> fmt::Debug for NodeCollector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector")
            .field("node", &self.runtime.me.id)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Collector for NodeCollector<T> {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = self.runtime.all_stats().groups;
        encode_group_counters(&mut encoder, &stats)?;
        encode_tiers(&mut encoder, &stats)?;
        self.encode_histograms(&mut encoder)?;
        self.encode_node(&mut encoder)
    }
}

impl<T: Transport> NodeCollector<T> {
    fn encode_histograms(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let metrics = &self.runtime.metrics;
        let mut family = encoder.encode_descriptor(
            "lcache_request_duration_seconds",
            "Time to serve a request of the cache API (gRPC or RESP), by RPC and outcome; only \
             pairs seen so far are listed.",
            None,
            MetricType::Histogram,
        )?;
        for rpc in Rpc::ALL {
            for outcome in Outcome::ALL {
                let histogram = metrics.requests(rpc, outcome);
                if histogram.count() > 0 {
                    let labels = [("rpc", rpc.label()), ("outcome", outcome.label())];
                    encode_histogram(&mut family.encode_family(&labels)?, histogram)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "lcache_peer_call_duration_seconds",
            "Time of calls to a peer (fetches from owners, forwarded writes, invalidations), by \
             peer and RPC, failed calls included.",
            None,
            MetricType::Histogram,
        )?;
        let mut failed = Ok(());
        self.runtime
            .transport
            .visit_call_latencies(&mut |peer, rpc, histogram| {
                if failed.is_ok() && histogram.count() > 0 {
                    let labels = [("peer", peer.as_str()), ("rpc", rpc)];
                    failed = family
                        .encode_family(&labels)
                        .and_then(|mut m| encode_histogram(&mut m, histogram));
                }
            });
        failed?;
        let mut family = encoder.encode_descriptor(
            "lcache_load_duration_seconds",
            "Time of loader runs on this node, by group (runs cut short by the load timeout \
             included).",
            None,
            MetricType::Histogram,
        )?;
        for (group, histogram) in &metrics.loads {
            let labels = [("group", group.as_str())];
            encode_histogram(&mut family.encode_family(&labels)?, histogram)?;
        }
        Ok(())
    }

    fn encode_node(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let runtime = &self.runtime;
        let session = (self.session)();
        let gauges: [(&str, &str, i64); 5] = [
            (
                "lcache_members",
                "Members this node routes to (itself included).",
                to_i64(runtime.members().len() as u64),
            ),
            (
                "lcache_requests_in_flight",
                "Requests being served now.",
                to_i64(runtime.admission.in_flight() as u64),
            ),
            (
                "lcache_loads_running",
                "Loader runs in progress on this node now.",
                to_i64(runtime.load_slots.running() as u64),
            ),
            (
                "lcache_discovery_connected",
                "1 while the discovery backend answers (etcd: the membership watch is \
                 established; static peers: always).",
                i64::from(session.connected),
            ),
            (
                "lcache_discovery_registered",
                "1 while this node's registration stands (etcd: its lease is alive; static \
                 peers: always).",
                i64::from(session.registered),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let changes = ConstCounter::new(runtime.metrics.ring_changes.load(Ordering::Relaxed));
        changes.encode(encoder.encode_descriptor(
            "lcache_ring_changes",
            "Membership changes applied to the ring: members added, changed or removed.",
            None,
            changes.metric_type(),
        )?)
    }
}

/// Every counter of [`GroupCounters`], named `lcache_<counter>_total`, labelled by group.
fn encode_group_counters(
    encoder: &mut DescriptorEncoder<'_>,
    groups: &[GroupStats],
) -> Result<(), fmt::Error> {
    for (index, (name, doc)) in GroupCounters::NAMES
        .iter()
        .zip(GroupCounters::DOCS)
        .enumerate()
    {
        let metric = format!("lcache_{name}");
        let mut family =
            encoder.encode_descriptor(&metric, doc.trim(), None, MetricType::Counter)?;
        for group in groups {
            let value = group.counters.values().nth(index).map_or(0, |(_, v)| v);
            let labels = [("group", group.group.as_str())];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Bytes, entries and budget of each store tier, and its evictions and expirations.
fn encode_tiers(
    encoder: &mut DescriptorEncoder<'_>,
    groups: &[GroupStats],
) -> Result<(), fmt::Error> {
    type Read = fn(&lcache_core::group::TierStats) -> u64;
    let gauges: [(&str, &str, Read); 3] = [
        (
            "lcache_store_bytes",
            "Bytes charged for the entries a store tier holds (key, value and per-entry overhead).",
            |t| t.store.bytes,
        ),
        ("lcache_store_entries", "Entries a store tier holds.", |t| {
            t.store.entries
        }),
        (
            "lcache_store_budget_bytes",
            "Byte budget of a store tier.",
            |t| t.budget_bytes,
        ),
    ];
    for (name, help, read) in gauges {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for group in groups {
            for tier in &group.tiers {
                let labels = [("group", group.group.as_str()), ("tier", tier.tier.name())];
                ConstGauge::new(to_i64(read(tier))).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let counters: [(&str, &str, Read); 2] = [
        (
            "lcache_store_evictions",
            "Entries a store tier removed to make room.",
            |t| t.store.evictions,
        ),
        (
            "lcache_store_expirations",
            "Expired entries a store tier removed.",
            |t| t.store.expirations,
        ),
    ];
    for (name, help, read) in counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for group in groups {
            for tier in &group.tiers {
                let labels = [("group", group.group.as_str()), ("tier", tier.tier.name())];
                ConstCounter::new(read(tier)).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn encode_histogram(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    histogram: &LatencyHistogram,
) -> Result<(), fmt::Error> {
    let snapshot = histogram.snapshot();
    encoder.encode_histogram::<NoLabelSet>(
        snapshot.sum_seconds,
        snapshot.count,
        &snapshot.buckets,
        None,
    )
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
