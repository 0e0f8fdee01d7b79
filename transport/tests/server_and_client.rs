//! The server's lifecycle and validation, and `CacheClient`, against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use lcache_transport::observe::{Outcome, Rpc};
use lcache_transport::proto::cache_client::CacheClient as RawClient;
use lcache_transport::{proto, CacheClient, ClientConfig, ClientError, Code, ServerConfig};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn channel(server: &TestServer) -> Channel {
    Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_server_reports_each_request_it_answered_with_its_outcome() {
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let c = CacheClient::connect(&server.addr.to_string(), ClientConfig::default())
        .await
        .unwrap();
    assert_eq!(c.get(GROUP, "k").await.unwrap(), None);
    c.set(GROUP, "k", "v", None).await.unwrap();
    assert!(c.get(GROUP, "k").await.unwrap().is_some());
    assert!(c.delete(GROUP, "k").await.unwrap());
    assert!(c.get("nope", "k").await.is_err());
    c.stats(None).await.unwrap();
    assert_eq!(
        *fake.observed.lock(),
        [
            (Rpc::Get, Outcome::Miss, 1),
            (Rpc::Set, Outcome::Ok, 1),
            (Rpc::Get, Outcome::Ok, 1),
            (Rpc::Delete, Outcome::Ok, 1),
            (Rpc::Get, Outcome::Invalid, 1),
            (Rpc::Stats, Outcome::Ok, 1),
        ]
    );
}

#[tokio::test]
async fn client_round_trip_and_stats() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let c = CacheClient::connect(&server.addr.to_string(), ClientConfig::default())
        .await
        .unwrap();
    assert_eq!(c.get(GROUP, "k").await.unwrap(), None);
    c.set(GROUP, "k", "v", Some(Duration::from_secs(9)))
        .await
        .unwrap();
    let got = c.get(GROUP, "k").await.unwrap().unwrap();
    assert_eq!(got.value, Bytes::from_static(b"v"));
    assert_eq!(got.ttl, Some(Duration::from_secs(9)));

    let all = c.stats(None).await.unwrap();
    assert_eq!(all.node_id, "node-a");
    assert_eq!(all.groups.len(), 2);
    let one = c.stats(Some(GROUP)).await.unwrap();
    assert_eq!(one.groups.len(), 1);
    assert_eq!(one.groups[0].group, GROUP);
    assert_eq!(one.groups[0].entries(), 1);
    assert_eq!(one.groups[0].counters.hits, 3);
    assert_eq!(one.groups[0].budget_bytes(), 1 << 20);

    assert!(c.delete(GROUP, "k").await.unwrap());
    assert!(!c.delete(GROUP, "k").await.unwrap());
    assert_eq!(c.get(GROUP, "k").await.unwrap(), None);
}

#[tokio::test]
async fn client_errors() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let c = CacheClient::connect(&server.addr.to_string(), ClientConfig::default())
        .await
        .unwrap();
    let err = c.get("nope", "k").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownGroup { group, .. } if group == "nope"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope"));
    let err = c.stats(Some("nope")).await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownGroup { .. }), "{err:?}");
    let err = c.get("", "k").await.unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = c.get(GROUP, "").await.unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidArgument { .. }),
        "{err:?}"
    );
    let err = c.get(EXHAUSTED, "k").await.unwrap_err();
    assert!(
        matches!(err, ClientError::ResourceExhausted { .. }),
        "{err:?}"
    );
    let err = c.get(BROKEN, "k").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Failed {
                code: Code::Internal,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_connect_failures() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = bounded(
        "connect",
        CacheClient::connect(&addr, ClientConfig::default()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::Unavailable { addr: a, .. } if *a == addr),
        "{err:?}"
    );
    let err = CacheClient::connect("nope", ClientConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidAddress { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let mut raw = RawClient::new(channel(&server).await);
    let get = |group: &str, key: &'static [u8], hops| proto::GetRequest {
        group: group.into(),
        key: Bytes::from_static(key),
        hops,
    };
    for (req, what) in [
        (get(GROUP, b"k", 2), "hops"),
        (get(GROUP, b"k", u32::MAX), "hops"),
        (get("", b"k", 0), "group"),
        (get(GROUP, b"", 0), "key"),
        (get(&"x".repeat(1000), b"k", 0), "group"),
    ] {
        let status = raw.get(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains(what), "{what}: {status:?}");
    }
    let status = raw
        .set(proto::SetRequest {
            group: GROUP.into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            ttl_ms: Some(0),
            hops: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .delete(proto::DeleteRequest {
            group: GROUP.into(),
            key: Bytes::from_static(b"k"),
            hops: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        fake.seen.lock().is_empty(),
        "no malformed request reached the handler"
    );

    let status = raw.get(get(GROUP, b"k", 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "a miss is NOT_FOUND");
    let status = raw.get(get("other", b"k", 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("other"), "{status:?}");
}

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let mut health = HealthClient::new(channel(&server).await);
    for service in ["", lcache_transport::SERVICE_NAME] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn a_request_whose_caller_resets_its_stream_is_cancelled() {
    // The raw client sends no `grpc-timeout`, so the server's own deadline (30 s) is far past
    // the test's bound: only the reset can end the request in time.
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    // A second handle keeps the connection open: only the stream ends.
    let connection = channel(&server).await;
    let mut raw = RawClient::new(connection.clone());
    let call = tokio::spawn(async move {
        raw.get(proto::GetRequest {
            group: BLOCKED.into(),
            key: Bytes::from_static(b"k"),
            hops: 0,
        })
        .await
    });
    bounded("handler entered", fake.entered.notified()).await;
    // Dropping the call resets its HTTP/2 stream.
    call.abort();
    bounded("the abandoned request reported", async {
        loop {
            if fake
                .observed
                .lock()
                .contains(&(Rpc::Get, Outcome::Cancelled, 1))
            {
                break;
            }
            fake.reported.notified().await;
        }
    })
    .await;
    assert!(
        fake.observed.lock().iter().all(|o| o.1 != Outcome::Ok),
        "the handler ran on after its caller left"
    );
    // The connection still serves.
    let mut raw = RawClient::new(connection);
    let status = raw
        .get(proto::GetRequest {
            group: GROUP.into(),
            key: Bytes::from_static(b"absent"),
            hops: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let fake = Fake::new();
    let mut server = TestServer::start(fake.clone(), ServerConfig::default()).await;
    let addr = server.addr.to_string();
    let c = CacheClient::connect(&addr, ClientConfig::default())
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { c.get(BLOCKED, "k").await });
    bounded("handler entered", fake.entered.notified()).await;

    server.trigger_shutdown();
    // Let the server act on the signal while the handler is still blocked.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !server.task.is_finished(),
        "the server waits for the in-flight request"
    );
    assert!(!in_flight.is_finished());

    fake.release.notify_one();
    let answer = bounded("in-flight get", in_flight).await.unwrap();
    assert_eq!(
        answer.unwrap(),
        None,
        "the in-flight request completed normally"
    );
    bounded("server stop", &mut server.task)
        .await
        .unwrap()
        .unwrap();

    // The listener is gone: new connections are refused.
    let err = bounded(
        "connect after shutdown",
        CacheClient::connect(&addr, ClientConfig::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn serve_on_a_tcp_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(lcache_transport::serve(
        Fake::new(),
        ServerConfig::default(),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    let c = CacheClient::connect(&addr, ClientConfig::default())
        .await
        .unwrap();
    c.set(GROUP, "k", "v", None).await.unwrap();
    assert_eq!(
        c.get(GROUP, "k").await.unwrap().unwrap().value,
        Bytes::from_static(b"v")
    );
    drop(c);
    tx.send(()).unwrap();
    bounded("server stop", task).await.unwrap().unwrap();
}
