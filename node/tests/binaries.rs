//! The `lcache-node` and `lcache` binaries end to end: CLI exit codes, and SIGTERM letting an
//! in-flight request finish before exiting 0.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::NodeProcess;
use lcache_core::member::Member;
use lcache_core::membership::RingChange;
use lcache_core::router::Router;
use lcache_transport::{CacheClient, ClientConfig};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

const CLI: &str = env!("CARGO_BIN_EXE_lcache");

fn cli(addr: &str, args: &[&str]) -> Output {
    Command::new(CLI)
        .args(["--addr", addr])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_gets_deletes_and_reports_with_documented_exit_codes() {
    let mut node = NodeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--node-id",
        "solo",
        "--group",
        "default:ttl=1h",
    ]);
    let addr = node.addr.clone();

    let set = cli(&addr, &["set", "greeting", "hello world", "--ttl", "30s"]);
    assert!(set.status.success(), "{set:?}");
    let get = cli(&addr, &["get", "greeting"]);
    assert_eq!(get.status.code(), Some(0), "{get:?}");
    assert_eq!(get.stdout, b"hello world", "raw value on stdout");

    let miss = cli(&addr, &["get", "nothing-here"]);
    assert_eq!(miss.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&miss.stderr).trim(), "not found");

    let del = cli(&addr, &["del", "greeting"]);
    assert!(del.status.success());
    assert_eq!(String::from_utf8_lossy(&del.stdout).trim(), "deleted");
    assert_eq!(cli(&addr, &["get", "greeting"]).status.code(), Some(1));

    let stats = cli(&addr, &["stats"]);
    assert!(stats.status.success());
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("node=solo group=default"), "{text}");
    assert!(text.contains("misses"), "{text}");

    let unknown = cli(&addr, &["--group", "nope", "get", "k"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
    let empty = cli(&addr, &["get", ""]);
    assert_eq!(empty.status.code(), Some(2));
    let unreachable = cli("127.0.0.1:1", &["get", "k"]);
    assert_eq!(unreachable.status.code(), Some(2));

    node.terminate();
    assert_eq!(node.exit_code(Duration::from_secs(30)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    // A peer that accepts connections, says nothing, and dies 1.5 s later: a get forwarded to it
    // stays in flight until the connection breaks, then the owner counts as unreachable and the
    // node falls back to its (absent) local loader → a miss.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blackhole_addr = blackhole.local_addr().unwrap().to_string();
    let (accepted_tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in blackhole.incoming().take(4) {
            let _ = accepted_tx.send(());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1_500));
                drop(stream);
            });
        }
    });
    let peers = format!("silent={blackhole_addr}");
    let mut node = NodeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--node-id",
        "self",
        "--peers",
        &peers,
        "--peer-timeout",
        "1s",
        "--request-timeout",
        "10s",
    ]);
    let mut router = Router::new(
        Member::new("self", node.addr.clone(), 0),
        Default::default(),
    );
    router.apply(&[RingChange::Added(Member::new("silent", blackhole_addr, 0))]);
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| router.owner(k.as_bytes()).id.as_str() == "silent")
        .unwrap();

    let client = CacheClient::connect(&node.addr, ClientConfig::default())
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { client.get("default", key).await });
    // The node dialled the silent owner: the request is in flight now.
    tokio::task::spawn_blocking(move || accepted.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    node.terminate();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.unwrap(),
        None,
        "the in-flight get completed with a miss"
    );
    assert_eq!(node.exit_code(Duration::from_secs(30)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_takes_at_most_the_grace_period_in_total() {
    // A peer that accepts connections and never answers: a get forwarded to it stays in flight
    // (the node waits for a slow but healthy owner), so the shutdown has to stop waiting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (accepted_tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4) {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let peers = format!("silent={silent_addr}");
    let grace = Duration::from_secs(1);
    let mut node = NodeProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--node-id",
        "self",
        "--peers",
        &peers,
        "--peer-timeout",
        "10s",
        "--request-timeout",
        "20s",
        "--shutdown-grace",
        "1s",
    ]);
    let mut router = Router::new(
        Member::new("self", node.addr.clone(), 0),
        Default::default(),
    );
    router.apply(&[RingChange::Added(Member::new("silent", silent_addr, 0))]);
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| router.owner(k.as_bytes()).id.as_str() == "silent")
        .unwrap();
    let client = CacheClient::connect(
        &node.addr,
        ClientConfig {
            request_timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let _in_flight = tokio::spawn(async move { client.get("default", key).await });
    tokio::task::spawn_blocking(move || accepted.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    let signalled = tokio::time::Instant::now();
    node.terminate();
    assert_eq!(node.exit_code(Duration::from_secs(30)).await, Some(0));
    let took = signalled.elapsed();
    // Deregistering, waiting for connections and draining share one deadline: the grace, plus
    // the time a process takes to notice a signal and exit.
    assert!(
        took < grace + Duration::from_millis(700),
        "the shutdown took {took:?} with a grace of {grace:?}"
    );
}
