//! Nodes finding each other through a real etcd (one private etcd per test, see
//! `discovery/tests/support/etcd_server.rs`): joining, routing agreement, crash and graceful
//! departure, an etcd outage, and rebalancing on join.
//!
//! The timings printed here are the measured ones the README reports:
//! `cargo test -p lcache-node --features etcd --test etcd_cluster -- --nocapture`
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "../../discovery/tests/support/etcd_server.rs"]
mod etcd_server;

use etcd_server::EtcdServer;
use lcache_discovery::{EtcdConfig, EtcdDiscovery};
use lcache_node::{loader_fn, GroupConfig, Loaded, Node, NodeConfig, DEFAULT_GROUP};
use lcache_transport::{CacheClient, ClientConfig, GrpcTransport, ServerConfig};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NODE_BIN: &str = env!("CARGO_BIN_EXE_lcache-node");

/// Short lease so crash detection is quick to test.
const SHORT_TTL: Duration = Duration::from_secs(2);
/// Slack on top of the TTL: etcd checks for expired leases every 500 ms, then the watch event
/// has to travel.
const MARGIN: Duration = Duration::from_millis(1_500);

fn etcd_config(etcd: &EtcdServer, cluster: &str, ttl: Duration) -> EtcdConfig {
    let mut config = EtcdConfig::new([etcd.endpoint()], cluster).with_lease_ttl(ttl);
    config.request_timeout = Duration::from_secs(1);
    config.backoff_max = Duration::from_secs(1);
    config
}

/// An in-process node serving gRPC on loopback, with a loader every node answers alike.
struct TestNode {
    node: Node<GrpcTransport, EtcdDiscovery>,
    addr: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl TestNode {
    async fn start(id: &str, config: EtcdConfig) -> TestNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let loader = loader_fn(|key: bytes::Bytes| async move {
            Ok(Some(Loaded::new(format!(
                "loaded:{}",
                String::from_utf8_lossy(&key)
            ))))
        });
        let node_config = NodeConfig::new(id, addr.clone())
            .with_groups(vec![GroupConfig::new(DEFAULT_GROUP).with_loader(loader)]);
        let node = Node::start(
            node_config,
            GrpcTransport::new(ClientConfig::default()),
            EtcdDiscovery::new(config).unwrap(),
        )
        .await
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = Arc::new(node.service());
        let server = tokio::spawn(async move {
            let _ = lcache_transport::serve(service, ServerConfig::default(), listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        TestNode {
            node,
            addr,
            stop,
            server,
        }
    }

    fn ids(&self) -> BTreeSet<String> {
        self.node
            .members()
            .into_iter()
            .map(|m| m.id.to_string())
            .collect()
    }

    /// Leave gracefully (revoking the lease), then stop serving.
    async fn shutdown(self) {
        let report = self.node.shutdown().await;
        assert!(report.deregistered, "{report:?}");
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Wait until every node's view is `want`; returns how long it took. Panics after `limit`.
async fn converge(nodes: &[&TestNode], want: &BTreeSet<String>, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if nodes.iter().all(|n| n.ids() == *want) {
            return start.elapsed();
        }
        let views: Vec<_> = nodes.iter().map(|n| n.ids()).collect();
        assert!(
            start.elapsed() < limit,
            "views {views:?} did not become {want:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i}")).collect()
}

/// The id of each key's owner as `node` routes it (ids only: a node's own record carries its
/// configured incarnation, peers see the one etcd registration derived).
fn owners(node: &TestNode, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| node.node.owner(k.as_bytes()).id.to_string())
        .collect()
}

/// How many keys two routings disagree on.
/// A key `node` routes to the member `owner`.
fn key_owned_by(node: &TestNode, owner: &str) -> String {
    keys(1_000)
        .into_iter()
        .find(|k| node.node.owner(k.as_bytes()).id.as_str() == owner)
        .unwrap()
}

/// The incarnation of member `id` in `observer`'s view.
fn incarnation_of(observer: &TestNode, id: &str) -> Option<u64> {
    observer
        .node
        .members()
        .into_iter()
        .find(|m| m.id.as_str() == id)
        .map(|m| m.incarnation)
}

/// Waits until `observer` sees member `id` under an incarnation other than `before`.
async fn wait_for_registration_again(observer: &TestNode, id: &str, before: Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while incarnation_of(observer, id).is_none_or(|i| Some(i) == before) {
        assert!(Instant::now() < deadline, "{id} did not register again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn disagreements(x: &[String], y: &[String]) -> usize {
    x.iter().zip(y).filter(|(a, b)| a != b).count()
}

/// An `lcache-node` process, SIGKILLed on drop if still running.
struct NodeProcess(Child);

impl NodeProcess {
    fn start(etcd: &EtcdServer, id: &str, cluster: &str, ttl: &str) -> NodeProcess {
        let child = Command::new(NODE_BIN)
            .args(["--listen", "127.0.0.1:0", "--node-id", id])
            .args(["--discovery", "etcd", "--etcd-endpoints", &etcd.endpoint()])
            .args(["--cluster", cluster, "--etcd-lease-ttl", ttl])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        NodeProcess(child)
    }

    fn kill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL: no chance to revoke the lease
        self.0.wait().unwrap();
    }

    async fn terminate(&mut self) -> Option<i32> {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "lcache-node ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_through_etcd_and_route_every_key_to_one_owner() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let config = || etcd_config(&etcd, "three", SHORT_TTL);
    let a = TestNode::start("a", config()).await;
    let b = TestNode::start("b", config()).await;
    let joining = Instant::now();
    let c = TestNode::start("c", config()).await;
    let joined = joining.elapsed();
    let visible = converge(
        &[&a, &b, &c],
        &set(&["a", "b", "c"]),
        Duration::from_secs(5),
    )
    .await;
    eprintln!(
        "MEASURED join: Node::start took {joined:?}; visible in every view {:?} after start began",
        joined + visible
    );

    let keys = keys(5_000);
    let reference = owners(&a, &keys);
    assert_eq!(disagreements(&owners(&b, &keys), &reference), 0);
    assert_eq!(disagreements(&owners(&c, &keys), &reference), 0);
    let distinct: BTreeSet<_> = reference.iter().cloned().collect();
    assert_eq!(distinct, set(&["a", "b", "c"]), "every node owns some keys");

    // Requests through any node reach the owner and agree.
    for node in [&a, &b, &c] {
        let client = CacheClient::connect(&node.addr, ClientConfig::default())
            .await
            .unwrap();
        for key in keys.iter().take(30) {
            let got = client.get(DEFAULT_GROUP, key.clone()).await.unwrap();
            assert_eq!(got.unwrap().value, format!("loaded:{key}").as_bytes());
        }
    }
    let loads: u64 = [&a, &b, &c]
        .iter()
        .flat_map(|n| n.node.stats().groups)
        .map(|g| g.counters.loads)
        .sum();
    assert_eq!(loads, 30, "each key loaded once, on its owner");

    for node in [a, b, c] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leaves_within_the_ttl_and_a_stopped_one_at_once() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let config = || etcd_config(&etcd, "procs", SHORT_TTL);
    let a = TestNode::start("a", config()).await;
    let b = TestNode::start("b", config()).await;
    converge(&[&a, &b], &set(&["a", "b"]), Duration::from_secs(5)).await;

    // SIGKILL: the lease (2 s) is never revoked and must expire.
    let spawned = Instant::now();
    let mut killed = NodeProcess::start(&etcd, "killed", "procs", "2s");
    let all = set(&["a", "b", "killed"]);
    let visible = converge(&[&a, &b], &all, Duration::from_secs(30)).await;
    eprintln!("MEASURED join of an lcache-node process: in every view {visible:?} after spawn (includes process start)");
    let _ = spawned;
    let kill_at = Instant::now();
    killed.kill();
    let gone = converge(&[&a, &b], &set(&["a", "b"]), SHORT_TTL + MARGIN).await;
    eprintln!(
        "MEASURED kill detection: SIGKILLed node out of every view {:?} after the kill (TTL {SHORT_TTL:?})",
        kill_at.elapsed().max(gone)
    );

    // SIGTERM: graceful shutdown revokes a 10 s lease, so peers drop it at once.
    let mut stopped = NodeProcess::start(&etcd, "stopped", "procs", "10s");
    converge(
        &[&a, &b],
        &set(&["a", "b", "stopped"]),
        Duration::from_secs(30),
    )
    .await;
    let term_at = Instant::now();
    assert_eq!(stopped.terminate().await, Some(0));
    let gone = converge(&[&a, &b], &set(&["a", "b"]), Duration::from_secs(2)).await;
    eprintln!(
        "MEASURED graceful stop: SIGTERMed node out of every view {:?} after the signal (TTL 10s)",
        term_at.elapsed().max(gone)
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_node_stopped_gracefully_leaves_at_once_and_a_dropped_one_at_ttl() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let long = || etcd_config(&etcd, "inproc", Duration::from_secs(10));
    let a = TestNode::start("a", long()).await;
    let b = TestNode::start("b", long()).await;
    let c = TestNode::start("c", etcd_config(&etcd, "inproc", SHORT_TTL)).await;
    converge(
        &[&a, &b, &c],
        &set(&["a", "b", "c"]),
        Duration::from_secs(5),
    )
    .await;

    let left = Instant::now();
    b.shutdown().await;
    converge(&[&a, &c], &set(&["a", "c"]), Duration::from_secs(1)).await;
    eprintln!(
        "MEASURED graceful leave (in-process): out of every view {:?} after shutdown began",
        left.elapsed()
    );

    // A crash in-process: the node and its discovery are dropped without leaving.
    let crashed = Instant::now();
    let TestNode { node, server, .. } = c;
    server.abort();
    drop(node);
    converge(&[&a], &set(&["a"]), SHORT_TTL + MARGIN).await;
    eprintln!(
        "MEASURED crash (in-process drop): out of the view {:?} after the drop (TTL {SHORT_TTL:?})",
        crashed.elapsed()
    );
    a.shutdown().await;
}

/// A node whose lease was lost (revoked here, as etcd does once a node was cut off past its TTL)
/// registers again, but first drops everything it held: its peers may have taken over its keys
/// and acknowledged writes to them meanwhile (issue "Writes are never undone", point 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_drops_its_data_before_registering_again() {
    use lcache_discovery::etcd::etcd_client::Client;
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let config = || etcd_config(&etcd, "fencing", Duration::from_secs(10));
    let a = TestNode::start("a", config()).await;
    let b = TestNode::start("b", config()).await;
    converge(&[&a, &b], &set(&["a", "b"]), Duration::from_secs(5)).await;
    let key = key_owned_by(&a, "a");
    let through_b = CacheClient::connect(&b.addr, ClientConfig::default())
        .await
        .unwrap();
    through_b
        .set(DEFAULT_GROUP, key.clone(), "before", None)
        .await
        .unwrap();
    let before = incarnation_of(&b, "a");

    // Revoke a's lease behind its back.
    let mut raw = Client::connect([etcd.endpoint()], None).await.unwrap();
    let member_key = config().member_key(&"a".into()).unwrap();
    let listed = raw.get(member_key, None).await.unwrap();
    let lease = listed.kvs().first().map(|kv| kv.lease()).unwrap();
    raw.lease_revoke(lease).await.unwrap();

    // a notices, fences, registers again under a new incarnation, and b routes to it again.
    wait_for_registration_again(&b, "a", before).await;
    assert!(a.node.stats().groups[0].counters.fenced >= 1, "a fenced");
    let got = through_b
        .get(DEFAULT_GROUP, key.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.value,
        format!("loaded:{key}").as_bytes(),
        "a served what it held before its lease was lost"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A node cut off from etcd past its lease keeps serving in its old view and may take writes as
/// the owner; none of that is served once it is registered again. Two fences guarantee it: the
/// lease task's, raised before every registration attempt, and the view's, raised when the node
/// sees its own registration come back under a new incarnation. This test holds with either (it
/// also passes with the lease task fencing only once, before its first attempt); the per-attempt
/// fence is what closes the window between the put and the watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_kept_while_it_retried_registering_is_dropped_before_it_registers() {
    let Some(mut etcd) = EtcdServer::start().await else {
        return;
    };
    let base = etcd_config(&etcd, "retrying", SHORT_TTL);
    let config = || base.clone();
    let a = TestNode::start("a", config()).await;
    let b = TestNode::start("b", config()).await;
    converge(&[&a, &b], &set(&["a", "b"]), Duration::from_secs(5)).await;
    let key = key_owned_by(&a, "a");
    let through_a = CacheClient::connect(&a.addr, ClientConfig::default())
        .await
        .unwrap();
    let fenced = || a.node.stats().groups[0].counters.fenced;
    let before = incarnation_of(&b, "a");

    // etcd goes away for longer than the lease: a fences and starts retrying its registration.
    etcd.stop();
    let deadline = Instant::now() + SHORT_TTL + 3 * MARGIN;
    while fenced() == 0 {
        assert!(
            Instant::now() < deadline,
            "a did not fence while etcd was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Between two attempts a still serves in its old view, as the owner: it keeps this write.
    through_a
        .set(DEFAULT_GROUP, key.clone(), "during", None)
        .await
        .unwrap();
    let got = through_a.get(DEFAULT_GROUP, key.clone()).await.unwrap();
    assert_eq!(got.map(|f| f.value), Some("during".into()));
    let after_write = fenced();

    // An attempt with etcd down fails at once (connection refused), so the one that works
    // begins after the write.
    etcd.restart().await;
    wait_for_registration_again(&b, "a", before).await;
    // The write a took during the gap was dropped before the attempt that worked: a loads anew.
    let got = through_a
        .get(DEFAULT_GROUP, key.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.value,
        format!("loaded:{key}").as_bytes(),
        "a served a write it kept while it was out of the membership"
    );
    assert!(
        fenced() > after_write,
        "a fenced again before the attempt that worked"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_serving_through_an_etcd_restart_and_are_registered_again() {
    let Some(mut etcd) = EtcdServer::start().await else {
        return;
    };
    let base = etcd_config(&etcd, "outage", SHORT_TTL);
    let config = || base.clone();
    let nodes = [
        TestNode::start("a", config()).await,
        TestNode::start("b", config()).await,
        TestNode::start("c", config()).await,
    ];
    let all = set(&["a", "b", "c"]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    converge(&refs, &all, Duration::from_secs(5)).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(
            CacheClient::connect(&node.addr, ClientConfig::default())
                .await
                .unwrap(),
        );
    }

    // Requests through every node, all along.
    let (stop_load, mut load_stopped) = oneshot::channel::<()>();
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u64, Vec::new());
        for i in 0u64.. {
            if load_stopped.try_recv().is_ok() {
                break;
            }
            let key = format!("k{}", i % 200);
            let client = &clients[(i % 3) as usize];
            match client.get(DEFAULT_GROUP, key.clone()).await {
                Ok(Some(f)) if f.value == format!("loaded:{key}").as_bytes() => ok += 1,
                other => failed.push(format!("{key}: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.stop();
    // Longer than two lease TTLs: the nodes keep their last view and keep answering.
    let outage = Instant::now();
    while outage.elapsed() < 2 * SHORT_TTL + Duration::from_millis(500) {
        for node in &nodes {
            assert_eq!(node.ids(), all, "the last view is kept while etcd is down");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.restart().await;
    let restarted = Instant::now();

    // Registered again: a newcomer's listing shows all three (plus itself), and views agree.
    let observer = TestNode::start("observer", config()).await;
    let mut with_observer = all.clone();
    with_observer.insert("observer".into());
    let mut refs: Vec<&TestNode> = nodes.iter().collect();
    refs.push(&observer);
    converge(&refs, &with_observer, Duration::from_secs(10)).await;
    eprintln!(
        "MEASURED etcd restart: all nodes registered and views converged {:?} after etcd was back",
        restarted.elapsed()
    );
    // And the registrations stay alive past a TTL (the keepalive works against the new etcd).
    tokio::time::sleep(SHORT_TTL + MARGIN).await;
    converge(&refs, &with_observer, Duration::from_secs(1)).await;

    let _ = stop_load.send(());
    let (ok, failed) = load.await.unwrap();
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert!(ok > 100, "only {ok} requests ran");
    eprintln!("during the etcd outage and restart: {ok} requests answered, 0 failed");
    observer.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_takes_about_a_quarter_of_the_keys_and_nothing_else_moves() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let config = || etcd_config(&etcd, "rebalance", SHORT_TTL);
    let a = TestNode::start("a", config()).await;
    let b = TestNode::start("b", config()).await;
    let c = TestNode::start("c", config()).await;
    converge(
        &[&a, &b, &c],
        &set(&["a", "b", "c"]),
        Duration::from_secs(5),
    )
    .await;
    let keys = keys(20_000);
    let before = owners(&a, &keys);

    let d = TestNode::start("d", config()).await;
    converge(
        &[&a, &b, &c, &d],
        &set(&["a", "b", "c", "d"]),
        Duration::from_secs(5),
    )
    .await;
    let after = owners(&a, &keys);
    for node in [&b, &c, &d] {
        let differ = disagreements(&owners(node, &keys), &after);
        assert_eq!(differ, 0, "all nodes agree after the join");
    }
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        if old != new {
            moved += 1;
            assert_eq!(new, "d", "a key only ever moves to the new node");
        }
    }
    let fraction = f64::from(moved) / keys.len() as f64;
    eprintln!("MEASURED rebalance: a 4th node took {fraction:.3} of the keys (ideal 0.25)");
    assert!((0.18..=0.32).contains(&fraction), "moved {fraction}");
    for node in [a, b, c, d] {
        node.shutdown().await;
    }
}

#[test]
fn etcd_mode_needs_a_cluster_name() {
    let out = Command::new(NODE_BIN)
        .args(["--listen", "127.0.0.1:0", "--discovery", "etcd"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cluster"), "{stderr}");
}
