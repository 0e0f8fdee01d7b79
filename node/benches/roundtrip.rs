//! Get/set round trips over loopback gRPC against real nodes: a hit on the node asked, and a
//! hit on a peer (forwarded once, hot cache disabled so every get crosses two hops); then the
//! same two gets with mutual TLS on every connection (client to node, node to node), so the
//! cost of TLS is read against plain text measured in the same run.
//!
//! Run: `cargo bench -p lcache-node --bench roundtrip`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use lcache_core::member::{Member, MemberId};
use lcache_discovery::StaticDiscovery;
use lcache_node::{GroupConfig, Node, NodeConfig, DEFAULT_GROUP};
use lcache_transport::{CacheClient, ClientConfig, GrpcTransport, ServerConfig, TlsConfig};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Mutual TLS settings for the nodes and the client, from a CA made for the run.
struct BenchTls {
    nodes: TlsConfig,
    client: TlsConfig,
}

fn bench_tls() -> BenchTls {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let issue = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        TlsConfig::from_pem(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            ca.pem().as_bytes(),
        )
        .unwrap()
    };
    BenchTls {
        nodes: issue(),
        client: issue(),
    }
}

/// Two nodes on loopback with the hot cache off; returns a client of each.
async fn two_nodes(tls: Option<&BenchTls>) -> (Vec<Member>, Vec<CacheClient>) {
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
        let transport = match tls {
            Some(tls) => GrpcTransport::with_tls(ClientConfig::default(), tls.nodes.clone()),
            None => GrpcTransport::new(ClientConfig::default()),
        };
        let node = Node::start(config, transport, StaticDiscovery::new(members.clone()))
            .await
            .unwrap();
        let server_config = ServerConfig {
            tls: tls.map(|tls| tls.nodes.clone()),
            ..ServerConfig::default()
        };
        tokio::spawn(lcache_node::server::run(
            node,
            server_config,
            listener,
            std::future::pending(),
        ));
        let client = match tls {
            Some(tls) => {
                CacheClient::connect_tls(&member.addr, ClientConfig::default(), &tls.client)
                    .await
                    .unwrap()
            }
            None => CacheClient::connect(&member.addr, ClientConfig::default())
                .await
                .unwrap(),
        };
        clients.push(client);
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
    let (members, clients) = rt.block_on(two_nodes(None));
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

fn roundtrip_tls(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let tls = bench_tls();
    let (members, clients) = rt.block_on(two_nodes(Some(&tls)));
    let local_key = owned_by(&members, "a");
    let remote_key = owned_by(&members, "b");
    rt.block_on(async {
        for key in [&local_key, &remote_key] {
            clients[0]
                .set(DEFAULT_GROUP, key.clone(), vec![b'v'; 100], None)
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("get_roundtrip_loopback_mutual_tls");
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
    group.finish();
}

criterion_group!(benches, roundtrip, roundtrip_tls);
criterion_main!(benches);
