//! Resource safety on real clusters (issue "Resource safety"): a failing loader never wedges a
//! key, loads and waiters are bounded, a node loads in its owner's place only when the owner is
//! unreachable, every caller keeps its own deadline, and absent keys do not flood the source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, with_loader, Cluster, GatedLoader};
use lcache_node::{loader_fn, LoadError, Loaded, DEFAULT_GROUP as G};
use lcache_transport::{CacheClient, ClientConfig, ClientError, Code};

/// A loader that panics on its first call for each key, then answers `ok:<key>`; counts calls.
fn panics_once(calls: Arc<AtomicUsize>) -> impl lcache_node::Loader {
    loader_fn(move |key: Bytes| {
        let calls = calls.clone();
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the source's client library panicked");
            }
            Ok(Some(Loaded::new(format!(
                "ok:{}",
                String::from_utf8_lossy(&key)
            ))))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_fails_its_callers_and_the_next_get_loads_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cluster = Cluster::start(&["solo"], |c| with_loader(c, panics_once(calls.clone()))).await;
    let client = &cluster.nodes[0].client;
    let err = client.get(G, "k").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Failed { code: Code::Internal, message, .. } if message.contains("loader panicked")),
        "{err:?}"
    );
    // The flight was cleared: the next get starts a fresh load instead of waiting for a dead one.
    let got = client.get(G, "k").await.unwrap().unwrap();
    assert_eq!(got.value, "ok:k".as_bytes());
    let c = cluster.stats().await[0].counters;
    assert_eq!((c.loads, c.load_errors, c.loader_panics), (2, 1, 1));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_capped_per_node_even_after_their_callers_gave_up() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["solo"], |c| {
        let mut c = with_loader(c, loader.clone());
        c.max_loads = 2;
        c
    })
    .await;
    let impatient = CacheClient::connect(
        &cluster.nodes[0].member.addr,
        ClientConfig {
            request_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let mut refused = 0;
    for i in 0..20 {
        match impatient.get(G, format!("k{i}")).await.unwrap_err() {
            ClientError::DeadlineExceeded { .. } => {}
            ClientError::ResourceExhausted { .. } => refused += 1,
            other => panic!("{other:?}"),
        }
        assert!(cluster.nodes[0].probe.loads_running() <= 2);
    }
    assert_eq!(loader.calls(), 2, "only two loads ever started");
    assert_eq!(refused, 18, "every get past the cap was refused");
    // The slots free up when the loads really end, not when their callers leave.
    gate.send(true).unwrap();
    eventually(Duration::from_secs(5), || async {
        cluster.nodes[0].probe.loads_running() == 0
    })
    .await;
    let got = cluster.nodes[0].client.get(G, "later").await.unwrap();
    assert_eq!(got.unwrap().value, "loaded:later".as_bytes());
    assert_eq!(cluster.stats().await[0].counters.overloaded, 18);
    cluster.shutdown().await;
}

/// A loader that fails for every key, counting calls.
fn failing(calls: Arc<AtomicUsize>) -> impl lcache_node::Loader {
    loader_fn(move |_key: Bytes| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Option<Loaded>, _>(LoadError("the source is down".into()))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_loads_only_when_the_owner_is_unreachable() {
    let calls: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let node = AtomicUsize::new(0);
    let mut cluster = Cluster::start(&["a", "b"], |c| {
        let i = node.fetch_add(1, Ordering::SeqCst);
        with_loader(c, failing(calls[i].clone()))
    })
    .await;
    let key = cluster.key_owned_by(1, "struggling");
    // The owner answered (its loader failed): the error stands, the non-owner loads nothing.
    let err = cluster.nodes[0]
        .client
        .get(G, key.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Unavailable { reason, .. } if reason.contains("the source is down")),
        "{err:?}"
    );
    assert_eq!(calls[1].load(Ordering::SeqCst), 1, "the owner loaded once");
    assert_eq!(calls[0].load(Ordering::SeqCst), 0, "the non-owner did not");
    // The owner is gone: now the non-owner serves the key itself.
    cluster.stop(1).await;
    let err = cluster.nodes[0]
        .client
        .get(G, key.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Unavailable { reason, .. } if reason.contains("the source is down")),
        "{err:?}"
    );
    assert_eq!(
        calls[0].load(Ordering::SeqCst),
        1,
        "the non-owner fell back"
    );
    let c = cluster.nodes[0].probe.stats().groups[0].counters;
    assert_eq!((c.fallbacks, c.fetch_errors), (1, 2));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_keeps_its_own_deadline() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["a", "b"], |c| with_loader(c, loader.clone())).await;
    let key = cluster.key_owned_by(1, "slow");
    let client = |timeout: Duration| {
        CacheClient::connect(
            &cluster.nodes[0].member.addr,
            ClientConfig {
                request_timeout: timeout,
                ..ClientConfig::default()
            },
        )
    };
    let (hurried, patient) = (
        client(Duration::from_millis(300)).await.unwrap(),
        client(Duration::from_secs(10)).await.unwrap(),
    );
    // The hurried caller starts the fetch, then the patient one joins it.
    let first = {
        let key = key.clone();
        tokio::spawn(async move { hurried.get(G, key).await })
    };
    eventually(Duration::from_secs(5), || async { loader.calls() == 1 }).await;
    let second = {
        let key = key.clone();
        tokio::spawn(async move { patient.get(G, key).await })
    };
    let err = first.await.unwrap().unwrap_err();
    assert!(
        matches!(err, ClientError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    // The first caller's deadline passed; the fetch and the owner's load go on for the second.
    gate.send(true).unwrap();
    let got = second.await.unwrap().unwrap().unwrap();
    assert_eq!(got.value, format!("loaded:{key}").as_bytes());
    assert_eq!(loader.calls(), 1, "one load, on the owner");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_gets_for_an_absent_key_reaches_the_source_once() {
    let (loader, _gate) = GatedLoader::new(true);
    let cluster = Cluster::start(&["solo"], |c| with_loader(c, loader.clone())).await;
    let client = &cluster.nodes[0].client;
    for _ in 0..50 {
        assert!(client.get(G, "absent-user").await.unwrap().is_none());
    }
    assert_eq!(
        loader.calls(),
        1,
        "the miss was remembered (default miss-ttl 1s)"
    );
    let c = cluster.stats().await[0].counters;
    assert_eq!((c.load_misses, c.miss_hits), (1, 49));
    // A set of the key forgets the miss at once.
    client
        .set(G, "absent-user", "now here", None)
        .await
        .unwrap();
    let got = client.get(G, "absent-user").await.unwrap().unwrap();
    assert_eq!(got.value, "now here".as_bytes());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_past_the_per_key_bound_are_refused_and_counted_once() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["solo"], |c| {
        let mut c = with_loader(c, loader.clone());
        c.max_waiters_per_key = 2;
        c
    })
    .await;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let client = cluster.nodes[0].client.clone();
        waiting.push(tokio::spawn(async move { client.get(G, "hot").await }));
    }
    eventually(Duration::from_secs(5), || async {
        let c = cluster.nodes[0].probe.stats().groups[0].counters;
        c.coalesced == 1
    })
    .await;
    let err = cluster.nodes[0].client.get(G, "hot").await.unwrap_err();
    assert!(
        matches!(err, ClientError::ResourceExhausted { .. }),
        "{err:?}"
    );
    gate.send(true).unwrap();
    for w in waiting {
        assert!(w.await.unwrap().unwrap().is_some());
    }
    let c = cluster.stats().await[0].counters;
    assert_eq!(c.overloaded, 1, "one refusal, counted once");
    cluster.shutdown().await;
}
