//! Get/set round trips over loopback gRPC against real nodes: a hit on the node asked, and a
//! hit on a peer (forwarded once, hot cache disabled so every get crosses two hops).
//!
//! Run: `cargo bench -p lcache-node --bench roundtrip`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use lcache_core::member::{Member, MemberId};
use lcache_discovery::StaticDiscovery;
use lcache_node::{GroupConfig, Node, NodeConfig, DEFAULT_GROUP};
use lcache_transport::{CacheClient, ClientConfig, GrpcTransport, ServerConfig};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Two nodes on loopback with the hot cache off; returns a client of each.
async fn two_nodes() -> (Vec<Member>, Vec<CacheClient>) {
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for id in ["a", "b"] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        members.push(Member::new(MemberId::new(id), addr, 0));
        listeners.push(listener);
    }
    let mut clients = Vec::new();
    for (member, listener) in members.iter().zip(listeners) {
        let mut group = GroupConfig::new(DEFAULT_GROUP);
        group.hot = None;
        let config =
            NodeConfig::new(member.id.clone(), member.addr.clone()).with_groups(vec![group]);
        let node = Node::start(
            config,
            GrpcTransport::new(ClientConfig::default()),
            StaticDiscovery::new(members.clone()),
        )
        .await
        .unwrap();
        tokio::spawn(lcache_node::server::run(
            node,
            ServerConfig::default(),
            listener,
            std::future::pending(),
        ));
        clients.push(
            CacheClient::connect(&member.addr, ClientConfig::default())
                .await
                .unwrap(),
        );
    }
    (members, clients)
}

fn owned_by(members: &[Member], owner: &str) -> String {
    let mut router = lcache_core::router::Router::new(members[0].clone(), Default::default());
    router.apply(&[lcache_core::membership::RingChange::Added(
        members[1].clone(),
    )]);
    (0..10_000)
        .map(|i| format!("key-{i}"))
        .find(|k| router.owner(k.as_bytes()).id.as_str() == owner)
        .unwrap()
}

fn roundtrip(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (members, clients) = rt.block_on(two_nodes());
    let local_key = owned_by(&members, "a");
    let remote_key = owned_by(&members, "b");
    rt.block_on(async {
        clients[0]
            .set(DEFAULT_GROUP, local_key.clone(), vec![b'v'; 100], None)
            .await
            .unwrap();
        clients[0]
            .set(DEFAULT_GROUP, remote_key.clone(), vec![b'v'; 100], None)
            .await
            .unwrap();
    });
    let mut group = c.benchmark_group("get_roundtrip_loopback");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("hit_on_node_asked", |b| {
        b.to_async(&rt).iter(|| async {
            clients[0]
                .get(DEFAULT_GROUP, local_key.clone())
                .await
                .unwrap()
        })
    });
    group.bench_function("hit_on_owner_one_hop_away", |b| {
        b.to_async(&rt).iter(|| async {
            clients[0]
                .get(DEFAULT_GROUP, remote_key.clone())
                .await
                .unwrap()
        })
    });
    group.bench_function("set_on_node_asked", |b| {
        b.to_async(&rt).iter(|| async {
            clients[0]
                .set(DEFAULT_GROUP, local_key.clone(), vec![b'v'; 100], None)
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
