//! Three real nodes on loopback with real tonic: routing, writes, coalescing and fallback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{echo_loader, eventually, with_loader, Cluster, GatedLoader};
use lcache_node::DEFAULT_GROUP as G;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_non_owner_is_fetched_from_the_owner_and_loaded_there() {
    let (loader, _gate) = GatedLoader::new(true);
    let cluster = Cluster::start(&["a", "b", "c"], |c| with_loader(c, loader.clone())).await;
    let owner = 1;
    let key = cluster.key_owned_by(owner, "remote");
    let asker = (owner + 1) % 3;

    let got = cluster.nodes[asker]
        .client
        .get(G, key.clone())
        .await
        .unwrap();
    assert_eq!(got.unwrap().value, format!("loaded:{key}").as_bytes());
    assert_eq!(loader.calls(), 1);

    let stats = cluster.stats().await;
    assert_eq!(stats[owner].counters.loads, 1, "the owner ran the loader");
    assert_eq!(stats[owner].entries(), 1, "the owner keeps the value");
    assert_eq!(stats[owner].counters.forwarded_in, 1);
    assert_eq!(
        stats[asker].counters.fetches, 1,
        "the asker fetched from the owner"
    );
    assert_eq!(stats[asker].counters.loads, 0);

    // A second get on the same non-owner is served from its hot copy.
    let again = cluster.nodes[asker]
        .client
        .get(G, key.clone())
        .await
        .unwrap();
    assert_eq!(again.unwrap().value, format!("loaded:{key}").as_bytes());
    assert_eq!(loader.calls(), 1);
    assert_eq!(cluster.stats().await[asker].counters.hot_hits, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_through_a_non_owner_lands_on_the_owner() {
    let cluster = Cluster::start(&["a", "b", "c"], |c| c).await;
    let owner = 2;
    let key = cluster.key_owned_by(owner, "written");
    let writer = 0;

    cluster.nodes[writer]
        .client
        .set(G, key.clone(), "v1", None)
        .await
        .unwrap();
    let stats = cluster.stats().await;
    assert_eq!(stats[owner].entries(), 1, "stored on the owner");
    assert_eq!(stats[writer].entries(), 0, "not stored on the writer");
    assert_eq!(stats[1].entries(), 0);
    for node in &cluster.nodes {
        let got = node.client.get(G, key.clone()).await.unwrap();
        assert_eq!(
            got.unwrap().value,
            "v1".as_bytes(),
            "read on {}",
            node.member.id
        );
    }
    // Overwrite through the owner itself; the writer dropped its own copy on its set, and the
    // reader that asks next goes to the owner.
    cluster.nodes[owner]
        .client
        .set(G, key.clone(), "v2", None)
        .await
        .unwrap();
    let on_owner = cluster.nodes[owner]
        .client
        .get(G, key.clone())
        .await
        .unwrap();
    assert_eq!(on_owner.unwrap().value, "v2".as_bytes());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_with_ttl_reports_its_remaining_lifetime_and_delete_removes_it() {
    let cluster = Cluster::start(&["a", "b", "c"], |c| c).await;
    let owner = 0;
    let key = cluster.key_owned_by(owner, "doomed");
    cluster.nodes[1]
        .client
        .set(G, key.clone(), "here", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let fetched = cluster.nodes[2]
        .client
        .get(G, key.clone())
        .await
        .unwrap()
        .unwrap();
    let ttl = fetched
        .ttl
        .expect("a value set with a TTL reports its remaining lifetime");
    assert!(
        ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50),
        "{ttl:?}"
    );

    assert!(cluster.nodes[1]
        .client
        .delete(G, key.clone())
        .await
        .unwrap());
    assert!(!cluster.nodes[1]
        .client
        .delete(G, key.clone())
        .await
        .unwrap());
    // The owner and the deleting node no longer have it.
    assert_eq!(
        cluster.nodes[owner]
            .client
            .get(G, key.clone())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cluster.nodes[1].client.get(G, key.clone()).await.unwrap(),
        None
    );
    assert_eq!(cluster.stats().await[owner].entries(), 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_gets_of_a_cold_key_load_it_once_in_the_cluster() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["a", "b", "c"], |c| with_loader(c, loader.clone())).await;
    let key = "cold-key".to_string();
    let mut gets = Vec::new();
    for i in 0..100 {
        let client = cluster.nodes[i % 3].client.clone();
        let key = key.clone();
        gets.push(tokio::spawn(async move { client.get(G, key).await }));
    }
    // Every request is parked on a flight once the owner's one load waits for the gate:
    // 100 client requests + 2 forwarded fetches, minus one leader per flight (3 flights).
    eventually(Duration::from_secs(10), || async {
        let dedups: u64 = cluster
            .stats()
            .await
            .iter()
            .map(|s| s.counters.coalesced)
            .sum();
        dedups == 99
    })
    .await;
    assert_eq!(loader.calls(), 1);
    gate.send(true).unwrap();
    for get in gets {
        let value = get.await.unwrap().unwrap().unwrap().value;
        assert_eq!(value, format!("loaded:{key}").as_bytes());
    }
    assert_eq!(loader.calls(), 1, "one load for the whole cluster");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_owner_leaves_the_others_answering_by_local_fallback() {
    let mut cluster = Cluster::start(&["a", "b", "c"], |c| with_loader(c, echo_loader())).await;
    let owner = 1;
    let key = cluster.key_owned_by(owner, "orphan");
    let report = cluster.stop(owner).await;
    assert!(report.drained && report.deregistered);

    for asker in [0, 2] {
        let got = cluster.nodes[asker]
            .client
            .get(G, key.clone())
            .await
            .unwrap();
        assert_eq!(got.unwrap().value, format!("value-of:{key}").as_bytes());
    }
    let stats = cluster.stats().await; // nodes 0 and 2
    for s in &stats {
        assert_eq!(s.counters.fallbacks, 1, "{s:?}");
        assert_eq!(s.counters.fetch_errors, 1, "{s:?}");
        assert_eq!(s.counters.loads, 1, "{s:?}");
    }
    // Writes to the dead owner fail clearly instead of pretending to succeed.
    let err = cluster.nodes[0]
        .client
        .set(G, key.clone(), "lost", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    cluster.shutdown().await;
}
