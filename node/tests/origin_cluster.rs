//! The HTTP origin loader in a cluster: three nodes load each key from the origin once, on its
//! owner, while many clients read every key through every node at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::origin::Origin;
use common::Cluster;
use lcache_node::spec::parse_group;
use lcache_node::DEFAULT_GROUP;

const KEYS: usize = 24;
const CLIENTS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_load_each_key_once_on_its_owner() {
    let origin = Origin::start(64).await;
    let spec = format!("{DEFAULT_GROUP}:origin={}", origin.template());
    let cluster = Cluster::start(&["a", "b", "c"], |config| {
        config.with_groups(vec![parse_group(&spec).unwrap()])
    })
    .await;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("item-{i}")).collect();

    let mut readers = Vec::new();
    for c in 0..CLIENTS {
        let client = cluster.nodes[c % cluster.nodes.len()].client.clone();
        let mut order = keys.clone();
        order.rotate_left(c * 5 % KEYS);
        readers.push(tokio::spawn(async move {
            for key in order {
                let fetched = client.get(DEFAULT_GROUP, key.clone()).await.unwrap();
                let value = fetched.expect("the origin has every item-* key").value;
                assert!(value.starts_with(format!("{key}=").as_bytes()), "{key}");
            }
            assert!(client
                .get(DEFAULT_GROUP, format!("absent-{c}"))
                .await
                .unwrap()
                .is_none());
        }));
    }
    for reader in readers {
        reader.await.unwrap();
    }

    for key in &keys {
        assert_eq!(origin.hits_of(key), 1, "{key} loaded more than once");
    }
    // Each node loaded exactly the keys it owns, and never had to load a peer's key itself.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let counters = node.probe.stats().groups[0].counters;
        let owned = keys
            .iter()
            .filter(|k| cluster.owner_of(k.as_bytes()) == i)
            .count();
        let absent_owned = (0..CLIENTS)
            .filter(|c| cluster.owner_of(format!("absent-{c}").as_bytes()) == i)
            .count();
        assert_eq!(
            counters.loads - counters.load_misses,
            owned as u64,
            "node {i}"
        );
        assert_eq!(counters.load_misses, absent_owned as u64, "node {i}");
        assert_eq!(counters.fallbacks, 0, "node {i}");
    }
    cluster.shutdown().await;
}
