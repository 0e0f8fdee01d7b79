//! `GrpcTransport` against a loopback server with an in-memory handler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use lcache_core::member::{Member, MemberId};
use lcache_transport::{
    ClientConfig, Code, Deadline, DeleteRequest, GetRequest, GrpcTransport, ServerConfig,
    SetRequest, Transport, TransportError,
};
use tokio::net::TcpStream;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(5);

/// The deadline `timeout` from now.
fn within(timeout: Duration) -> Deadline {
    Deadline::after(timeout)
}

fn member(server: &TestServer) -> Member {
    Member::new("peer-a", server.addr.to_string(), 1)
}

fn get(group: &str, key: &'static [u8]) -> GetRequest {
    GetRequest {
        group: group.into(),
        key: Bytes::from_static(key),
        forwarded: true,
    }
}

fn set(group: &str, key: &'static [u8], value: Bytes, ttl: Option<Duration>) -> SetRequest {
    SetRequest {
        group: group.into(),
        key: Bytes::from_static(key),
        value,
        ttl,
        forwarded: true,
    }
}

fn delete(group: &str, key: &'static [u8]) -> DeleteRequest {
    DeleteRequest {
        group: group.into(),
        key: Bytes::from_static(key),
        forwarded: true,
    }
}

#[tokio::test]
async fn set_get_delete_round_trip() {
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());

    let ttl = Some(Duration::from_secs(60));
    t.set(
        &peer,
        set(GROUP, b"k", Bytes::from_static(b"v1"), ttl),
        within(T),
    )
    .await
    .unwrap();
    assert_eq!(fake.last_seen().op, "set");
    assert!(
        fake.last_seen().forwarded,
        "hops=1 reaches the handler as forwarded"
    );

    let got = t
        .get(&peer, get(GROUP, b"k"), within(T))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, Bytes::from_static(b"v1"));
    assert_eq!(got.ttl, ttl);

    assert!(t
        .delete(&peer, delete(GROUP, b"k"), within(T))
        .await
        .unwrap());
    assert!(!t
        .delete(&peer, delete(GROUP, b"k"), within(T))
        .await
        .unwrap());
    assert_eq!(
        t.get(&peer, get(GROUP, b"k"), within(T)).await.unwrap(),
        None,
        "miss is Ok(None)"
    );

    let not_forwarded = GetRequest {
        forwarded: false,
        ..get(GROUP, b"k")
    };
    t.get(&peer, not_forwarded, within(T)).await.unwrap();
    assert!(!fake.last_seen().forwarded);
}

#[tokio::test]
async fn value_without_ttl_and_empty_value() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    t.set(&peer, set(GROUP, b"e", Bytes::new(), None), within(T))
        .await
        .unwrap();
    let got = t
        .get(&peer, get(GROUP, b"e"), within(T))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.value,
        Bytes::new(),
        "an empty value is a hit, not a miss"
    );
    assert_eq!(got.ttl, None);
}

#[tokio::test]
async fn unknown_group_is_distinct_from_a_miss() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    let err = t
        .get(&peer, get("nope", b"k"), within(T))
        .await
        .unwrap_err();
    match &err {
        TransportError::UnknownGroup { peer: p, group, .. } => {
            assert_eq!(p.as_str(), "peer-a");
            assert_eq!(group, "nope");
        }
        other => panic!("expected UnknownGroup, got {other:?}"),
    }
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!err.is_unreachable(), "the peer answered");

    let err = t
        .delete(&peer, delete("nope", b"k"), within(T))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::UnknownGroup { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn handler_errors_map_to_codes() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());

    let err = t
        .get(&peer, get(EXHAUSTED, b"k"), within(T))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::ResourceExhausted { message, .. } if message.contains("waiters")),
        "{err:?}"
    );
    assert!(!err.is_unreachable(), "an overloaded peer answered");

    let err = t
        .set(&peer, set(BROKEN, b"k", Bytes::new(), None), within(T))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Rejected { code: Code::Internal, message, .. } if message.contains("loader failed")),
        "{err:?}"
    );
    assert!(!err.is_unreachable());
}

#[tokio::test]
async fn zero_ttl_is_rejected_as_invalid_argument() {
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    let err = t
        .set(
            &peer,
            set(GROUP, b"k", Bytes::new(), Some(Duration::ZERO)),
            within(T),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TransportError::Rejected {
                code: Code::InvalidArgument,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_unreachable(), "a bad request fails anywhere");
    assert!(
        fake.seen.lock().is_empty(),
        "validation happens before the handler"
    );
}

#[tokio::test]
async fn request_over_the_client_limit_fails_before_sending() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let peer = member(&server);
    let config = ClientConfig {
        max_message_bytes: 1024,
        ..ClientConfig::default()
    };
    let t = GrpcTransport::new(config);
    let value = Bytes::from(vec![1u8; 2048]);
    let err = bounded(
        "oversized set",
        t.set(&peer, set(GROUP, b"k", value, None), within(T)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TransportError::MessageTooLarge { message, .. } if message.contains("1024")),
        "{err:?}"
    );
    assert_eq!(server.accepted(), 0, "nothing was sent");
}

#[tokio::test]
async fn request_over_the_server_limit_is_a_clear_error() {
    let config = ServerConfig {
        max_message_bytes: 1024,
        ..ServerConfig::default()
    };
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), config).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    let value = Bytes::from(vec![1u8; 64 * 1024]);
    let err = bounded(
        "oversized set",
        t.set(&peer, set(GROUP, b"k", value, None), within(T)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { .. }),
        "{err:?}"
    );
    assert!(fake.seen.lock().is_empty());
    // The connection is still usable.
    t.set(
        &peer,
        set(GROUP, b"k", Bytes::from_static(b"small"), None),
        within(T),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn response_over_the_client_limit_is_a_clear_error() {
    let server = TestServer::start(Fake::with_big(64 * 1024), ServerConfig::default()).await;
    let peer = member(&server);
    let config = ClientConfig {
        max_message_bytes: 1024,
        ..ClientConfig::default()
    };
    let t = GrpcTransport::new(config);
    let err = bounded("oversized get", t.get(&peer, get(BIG, b"k"), within(T)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { .. }),
        "{err:?}"
    );
    assert!(
        !err.is_unreachable(),
        "the peer answered: the node must not load the value itself"
    );
}

#[tokio::test]
async fn nothing_listening_is_unavailable_quickly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let t = GrpcTransport::new(config);
    let peer = Member::new("gone", addr.to_string(), 1);
    let started = Instant::now();
    let err = bounded(
        "get to a closed port",
        t.get(&peer, get(GROUP, b"k"), within(T)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable { peer, .. } if peer.as_str() == "gone"),
        "{err:?}"
    );
    assert!(err.is_unreachable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // A second call fails the same way (the channel retries the connection).
    let err = bounded("second get", t.get(&peer, get(GROUP, b"k"), within(T)))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_addresses_are_reported() {
    let t = GrpcTransport::new(ClientConfig::default());
    for addr in [
        "",
        "no-port",
        "http://127.0.0.1:1",
        "127.0.0.1:1/path",
        "a b:1",
    ] {
        let peer = Member::new("bad", addr, 1);
        let err = t.get(&peer, get(GROUP, b"k"), within(T)).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::InvalidAddress { addr: a, .. } if a == addr),
            "{addr:?}: {err:?}"
        );
    }
    assert_eq!(
        t.cached_peers(),
        0,
        "no channel is cached for a bad address"
    );
}

#[tokio::test]
async fn deadline_reaches_the_handler() {
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    t.get(&peer, get(GROUP, b"k"), within(Duration::from_millis(1500)))
        .await
        .unwrap();
    let deadline = fake.last_seen().deadline.expect("a deadline");
    assert!(
        deadline <= Duration::from_millis(1500) && deadline > Duration::from_millis(500),
        "{deadline:?}"
    );
}

#[tokio::test]
async fn an_unbounded_timeout_is_accepted() {
    let fake = Fake::new();
    let config = ServerConfig {
        max_request_timeout: Duration::MAX,
        ..ServerConfig::default()
    };
    let server = TestServer::start(fake.clone(), config).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    t.get(&peer, get(GROUP, b"k"), within(Duration::MAX))
        .await
        .unwrap();
    let deadline = fake.last_seen().deadline.expect("a deadline");
    assert!(deadline > Duration::from_secs(86_400 * 365), "{deadline:?}");
}

#[tokio::test]
async fn server_bound_caps_the_deadline() {
    let fake = Fake::new();
    let config = ServerConfig {
        max_request_timeout: Duration::from_millis(700),
        ..ServerConfig::default()
    };
    let server = TestServer::start(fake.clone(), config).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    t.get(&peer, get(GROUP, b"k"), within(Duration::from_secs(10)))
        .await
        .unwrap();
    let deadline = fake.last_seen().deadline.expect("a deadline");
    assert!(
        deadline <= Duration::from_millis(700) && deadline > Duration::from_millis(600),
        "{deadline:?}"
    );
}

#[tokio::test]
async fn a_stuck_peer_is_deadline_exceeded() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let peer = member(&server);
    let t = GrpcTransport::new(ClientConfig::default());
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = bounded("stuck get", t.get(&peer, get(STUCK, b"k"), within(timeout)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::DeadlineExceeded { timeout: t, .. } if *t <= timeout),
        "{err:?}"
    );
    assert!(
        !err.is_unreachable(),
        "a slow peer is not an unreachable one"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn one_connection_per_peer_incarnation() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let t = GrpcTransport::new(ClientConfig::default());
    let peer = member(&server);
    for _ in 0..3 {
        t.get(&peer, get(GROUP, b"k"), within(T)).await.unwrap();
    }
    // Concurrent calls share the connection too.
    let (a, b) = tokio::join!(
        t.get(&peer, get(GROUP, b"a"), within(T)),
        t.get(&peer, get(GROUP, b"b"), within(T))
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(server.accepted(), 1);
    assert_eq!(t.cached_peers(), 1);

    // A restarted member (new incarnation) gets a new channel.
    let restarted = Member::new("peer-a", server.addr.to_string(), 2);
    t.get(&restarted, get(GROUP, b"k"), within(T))
        .await
        .unwrap();
    t.get(&restarted, get(GROUP, b"k"), within(T))
        .await
        .unwrap();
    assert_eq!(server.accepted(), 2);
    assert_eq!(t.cached_peers(), 1);

    // Forgetting drops it; the next call connects again.
    t.forget(&MemberId::new("peer-a"));
    assert_eq!(t.cached_peers(), 0);
    t.forget(&MemberId::new("never-seen"));
    t.get(&restarted, get(GROUP, b"k"), within(T))
        .await
        .unwrap();
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn injected_connector_is_used() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let dials = Arc::new(AtomicUsize::new(0));
    let counter = dials.clone();
    let connector = tower::service_fn(move |uri: http::Uri| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or_default();
            TcpStream::connect((host.as_str(), port)).await
        }
    });
    let t = GrpcTransport::with_connector(ClientConfig::default(), connector);
    let peer = member(&server);
    t.set(
        &peer,
        set(GROUP, b"k", Bytes::from_static(b"v"), None),
        within(T),
    )
    .await
    .unwrap();
    let got = t
        .get(&peer, get(GROUP, b"k"), within(T))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value, Bytes::from_static(b"v"));
    assert_eq!(dials.load(Ordering::SeqCst), 1);
    assert_eq!(server.accepted(), 1);
}
