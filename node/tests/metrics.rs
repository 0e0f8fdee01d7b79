//! Prometheus metrics: every counter is exported under its declared name, and the counters,
//! store gauges and latency histograms move as requests are made, in process and through the
//! `lcache-node --metrics-listen` endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::origin::Origin;
use common::process::NodeProcess;
use common::{echo_loader, http_get, with_loader, Cluster, Scrape};
use lcache_core::group::GroupCounters;
use lcache_node::{GroupConfig, DEFAULT_GROUP};
use lcache_transport::{CacheClient, ClientConfig};

const G: &str = DEFAULT_GROUP;
const GROUP: (&str, &str) = ("group", DEFAULT_GROUP);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_gauges_and_histograms_move_with_requests() {
    let cluster = Cluster::start(&["a", "b"], |c| with_loader(c, echo_loader())).await;
    let a = &cluster.nodes[0];
    let before = Scrape::parse(&a.metrics.encode());
    for name in GroupCounters::NAMES {
        let series = format!("lcache_{name}_total");
        assert_eq!(before.get(&series, &[GROUP]), Some(0.0), "{series}");
    }
    assert_eq!(before.get("lcache_members", &[]), Some(2.0));
    assert_eq!(before.get("lcache_discovery_connected", &[]), Some(1.0));
    assert_eq!(before.get("lcache_discovery_registered", &[]), Some(1.0));
    assert!(
        before.value("lcache_ring_changes_total", &[]) >= 1.0,
        "b joined a's ring"
    );
    let budget = GroupConfig::DEFAULT_BUDGET_BYTES as f64;
    let main = [GROUP, ("tier", "main")];
    let hot = [GROUP, ("tier", "hot")];
    assert_eq!(before.get("lcache_store_budget_bytes", &main), Some(budget));
    assert_eq!(before.get("lcache_store_entries", &main), Some(0.0));

    let local = cluster.key_owned_by(0, "local");
    let remote = cluster.key_owned_by(1, "remote");
    let written_local = cluster.key_owned_by(0, "written");
    let written_remote = cluster.key_owned_by(1, "written");
    a.client.get(G, local.clone()).await.unwrap().unwrap(); // loaded on a
    a.client.get(G, local.clone()).await.unwrap().unwrap(); // a hit
    a.client.get(G, remote.clone()).await.unwrap().unwrap(); // fetched from b
    a.client.set(G, written_local, "v", None).await.unwrap(); // applied, b invalidated
    a.client.set(G, written_remote, "v", None).await.unwrap(); // forwarded to b
    assert!(a.client.get("no-such-group", "k").await.is_err());

    let after = Scrape::parse(&a.metrics.encode());
    let moved = |name: &str| {
        let series = format!("lcache_{name}_total");
        after.value(&series, &[GROUP]) - before.value(&series, &[GROUP])
    };
    assert_eq!(moved("loads"), 1.0);
    assert_eq!(moved("hits"), 1.0);
    assert_eq!(moved("fetches"), 1.0);
    assert_eq!(moved("writes"), 1.0);
    assert_eq!(moved("forwarded_writes"), 1.0);
    assert_eq!(moved("invalidations_sent"), 1.0);

    let requests = |rpc: &str, outcome: &str| {
        let labels = [("rpc", rpc), ("outcome", outcome)];
        after.value("lcache_request_duration_seconds_count", &labels)
    };
    assert_eq!(requests("get", "ok"), 3.0);
    assert_eq!(requests("set", "ok"), 2.0);
    assert_eq!(requests("get", "invalid"), 1.0);
    let inf = [("rpc", "get"), ("outcome", "ok"), ("le", "+Inf")];
    assert_eq!(
        after.get("lcache_request_duration_seconds_bucket", &inf),
        Some(3.0)
    );
    assert!(after.value("lcache_request_duration_seconds_sum", &inf[..2]) > 0.0);

    let peer = |rpc: &str| {
        let labels = [("peer", "b"), ("rpc", rpc)];
        after.value("lcache_peer_call_duration_seconds_count", &labels)
    };
    assert_eq!(peer("get"), 1.0);
    assert_eq!(peer("set"), 1.0);
    assert_eq!(peer("invalidate"), 1.0);
    assert_eq!(
        after.get("lcache_load_duration_seconds_count", &[GROUP]),
        Some(1.0)
    );

    // Main store: the loaded key and the written one; hot tier: the copy fetched from b.
    assert_eq!(after.get("lcache_store_entries", &main), Some(2.0));
    assert!(after.value("lcache_store_bytes", &main) > 0.0);
    assert_eq!(after.get("lcache_store_entries", &hot), Some(1.0));
    assert_eq!(after.get("lcache_requests_in_flight", &[]), Some(0.0));

    // The node b served the forwarded write and the invalidation: its own metrics say so.
    let b = Scrape::parse(&cluster.nodes[1].metrics.encode());
    let b_requests = |rpc: &str| {
        let labels = [("rpc", rpc), ("outcome", "ok")];
        b.value("lcache_request_duration_seconds_count", &labels)
    };
    assert_eq!(b_requests("invalidate"), 1.0);
    assert_eq!(b_requests("set"), 1.0);
    assert_eq!(b_requests("get"), 1.0);
    assert_eq!(b.value("lcache_forwarded_in_total", &[GROUP]), 2.0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binary_serves_metrics_over_http() {
    let origin = Origin::start(32).await;
    let spec = format!("default:origin={}", origin.template());
    let node = NodeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--group",
        &spec,
    ]);
    let metrics = node.metrics_addr();
    let (status, content_type, body) = http_get(&metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let before = Scrape::parse(&body);
    assert_eq!(before.get("lcache_loads_total", &[GROUP]), Some(0.0));

    let client = CacheClient::connect(&node.addr, ClientConfig::default())
        .await
        .unwrap();
    for _ in 0..3 {
        client.get(G, "item-1").await.unwrap().unwrap();
    }
    assert!(client.get(G, "absent-1").await.unwrap().is_none());

    let (_, _, body) = http_get(&metrics, "/metrics").await;
    let after = Scrape::parse(&body);
    assert_eq!(after.get("lcache_loads_total", &[GROUP]), Some(2.0));
    assert_eq!(after.get("lcache_load_misses_total", &[GROUP]), Some(1.0));
    assert_eq!(after.get("lcache_hits_total", &[GROUP]), Some(2.0));
    let count = |outcome: &str| {
        let labels = [("rpc", "get"), ("outcome", outcome)];
        after.value("lcache_request_duration_seconds_count", &labels)
    };
    assert_eq!(count("ok"), 3.0);
    assert_eq!(count("miss"), 1.0);
    assert_eq!(
        after.get("lcache_load_duration_seconds_count", &[GROUP]),
        Some(2.0)
    );
    assert_eq!(origin.total_hits(), 2);

    let (status, _, _) = http_get(&metrics, "/").await;
    assert_eq!(status, 404);
}
