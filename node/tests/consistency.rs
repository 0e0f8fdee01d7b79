//! Writes are never undone (issue "Writes are never undone"): one real-cluster test per way a
//! write used to be lost or undone. Each fails on the code before the group state machine moved
//! into the core; the note of the change that added them says how.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{with_loader, Cluster, GatedLoader};
use lcache_core::group::Tier;
use lcache_core::member::Member;
use lcache_node::DEFAULT_GROUP as G;
use lcache_transport::proto;

/// Reads `key` through every node, so every non-owner keeps a hot copy.
async fn read_everywhere(cluster: &Cluster, key: &str) {
    for node in &cluster.nodes {
        node.client.get(G, key.to_owned()).await.unwrap();
    }
}

fn value(got: Option<lcache_transport::Fetched>) -> Option<String> {
    got.map(|f| String::from_utf8(f.value.to_vec()).unwrap())
}

/// 1. Without any fault, a write acknowledged on one node is what every other node returns
///    next — their hot copies were invalidated before the write was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_what_every_other_node_returns_next() {
    let cluster = Cluster::start(&["a", "b", "c"], |c| c).await;
    let owner = 0;
    let d = cluster.key_owned_by(owner, "d");
    cluster.nodes[0]
        .client
        .set(G, d.clone(), "old", None)
        .await
        .unwrap();
    read_everywhere(&cluster, &d).await;
    // Node c held a hot copy; b deletes; c must not serve its copy.
    assert!(cluster.nodes[1].client.delete(G, d.clone()).await.unwrap());
    assert_eq!(
        value(cluster.nodes[2].client.get(G, d.clone()).await.unwrap()),
        None
    );

    let u = cluster.key_owned_by(1, "u");
    cluster.nodes[2]
        .client
        .set(G, u.clone(), "old", None)
        .await
        .unwrap();
    read_everywhere(&cluster, &u).await;
    cluster.nodes[2]
        .client
        .set(G, u.clone(), "new", None)
        .await
        .unwrap();
    for node in &cluster.nodes {
        assert_eq!(
            value(node.client.get(G, u.clone()).await.unwrap()).as_deref(),
            Some("new"),
            "node {}",
            node.member.id
        );
    }
    let stats = cluster.stats().await;
    assert!(stats[1].counters.invalidations_sent >= 2, "{:?}", stats[1]);
    cluster.shutdown().await;
}

/// 2. A write marked as forwarded (hops = 1) reaching a node that does not own the key is
///    refused, whether a peer or a client sent it: it never sits in that node's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_is_refused_by_a_node_that_does_not_own_the_key() {
    let cluster = Cluster::start(&["a", "b"], |c| c).await;
    let key = cluster.key_owned_by(1, "ghost");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.nodes[0].member.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut raw = proto::cache_client::CacheClient::new(channel);
    let forwarded_set = proto::SetRequest {
        group: G.into(),
        key: Bytes::from(key.clone()),
        value: Bytes::from_static(b"ghost"),
        ttl_ms: None,
        hops: 1,
    };
    let status = raw.set(forwarded_set).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("does not own"), "{status:?}");
    let forwarded_delete = proto::DeleteRequest {
        group: G.into(),
        key: Bytes::from(key.clone()),
        hops: 1,
    };
    assert!(raw.delete(forwarded_delete).await.is_err());
    let mut stored = 0;
    cluster.nodes[0]
        .probe
        .visit_entries(G, |tier, _, _| stored += usize::from(tier == Tier::Main));
    assert_eq!(stored, 0, "nothing sits unseen in a's main store");
    assert_eq!(cluster.stats().await[0].counters.not_owner, 2);
    cluster.shutdown().await;
}

/// 3. A node that was out of the membership (its lease lost while peers acknowledged writes to
///    its keys) drops its old data before it is routed to again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_registration_never_serves_its_old_data() {
    let (cluster, discovery) = Cluster::start_manual(&["a", "b"], |c| c).await;
    let key = cluster.key_owned_by(0, "leased");
    cluster.nodes[1]
        .client
        .set(G, key.clone(), "before", None)
        .await
        .unwrap();
    let a = cluster.nodes[0].member.clone();
    // a is cut off: b's view drops it and b takes over its keys, acknowledging a newer write.
    discovery[1].down(2, "a").await;
    let b = &cluster.nodes[1].client;
    eventually_owner(&cluster, 1, &key, "b").await;
    b.set(G, key.clone(), "during", None).await.unwrap();
    b.delete(G, key.clone()).await.unwrap();
    // a's discovery finds the lease lost and registers a again: it fences first.
    discovery[0].lose_registration();
    discovery[1]
        .up(
            3,
            Member {
                incarnation: 1,
                ..a
            },
        )
        .await;
    eventually_owner(&cluster, 1, &key, "a").await;
    assert_eq!(
        value(b.get(G, key.clone()).await.unwrap()),
        None,
        "a served the value written before its lease was lost"
    );
    assert_eq!(cluster.stats().await[0].counters.fenced, 1);
    cluster.shutdown().await;
}

/// A node learns of its own departure through its watch too, and fences then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_sees_itself_leave_drops_its_data() {
    let (cluster, discovery) = Cluster::start_manual(&["a", "b"], |c| c).await;
    let key = cluster.key_owned_by(0, "seen");
    cluster.nodes[0]
        .client
        .set(G, key.clone(), "v", None)
        .await
        .unwrap();
    discovery[0].up(2, cluster.nodes[0].member.clone()).await;
    discovery[0].down(3, "a").await;
    common::eventually(Duration::from_secs(5), || async {
        cluster.nodes[0].probe.stats().groups[0].counters.fenced == 1
    })
    .await;
    assert_eq!(cluster.nodes[0].probe.stats().groups[0].entries(), 0);
    cluster.shutdown().await;
}

async fn eventually_owner(cluster: &Cluster, node: usize, key: &str, owner: &str) {
    common::eventually(Duration::from_secs(5), || async {
        cluster.nodes[node].probe.owner(key.as_bytes()).id.as_str() == owner
    })
    .await;
}

/// The owner of `key` in the view of `me` holding `members`.
fn owner_among(me: &Member, members: &[Member], key: &str) -> String {
    let mut router = lcache_core::Router::new(me.clone(), Default::default());
    let added: Vec<_> = members
        .iter()
        .cloned()
        .map(lcache_core::RingChange::Added)
        .collect();
    router.apply(&added);
    router.owner(key.as_bytes()).id.to_string()
}

/// 4. A load that decided "owned" before a ring change took the key away does not put its value
///    in the main store after the hand-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_ring_change_is_not_kept_as_owner() {
    let (loader, gate) = GatedLoader::new(false);
    let (cluster, discovery) =
        Cluster::start_manual(&["a", "b"], |c| with_loader(c, loader.clone())).await;
    let (a, b) = (
        cluster.nodes[0].member.clone(),
        cluster.nodes[1].member.clone(),
    );
    // A third member (reachable at b's address) that takes the key from a once it joins.
    let c = Member::new("c", b.addr.clone(), 0);
    let key = (0..100_000)
        .map(|i| format!("racing-{i}"))
        .find(|k| {
            owner_among(&a, std::slice::from_ref(&b), k) == "a"
                && owner_among(&a, &[b.clone(), c.clone()], k) == "c"
        })
        .unwrap();
    let pending = {
        let (client, key) = (cluster.nodes[0].client.clone(), key.clone());
        tokio::spawn(async move { client.get(G, key).await })
    };
    common::eventually(Duration::from_secs(5), || async { loader.calls() == 1 }).await;
    discovery[0].up(2, c).await;
    eventually_owner(&cluster, 0, &key, "c").await;
    gate.send(true).unwrap();
    let got = pending.await.unwrap().unwrap();
    assert_eq!(
        value(got),
        Some(format!("loaded:{key}")),
        "the caller still gets it"
    );
    let mut in_main = 0;
    cluster.nodes[0].probe.visit_entries(G, |tier, k, _| {
        in_main += usize::from(tier == Tier::Main && k == key.as_bytes());
    });
    assert_eq!(
        in_main, 0,
        "a kept a value it no longer owns in its main store"
    );
    cluster.shutdown().await;
}

/// 5. On one node, a get that starts after an acknowledged write returns that write (or
///    something newer), even while a slow load or fetch of the key that began before the write
///    is still in flight. Here on the owner: after a delete, a get must not be answered by the
///    load that began before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_after_an_acknowledged_delete_never_joins_an_older_load() {
    let (loader, gate) = GatedLoader::numbered(false);
    let cluster = Cluster::start(&["solo"], |c| with_loader(c, loader.clone())).await;
    let client = cluster.nodes[0].client.clone();
    let before = {
        let client = client.clone();
        tokio::spawn(async move { client.get(G, "k").await })
    };
    common::eventually(Duration::from_secs(5), || async { loader.calls() == 1 }).await;
    client.delete(G, "k").await.unwrap();
    let after = {
        let client = client.clone();
        tokio::spawn(async move { client.get(G, "k").await })
    };
    // Open the gate only once the node has taken the second get in (found nothing stored).
    common::eventually(Duration::from_secs(5), || async {
        cluster.stats().await[0].counters.misses == 2
    })
    .await;
    gate.send(true).unwrap();
    assert_eq!(
        value(before.await.unwrap().unwrap()).as_deref(),
        Some("loaded:k#1")
    );
    assert_eq!(
        value(after.await.unwrap().unwrap()).as_deref(),
        Some("loaded:k#2"),
        "the get after the delete was answered by the load that began before it"
    );
    cluster.shutdown().await;
}

/// 5, on a non-owner: a set through it, then a get through it, while the get before the set
/// still waits for the owner's slow load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_after_an_acknowledged_set_never_joins_an_older_fetch() {
    let (loader, gate) = GatedLoader::new(false);
    let cluster = Cluster::start(&["a", "b"], |c| with_loader(c, loader.clone())).await;
    let key = cluster.key_owned_by(1, "fetched");
    let client = cluster.nodes[0].client.clone();
    let before = {
        let (client, key) = (client.clone(), key.clone());
        tokio::spawn(async move { client.get(G, key).await })
    };
    common::eventually(Duration::from_secs(5), || async { loader.calls() == 1 }).await;
    client.set(G, key.clone(), "v2", None).await.unwrap();
    // The owner's load is still held at its gate: a get that joined the old fetch would wait.
    let after = tokio::time::timeout(Duration::from_secs(5), client.get(G, key.clone()))
        .await
        .expect("the get after the set waited for the fetch that began before it")
        .unwrap();
    assert_eq!(value(after).as_deref(), Some("v2"));
    gate.send(true).unwrap();
    assert_eq!(
        value(before.await.unwrap().unwrap()),
        Some(format!("loaded:{key}"))
    );
    assert_eq!(
        value(client.get(G, key.clone()).await.unwrap()).as_deref(),
        Some("v2"),
        "the superseded load did not overwrite the write"
    );
    cluster.shutdown().await;
}
