//! The gRPC server against hand-made HTTP/2 requests: malformed messages, unsupported
//! compression, unknown paths and the per-connection request cap get tonic's statuses, and the
//! connection stays usable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use http::{HeaderMap, Request};
use lcache_transport::{proto, Code, ServerConfig};
use prost::Message;
use tokio::net::TcpStream;

/// An HTTP/2 connection to `server`.
async fn connect(server: &TestServer) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send.ready().await.unwrap()
}

/// A message with its gRPC prefix (compression flag `flag`).
fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(flag);
    buf.put_u32(u32::try_from(message.len()).unwrap());
    buf.put_slice(message);
    buf.freeze()
}

/// A valid `Get` request message for `key` in the fake's group.
fn get(key: &str) -> Vec<u8> {
    proto::GetRequest {
        group: GROUP.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        hops: 0,
    }
    .encode_to_vec()
}

/// The answer to one request: the gRPC status code and message (from the headers of a
/// trailers-only answer or from the trailers), and the body bytes.
#[derive(Debug)]
struct Answer {
    code: Code,
    message: String,
    body: Bytes,
}

fn status_of(headers: &HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .map(|m| {
            // The gRPC spec percent-encodes it.
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// Sends `body` (in one DATA frame per chunk) to `path` with `extra` headers; reads the answer.
async fn call(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    extra: &[(&str, &str)],
    chunks: &[Bytes],
) -> Answer {
    let mut request = Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let (response, mut stream) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request.body(()).unwrap(), chunks.is_empty())
        .unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        stream
            .send_data(chunk.clone(), i + 1 == chunks.len())
            .unwrap();
    }
    let response = bounded("the answer", response).await.unwrap();
    assert_eq!(response.status(), 200);
    if let Some((code, message)) = status_of(response.headers()) {
        return Answer {
            code,
            message,
            body: Bytes::new(),
        };
    }
    let mut body = response.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    let (code, message) = status_of(&trailers).expect("grpc-status in the trailers");
    Answer {
        code,
        message,
        body: data.freeze(),
    }
}

const GET: &str = "/lcache.v1.Cache/Get";

#[tokio::test]
async fn malformed_messages_are_refused_with_tonics_statuses_and_the_connection_serves_on() {
    let config = ServerConfig {
        max_message_bytes: 1024,
        ..ServerConfig::default()
    };
    let server = TestServer::start(Fake::new(), config).await;
    let mut send = connect(&server).await;

    let empty = call(&mut send, GET, &[], &[]).await;
    assert_eq!(
        (empty.code, empty.message.as_str()),
        (Code::Internal, "Missing request message.")
    );
    let truncated = framed(0, &get("k"));
    let truncated = truncated.slice(..truncated.len() - 1);
    let cut = call(&mut send, GET, &[], &[truncated]).await;
    assert_eq!(cut.code, Code::Internal, "{cut:?}");
    assert!(cut.message.contains("Unexpected EOF"), "{cut:?}");
    let two = [framed(0, &get("k")), framed(0, &get("k"))].concat();
    let two = call(&mut send, GET, &[], &[Bytes::from(two)]).await;
    assert_eq!(two.code, Code::Internal, "{two:?}");
    // More bytes than the one message declared, in a later frame, the stream still open:
    // refused as they arrive, not held until the client ends the stream.
    let request = Request::post(format!("http://localhost{GET}"))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (response, mut stream) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request, false)
        .unwrap();
    stream.send_data(framed(0, &get("k")), false).unwrap();
    stream
        .send_data(Bytes::from_static(&[0; 64]), false)
        .unwrap();
    let response = bounded("an answer before the stream ends", response)
        .await
        .unwrap();
    let (code, _) = status_of(response.headers()).expect("a trailers-only answer");
    assert_eq!(code, Code::Internal);
    let compressed = call(&mut send, GET, &[], &[framed(1, &get("k"))]).await;
    assert_eq!(compressed.code, Code::Internal);
    assert!(
        compressed.message.contains("compressed-flag"),
        "{compressed:?}"
    );
    let gzip = call(
        &mut send,
        GET,
        &[("grpc-encoding", "gzip")],
        &[framed(0, &get("k"))],
    )
    .await;
    assert_eq!(gzip.code, Code::Unimplemented, "{gzip:?}");
    let garbage = call(&mut send, GET, &[], &[framed(0, &[0xff; 7])]).await;
    assert_eq!(garbage.code, Code::Internal, "{garbage:?}");
    assert!(garbage.message.contains("decode"), "{garbage:?}");
    // Declared longer than the limit: refused from the prefix, before the rest arrives.
    let mut oversized = BytesMut::new();
    oversized.put_u8(0);
    oversized.put_u32(1025);
    let over = call(&mut send, GET, &[], &[oversized.freeze()]).await;
    assert_eq!(over.code, Code::OutOfRange, "{over:?}");
    let unknown = call(
        &mut send,
        "/lcache.v1.Cache/Frobnicate",
        &[],
        &[framed(0, &[])],
    )
    .await;
    assert_eq!(unknown.code, Code::Unimplemented, "{unknown:?}");
    let elsewhere = call(&mut send, "/other.Service/Get", &[], &[framed(0, &[])]).await;
    assert_eq!(elsewhere.code, Code::Unimplemented, "{elsewhere:?}");

    // A message split over several DATA frames is put back together.
    let whole = framed(0, &get("absent"));
    let (a, b) = whole.split_at(3);
    let split = call(
        &mut send,
        GET,
        &[],
        &[Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)],
    )
    .await;
    assert_eq!(split.code, Code::NotFound, "{split:?}");

    // And the same connection still answers a valid request with a value.
    let set = proto::SetRequest {
        group: GROUP.into(),
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        ttl_ms: None,
        hops: 0,
    }
    .encode_to_vec();
    let stored = call(&mut send, "/lcache.v1.Cache/Set", &[], &[framed(0, &set)]).await;
    assert_eq!(stored.code, Code::Ok, "{stored:?}");
    let found = call(&mut send, GET, &[], &[framed(0, &get("k"))]).await;
    assert_eq!(found.code, Code::Ok, "{found:?}");
    let response = proto::GetResponse::decode(found.body.slice(5..)).unwrap();
    assert_eq!(response.value, Bytes::from_static(b"v"));
}

#[tokio::test]
async fn requests_past_the_per_connection_cap_are_refused_not_queued() {
    let config = ServerConfig {
        concurrency_limit_per_connection: Some(1),
        ..ServerConfig::default()
    };
    let fake = Fake::new();
    let server = TestServer::start(fake.clone(), config).await;
    let mut send = connect(&server).await;
    let blocked = proto::GetRequest {
        group: BLOCKED.into(),
        key: Bytes::from_static(b"k"),
        hops: 0,
    }
    .encode_to_vec();
    let mut first_send = send.clone();
    let first =
        tokio::spawn(async move { call(&mut first_send, GET, &[], &[framed(0, &blocked)]).await });
    bounded("first request in the handler", fake.entered.notified()).await;
    let second = call(&mut send, GET, &[], &[framed(0, &get("k"))]).await;
    assert_eq!(second.code, Code::ResourceExhausted, "{second:?}");
    fake.release.notify_one();
    let first = bounded("first answer", first).await.unwrap();
    assert_eq!(first.code, Code::NotFound, "{first:?}");
    // With the first answered, the connection takes requests again.
    let third = call(&mut send, GET, &[], &[framed(0, &get("k"))]).await;
    assert_eq!(third.code, Code::NotFound, "{third:?}");
}

/// A misbehaving server: answers every stream of one connection with `headers` alone (a
/// trailers-only answer), as given.
async fn answering_with(headers: Vec<(&'static str, &'static str)>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(tcp).await.unwrap();
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            let mut response = http::Response::builder().status(200);
            for (name, value) in &headers {
                response = response.header(*name, *value);
            }
            let _ = respond.send_response(response.body(()).unwrap(), true);
        }
    });
    addr
}

#[tokio::test]
async fn a_status_a_server_garbles_is_an_error_for_the_client_not_a_panic() {
    // `grpc-status-details-bin` must be base64; tonic's parser panics on anything else.
    let addr = answering_with(vec![
        ("content-type", "application/grpc"),
        ("grpc-status", "13"),
        ("grpc-message", "broken%20loader"),
        ("grpc-status-details-bin", "!!! not base64 !!!"),
    ])
    .await;
    let client = lcache_transport::CacheClient::connect(
        &addr.to_string(),
        lcache_transport::ClientConfig::default(),
    )
    .await
    .unwrap();
    let err = bounded("the get", client.get(GROUP, "k"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            lcache_transport::ClientError::Failed { code: Code::Internal, message, .. }
                if message.contains("broken loader")
        ),
        "{err:?}"
    );
}

/// A raw TCP connection to a server that pings every 20 ms and waits `timeout` for the answer,
/// past the client preface and an empty SETTINGS frame; the server is returned to be kept alive.
async fn pinged_connection(timeout: std::time::Duration) -> (TestServer, TcpStream) {
    use tokio::io::AsyncWriteExt;
    let config = ServerConfig {
        http2_keepalive_interval: Some(std::time::Duration::from_millis(20)),
        http2_keepalive_timeout: Some(timeout),
        ..ServerConfig::default()
    };
    let server = TestServer::start(Fake::new(), config).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    (server, tcp)
}

#[tokio::test]
async fn a_client_that_never_answers_keepalive_pings_is_disconnected() {
    use tokio::io::AsyncReadExt;
    // It reads, but never answers a PING.
    let (_server, mut tcp) = pinged_connection(std::time::Duration::from_millis(20)).await;
    let mut sink = vec![0u8; 4096];
    bounded("the server closing the connection", async {
        while tcp.read(&mut sink).await.unwrap_or(0) > 0 {}
    })
    .await;
}

#[tokio::test]
async fn a_client_that_answers_keepalive_pings_keeps_being_pinged_and_stays_connected() {
    // The server's keepalive loops: a fourth ping arrives only if the earlier ones were answered
    // and the connection kept serving its keepalive after each.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PING: u8 = 0x6;
    const SETTINGS: u8 = 0x4;
    const ACK: u8 = 0x1;
    let (_server, mut tcp) = pinged_connection(std::time::Duration::from_secs(5)).await;
    let mut pings = 0;
    bounded("four keepalive pings, each answered", async {
        while pings < 4 {
            let mut head = [0u8; 9];
            tcp.read_exact(&mut head).await.unwrap();
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            let (kind, flags) = (head[3], head[4]);
            if kind == SETTINGS && flags & ACK == 0 {
                tcp.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                    .await
                    .unwrap();
            } else if kind == PING && flags & ACK == 0 {
                pings += 1;
                let mut pong = vec![0, 0, 8, PING, ACK, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                tcp.write_all(&pong).await.unwrap();
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_body_for_another_service_is_charged_to_the_request_byte_budget_too() {
    // The health service is answered by tonic's generated code, not the cache's loop; its request
    // bodies still count against the server-wide budget of request bytes held at once.
    let config = ServerConfig {
        max_message_bytes: 16 << 10,
        max_request_bytes: 32 << 10,
        ..ServerConfig::default()
    };
    let server = TestServer::start(Fake::new(), config).await;
    let mut send = connect(&server).await;
    const CHECK: &str = "/grpc.health.v1.Health/Check";
    let oversized = framed(0, &vec![0u8; 64 << 10]);
    let chunks: Vec<Bytes> = oversized
        .chunks(8 << 10)
        .map(Bytes::copy_from_slice)
        .collect();
    let refused = call(&mut send, CHECK, &[], &chunks).await;
    assert_eq!(refused.code, Code::ResourceExhausted, "{refused:?}");
    // The refused request's bytes were given back: a well-formed check is answered.
    let check = framed(0, &[]);
    let answered = call(&mut send, CHECK, &[], &[check]).await;
    assert_eq!(answered.code, Code::Ok, "{answered:?}");
}
