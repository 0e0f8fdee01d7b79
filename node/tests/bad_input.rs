//! Each bad input gets its documented error, and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{eventually, with_loader, Cluster, GatedLoader};
use lcache_discovery::StaticDiscovery;
use lcache_node::{GroupConfig, Node, NodeConfig, StartError, DEFAULT_GROUP as G};
use lcache_transport::{ClientConfig, ClientError, GrpcTransport};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_values_and_groups_are_validated_with_clear_errors() {
    let cluster = Cluster::start(&["solo"], |c| c).await;
    let client = &cluster.nodes[0].client;
    client.set(G, "kept", "original", None).await.unwrap();

    let empty = client.get(G, "").await.unwrap_err();
    assert!(
        matches!(empty, ClientError::InvalidArgument { .. }),
        "{empty}"
    );
    let empty_set = client.set(G, "", "v", None).await.unwrap_err();
    assert!(
        matches!(empty_set, ClientError::InvalidArgument { .. }),
        "{empty_set}"
    );
    let empty_del = client.delete(G, "").await.unwrap_err();
    assert!(
        matches!(empty_del, ClientError::InvalidArgument { .. }),
        "{empty_del}"
    );

    let long_key = "k".repeat(251);
    let err = client.get(G, long_key.clone()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidArgument { message, .. } if message.contains("250")),
        "{err}"
    );
    assert!(client.get(G, "k".repeat(250)).await.unwrap().is_none());

    let too_big = vec![b'x'; (1 << 20) + 1];
    let err = client.set(G, "kept", too_big, None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidArgument { message, .. } if message.contains("value")),
        "{err}"
    );
    let huge = vec![b'x'; 8 << 20];
    let err = client.set(G, "kept", huge, None).await.unwrap_err();
    assert!(matches!(err, ClientError::MessageTooLarge { .. }), "{err}");

    let err = client
        .set(G, "kept", "v", Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument { .. }), "{err}");

    let err = client.get("no-such-group", "k").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownGroup { group, .. } if group == "no-such-group"),
        "{err}"
    );
    let err = client.stats(Some("no-such-group")).await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownGroup { .. }), "{err}");

    // Nothing was lost on the way.
    let kept = client.get(G, "kept").await.unwrap().unwrap();
    assert_eq!(kept.value, "original".as_bytes());
    let stats = cluster.stats().await;
    assert_eq!(
        stats[0].counters.invalid, 2,
        "the long key and the big value, each counted once: {:?}",
        stats[0]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_cap_are_refused_not_queued() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["solo"], |c| {
        let mut c = with_loader(c, loader.clone());
        c.max_in_flight = 1;
        c
    })
    .await;
    let client = cluster.nodes[0].client.clone();
    let parked = {
        let client = client.clone();
        tokio::spawn(async move { client.get(G, "slow").await })
    };
    eventually(Duration::from_secs(10), || async { loader.calls() == 1 }).await;
    let err = client.get(G, "other").await.unwrap_err();
    assert!(
        matches!(err, ClientError::ResourceExhausted { .. }),
        "{err}"
    );
    gate.send(true).unwrap();
    let value = parked.await.unwrap().unwrap().unwrap().value;
    assert_eq!(value, "loaded:slow".as_bytes());
    // Capacity is back once the first request finished.
    assert_eq!(
        client.get(G, "other").await.unwrap().unwrap().value,
        "loaded:other".as_bytes()
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn bad_group_settings_stop_the_node_from_starting() {
    let start = |groups: Vec<GroupConfig>| async move {
        let config = NodeConfig::new("n", "127.0.0.1:1").with_groups(groups);
        Node::start(
            config,
            GrpcTransport::new(ClientConfig::default()),
            StaticDiscovery::default(),
        )
        .await
    };
    let err = start(vec![GroupConfig::new("twice"), GroupConfig::new("twice")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::DuplicateGroup(ref g) if g == "twice"),
        "{err}"
    );
    let err = start(vec![GroupConfig::new("bad name!")])
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::InvalidGroup { .. }), "{err}");
    let err = start(vec![GroupConfig::new("empty").with_budget(0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::InvalidGroup { .. }), "{err}");
}
