//! The RESP front door of real nodes on loopback, driven by the `redis` crate (a Redis client
//! library) and by raw sockets: every command, errors, pipelining, limits, malformed input, the
//! group path (loader, owner routing in a cluster) and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{echo_loader, Scrape};
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::RingChange;
use lcache_core::router::Router;
use lcache_discovery::StaticDiscovery;
use lcache_node::metrics::Metrics;
use lcache_node::server::RespFrontDoor;
use lcache_node::{GroupConfig, Node, NodeConfig, ShutdownReport, DEFAULT_GROUP};
use lcache_transport::resp::{RequestLimits, RespConfig};
use lcache_transport::{CacheClient, ClientConfig, GrpcTransport, ServeError, ServerConfig};
use redis::aio::MultiplexedConnection;
use redis::{cmd, RedisError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A bound on every wait of these tests (never reached when things work).
const PATIENCE: Duration = Duration::from_secs(20);
/// A group with a loader answering `value-of:<key>` for every key.
const LOADED: &str = "loaded";

/// One node serving gRPC and RESP.
struct RespNode {
    member: Member,
    resp_addr: String,
    grpc: CacheClient,
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<ShutdownReport, ServeError>>>,
}

/// Starts one node per id (static discovery, each knowing all), each with a RESP port serving
/// `resp_group` with the settings `adjust` makes; groups: `default` (no loader) and `loaded`.
async fn start(
    ids: &[&str],
    resp_group: &str,
    adjust: impl Fn(RespConfig) -> RespConfig,
) -> Vec<RespNode> {
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for id in ids {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap().to_string();
        members.push(Member::new(MemberId::new(*id), addr, 0));
        listeners.push((grpc, resp));
    }
    let mut nodes = Vec::new();
    for (member, (grpc, resp)) in members.iter().zip(listeners) {
        let config = NodeConfig::new(member.id.clone(), member.addr.clone()).with_groups(vec![
            GroupConfig::new(DEFAULT_GROUP),
            GroupConfig::new(LOADED).with_loader(echo_loader()),
        ]);
        let node = Node::start(
            config,
            GrpcTransport::new(ClientConfig::default()),
            StaticDiscovery::new(members.clone()),
        )
        .await
        .unwrap();
        let resp_addr = resp.local_addr().unwrap().to_string();
        let metrics = node.metrics();
        let door = RespFrontDoor {
            listener: resp,
            config: adjust(RespConfig {
                group: resp_group.to_owned(),
                ..RespConfig::default()
            }),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lcache_node::server::run_with_resp(
            node,
            ServerConfig::default(),
            grpc,
            Some(door),
            async move {
                let _ = stopped.await;
            },
        ));
        let grpc = CacheClient::connect(&member.addr, ClientConfig::default())
            .await
            .unwrap();
        nodes.push(RespNode {
            member: member.clone(),
            resp_addr,
            grpc,
            metrics,
            stop: Some(stop),
            task: Some(task),
        });
    }
    nodes
}

impl RespNode {
    async fn redis(&self) -> MultiplexedConnection {
        let client = redis::Client::open(format!("redis://{}/", self.resp_addr)).unwrap();
        tokio::time::timeout(PATIENCE, client.get_multiplexed_async_connection())
            .await
            .unwrap()
            .unwrap()
    }

    async fn raw(&self) -> TcpStream {
        TcpStream::connect(&self.resp_addr).await.unwrap()
    }

    async fn stop(&mut self) -> ShutdownReport {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    command: &redis::Cmd,
) -> Result<T, RedisError> {
    tokio::time::timeout(PATIENCE, command.query_async(conn))
        .await
        .expect("an answer")
}

/// The error a command answers: its code and its text.
async fn error_of(conn: &mut MultiplexedConnection, command: &redis::Cmd) -> (String, String) {
    let err = query::<Value>(conn, command).await.unwrap_err();
    (
        err.code().unwrap_or_default().to_owned(),
        err.detail().unwrap_or_default().to_owned(),
    )
}

/// Writes `bytes` and reads until the server closes the connection.
async fn send_until_closed(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    // The server may close while a large write is still going: that is part of what is tested.
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .expect("the server closes the connection");
    got
}

/// Reads exactly `n` bytes.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut got))
        .await
        .expect("an answer")
        .unwrap();
    got
}

#[tokio::test]
async fn every_command_through_a_redis_client_library() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let node = &nodes[0];
    let mut conn = node.redis().await;

    assert_eq!(
        query::<String>(&mut conn, &cmd("PING")).await.unwrap(),
        "PONG"
    );
    assert_eq!(
        query::<String>(&mut conn, cmd("PING").arg("hi"))
            .await
            .unwrap(),
        "hi"
    );
    assert_eq!(
        query::<String>(&mut conn, cmd("ECHO").arg("echo me"))
            .await
            .unwrap(),
        "echo me"
    );

    // SET / GET, binary-safe; a miss is nil.
    let binary = b"a\r\nb\0c".to_vec();
    let _: () = query(&mut conn, cmd("SET").arg("k1").arg(&binary))
        .await
        .unwrap();
    let got: Option<Vec<u8>> = query(&mut conn, cmd("GET").arg("k1")).await.unwrap();
    assert_eq!(got, Some(binary.clone()));
    let miss: Option<Vec<u8>> = query(&mut conn, cmd("GET").arg("absent")).await.unwrap();
    assert_eq!(miss, None);
    // The same entry through gRPC: RESP writes go through the node's group path.
    let fetched = node.grpc.get(DEFAULT_GROUP, "k1").await.unwrap().unwrap();
    assert_eq!(fetched.value.as_ref(), &binary[..]);
    assert_eq!(fetched.ttl, None);

    // EX / PX set the entry's lifetime.
    let _: () = query(&mut conn, cmd("SET").arg("k2").arg("v2").arg("EX").arg(100))
        .await
        .unwrap();
    let ttl = node
        .grpc
        .get(DEFAULT_GROUP, "k2")
        .await
        .unwrap()
        .unwrap()
        .ttl;
    assert!(ttl.is_some_and(|t| t > Duration::from_secs(90) && t <= Duration::from_secs(100)));
    let _: () = query(
        &mut conn,
        cmd("SET").arg("k3").arg("v3").arg("px").arg(50_000),
    )
    .await
    .unwrap();
    let ttl = node
        .grpc
        .get(DEFAULT_GROUP, "k3")
        .await
        .unwrap()
        .unwrap()
        .ttl;
    assert!(ttl.is_some_and(|t| t > Duration::from_secs(40) && t <= Duration::from_secs(50)));

    // MGET: one element per key, nil for a miss.
    let many: Vec<Option<String>> = query(&mut conn, cmd("MGET").arg("k2").arg("nope").arg("k3"))
        .await
        .unwrap();
    assert_eq!(many, vec![Some("v2".into()), None, Some("v3".into())]);

    // EXISTS counts a key named twice twice, as Redis does.
    let n: i64 = query(&mut conn, cmd("EXISTS").arg("k2").arg("nope").arg("k2"))
        .await
        .unwrap();
    assert_eq!(n, 2);

    // DEL of several keys counts those that existed.
    let n: i64 = query(&mut conn, cmd("DEL").arg("k1").arg("k2").arg("nope"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let gone: Option<String> = query(&mut conn, cmd("GET").arg("k1")).await.unwrap();
    assert_eq!(gone, None);

    // What client libraries send when they connect.
    let _: () = query(&mut conn, cmd("SELECT").arg(0)).await.unwrap();
    let _: () = query(&mut conn, cmd("CLIENT").arg("SETNAME").arg("tester"))
        .await
        .unwrap();
    let name: Option<String> = query(&mut conn, cmd("CLIENT").arg("GETNAME"))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("tester"));
    let id: i64 = query(&mut conn, cmd("CLIENT").arg("ID")).await.unwrap();
    assert!(id > 0);
    let hello: Vec<Value> = query(&mut conn, cmd("HELLO").arg(2)).await.unwrap();
    assert_eq!(hello.len(), 14);
    assert_eq!(hello[4], Value::BulkString(b"proto".to_vec()));
    assert_eq!(hello[5], Value::Int(2));
    let count: i64 = query(&mut conn, cmd("COMMAND").arg("COUNT")).await.unwrap();
    let table: Vec<Value> = query(&mut conn, &cmd("COMMAND")).await.unwrap();
    assert_eq!(table.len(), usize::try_from(count).unwrap());
    let get_info: Vec<Vec<Value>> = query(&mut conn, cmd("COMMAND").arg("INFO").arg("get"))
        .await
        .unwrap();
    assert_eq!(get_info[0][0], Value::BulkString(b"get".to_vec()));
    assert_eq!(get_info[0][1], Value::Int(2));
    let config: Vec<String> = query(&mut conn, cmd("CONFIG").arg("GET").arg("appendonly"))
        .await
        .unwrap();
    assert_eq!(config, vec!["appendonly".to_owned(), "no".to_owned()]);

    // INFO: Redis fields and LCache's per-group counters.
    let info: String = query(&mut conn, &cmd("INFO")).await.unwrap();
    for field in [
        "redis_version:",
        "loading:0",
        "role:master",
        "connected_clients:",
        "resp_group:default",
        "lcache_node_id:solo",
        "group_default:hits=",
    ] {
        assert!(info.contains(field), "INFO lacks {field}: {info}");
    }
    let only: String = query(&mut conn, cmd("INFO").arg("clients")).await.unwrap();
    assert!(
        only.starts_with("# Clients") && !only.contains("# Server"),
        "{only}"
    );

    // QUIT answers OK and closes.
    let _: () = query(&mut conn, &cmd("QUIT")).await.unwrap();
    assert!(query::<String>(&mut conn, &cmd("PING")).await.is_err());

    let report = nodes[0].stop().await;
    assert!(report.drained);
}

#[tokio::test]
async fn errors_answer_like_redis_and_keep_the_connection() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let mut conn = nodes[0].redis().await;
    let cases: Vec<(redis::Cmd, &str, &str)> = vec![
        (
            cmd("FLUSHALL"),
            "ERR",
            "unknown command 'FLUSHALL', with args beginning with:",
        ),
        (
            cmd("GET"),
            "ERR",
            "wrong number of arguments for 'get' command",
        ),
        (
            cmd("GET").arg("a").arg("b").clone(),
            "ERR",
            "wrong number of arguments for 'get' command",
        ),
        (
            cmd("SET").arg("k").arg("v").arg("NX").clone(),
            "ERR",
            "SET NX is not supported by LCache",
        ),
        (
            cmd("SET").arg("k").arg("v").arg("EX").arg(0).clone(),
            "ERR",
            "invalid expire time in 'set' command",
        ),
        (
            cmd("SET").arg("k").arg("v").arg("EX").arg("soon").clone(),
            "ERR",
            "value is not an integer or out of range",
        ),
        (
            cmd("SET").arg("k").arg("v").arg("BOGUS").clone(),
            "ERR",
            "syntax error",
        ),
        (
            cmd("GET").arg("").clone(),
            "ERR",
            "invalid argument: key must not be empty",
        ),
        (
            cmd("HELLO").arg(3).clone(),
            "NOPROTO",
            "sorry, this protocol version is not supported",
        ),
        (
            cmd("SELECT").arg(1).clone(),
            "ERR",
            "DB index is out of range",
        ),
        (
            cmd("CLIENT").arg("KILL").clone(),
            "ERR",
            "unknown subcommand 'KILL'. Try CLIENT HELP.",
        ),
        (
            cmd("AUTH").arg("secret").clone(),
            "ERR",
            "AUTH <password> called without any password configured",
        ),
    ];
    for (command, code, detail) in &cases {
        let (got_code, got_detail) = error_of(&mut conn, command).await;
        assert_eq!(got_code, *code, "{got_detail}");
        assert!(
            got_detail.starts_with(detail),
            "{got_detail:?} vs {detail:?}"
        );
        // The connection goes on.
        assert_eq!(
            query::<String>(&mut conn, &cmd("PING")).await.unwrap(),
            "PONG"
        );
    }
    // A key above the node's limit (250 bytes) is refused by the group path, not stored.
    let long_key = "k".repeat(300);
    let (code, detail) = error_of(&mut conn, cmd("SET").arg(&long_key).arg("v")).await;
    assert_eq!(code, "ERR", "{detail}");
    assert!(detail.starts_with("invalid argument: "), "{detail}");
    let miss: Option<String> = query(&mut conn, cmd("GET").arg("k")).await.unwrap();
    assert_eq!(miss, None, "refused writes stored nothing");
    nodes[0].stop().await;
}

#[tokio::test]
async fn a_pipeline_is_answered_in_order() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let mut conn = nodes[0].redis().await;
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET")
            .arg(format!("p{i}"))
            .arg(format!("v{i}"))
            .ignore();
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    pipe.cmd("GET").arg("p-missing");
    let got: Vec<Option<String>> = tokio::time::timeout(PATIENCE, pipe.query_async(&mut conn))
        .await
        .unwrap()
        .unwrap();
    let mut expected: Vec<Option<String>> = (0..200).map(|i| Some(format!("v{i}"))).collect();
    expected.push(None);
    assert_eq!(got, expected);

    // The same over a raw socket: several requests in one write, answers in order.
    let mut raw = nodes[0].raw().await;
    raw.write_all(b"*2\r\n$3\r\nGET\r\n$2\r\np7\r\nPING\r\n*1\r\n$4\r\nnope\r\nECHO x\r\n")
        .await
        .unwrap();
    let expected = b"$2\r\nv7\r\n+PONG\r\n-ERR unknown command 'nope', with args beginning with: \r\n$1\r\nx\r\n";
    assert_eq!(read_n(&mut raw, expected.len()).await, expected);
    nodes[0].stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_each_counted_in_the_request_metrics() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let mut conn = nodes[0].redis().await;
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("m{i}")).arg("v").ignore();
        pipe.cmd("GET").arg(format!("m{i}")).ignore();
    }
    pipe.cmd("GET").arg("m-missing").ignore();
    pipe.cmd("DEL").arg("m1").arg("m-missing").ignore();
    pipe.cmd("MGET").arg("m2").arg("m3").ignore();
    pipe.cmd("INFO").ignore();
    let () = tokio::time::timeout(PATIENCE, pipe.query_async(&mut conn))
        .await
        .unwrap()
        .unwrap();
    // The scrape after the answers: every command of the batches is already counted.
    let scrape = Scrape::parse(&nodes[0].metrics.encode());
    let count = |rpc: &str, outcome: &str| {
        let labels = [("rpc", rpc), ("outcome", outcome)];
        scrape.value("lcache_request_duration_seconds_count", &labels)
    };
    assert_eq!(count("set", "ok"), 100.0);
    assert_eq!(count("get", "ok"), 102.0, "100 GETs and two MGET keys");
    assert_eq!(count("get", "miss"), 1.0);
    assert_eq!(count("delete", "ok"), 2.0, "one per key");
    assert_eq!(count("stats", "ok"), 1.0);
    let inf = [("rpc", "set"), ("outcome", "ok"), ("le", "+Inf")];
    assert_eq!(
        scrape.get("lcache_request_duration_seconds_bucket", &inf),
        Some(100.0)
    );
    assert!(scrape.value("lcache_request_duration_seconds_sum", &inf[..2]) > 0.0);
    nodes[0].stop().await;
}

#[tokio::test]
async fn the_group_path_runs_the_loader_once() {
    let mut nodes = start(&["solo"], LOADED, |c| c).await;
    let mut conn = nodes[0].redis().await;
    for _ in 0..3 {
        let got: String = query(&mut conn, cmd("GET").arg("user:1")).await.unwrap();
        assert_eq!(got, "value-of:user:1");
    }
    let n: i64 = query(&mut conn, cmd("EXISTS").arg("user:2")).await.unwrap();
    assert_eq!(n, 1, "EXISTS is what GET would find, loader included");
    let stats = nodes[0].grpc.stats(Some(LOADED)).await.unwrap();
    assert_eq!(stats.groups[0].counters.loads, 2, "one load per key");
    let info: String = query(&mut conn, cmd("INFO").arg("lcache")).await.unwrap();
    assert!(info.contains("group_loaded:hits=2,"), "{info}");
    nodes[0].stop().await;
}

#[tokio::test]
async fn a_cluster_routes_resp_commands_to_each_keys_owner() {
    let ids = ["a", "b", "c"];
    let mut nodes = start(&ids, DEFAULT_GROUP, |c| c).await;
    let mut router = Router::new(nodes[0].member.clone(), Default::default());
    let others: Vec<_> = nodes[1..]
        .iter()
        .map(|n| RingChange::Added(n.member.clone()))
        .collect();
    router.apply(&others);
    let owner_of = |key: &str| {
        let owner = router.owner(key.as_bytes()).id.clone();
        nodes.iter().position(|n| n.member.id == owner).unwrap()
    };
    let key = (0..10_000)
        .map(|i| format!("owned-by-c-{i}"))
        .find(|k| owner_of(k) == 2)
        .unwrap();

    // Written through a's RESP port, the value lives on its owner c.
    let mut on_a = nodes[0].redis().await;
    let _: () = query(&mut on_a, cmd("SET").arg(&key).arg("routed"))
        .await
        .unwrap();
    let owner_stats = nodes[2].grpc.stats(Some(DEFAULT_GROUP)).await.unwrap();
    assert_eq!(owner_stats.groups[0].entries(), 1);
    // Read through b's RESP port.
    let mut on_b = nodes[1].redis().await;
    let got: String = query(&mut on_b, cmd("GET").arg(&key)).await.unwrap();
    assert_eq!(got, "routed");
    // Deleted through b: gone on the owner.
    let n: i64 = query(&mut on_b, cmd("DEL").arg(&key)).await.unwrap();
    assert_eq!(n, 1);
    let mut on_c = nodes[2].redis().await;
    let gone: Option<String> = query(&mut on_c, cmd("GET").arg(&key)).await.unwrap();
    assert_eq!(gone, None);
    for node in &mut nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn malformed_input_is_answered_with_an_error_and_closed() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (
            b"*1\r\n".repeat(50_000),
            b"-ERR Protocol error: expected '$', got '*'\r\n",
        ),
        (
            b"*x\r\n".to_vec(),
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$99999999999\r\n".to_vec(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$3\r\nGETxx".to_vec(),
            b"-ERR Protocol error: expected CRLF after bulk string\r\n",
        ),
        (
            vec![b'a'; 70 * 1024],
            b"-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (input, expected) in cases {
        let mut raw = nodes[0].raw().await;
        let got = send_until_closed(&mut raw, &input).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }
    // The node is unharmed.
    let mut conn = nodes[0].redis().await;
    assert_eq!(
        query::<String>(&mut conn, &cmd("PING")).await.unwrap(),
        "PONG"
    );
    nodes[0].stop().await;
}

#[tokio::test]
async fn limits_on_arguments_query_buffer_and_connections() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| RespConfig {
        max_connections: 3,
        limits: RequestLimits {
            max_args: 4,
            max_bulk_bytes: 100 * 1024,
        },
        max_query_buffer_bytes: 128 * 1024,
        ..c
    })
    .await;
    // One argument above proto-max-bulk-len: refused at its length header.
    let mut raw = nodes[0].raw().await;
    let got = send_until_closed(&mut raw, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$102401\r\n").await;
    assert_eq!(got, b"-ERR Protocol error: invalid bulk length\r\n");
    // Too many arguments.
    let mut raw = nodes[0].raw().await;
    let got = send_until_closed(&mut raw, b"*5\r\n").await;
    assert_eq!(got, b"-ERR Protocol error: invalid multibulk length\r\n");
    // Arguments each within bounds, a request beyond the query buffer limit.
    let mut raw = nodes[0].raw().await;
    let mut request = b"*3\r\n$3\r\nSET\r\n$90000\r\n".to_vec();
    request.extend(vec![b'k'; 90_000]);
    request.extend(b"\r\n$90000\r\n");
    request.extend(vec![b'v'; 50_000]);
    let got = send_until_closed(&mut raw, &request).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: request larger than the query buffer limit of 131072 bytes\r\n"
    );

    // Three connections are served, the fourth is told and closed.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut raw = nodes[0].raw().await;
        raw.write_all(b"PING\r\n").await.unwrap();
        assert_eq!(read_n(&mut raw, 7).await, b"+PONG\r\n");
        held.push(raw);
    }
    let mut extra = nodes[0].raw().await;
    assert_eq!(
        send_until_closed(&mut extra, b"PING\r\n").await,
        b"-ERR max number of clients reached\r\n"
    );
    held[0].write_all(b"INFO stats\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, held[0].read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("rejected_connections:1\r\n"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    nodes[0].stop().await;
}

#[tokio::test]
async fn shutdown_closes_resp_connections_and_stops_accepting() {
    let mut nodes = start(&["solo"], DEFAULT_GROUP, |c| c).await;
    let mut idle = nodes[0].raw().await;
    idle.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_n(&mut idle, 7).await, b"+PONG\r\n");
    let addr = nodes[0].resp_addr.clone();
    let report = nodes[0].stop().await;
    assert!(report.drained);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(PATIENCE, idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "nothing listens any more"
    );
}
