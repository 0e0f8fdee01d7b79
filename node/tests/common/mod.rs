//! A real cluster on loopback for the node's integration tests: real tonic servers, real
//! `GrpcTransport`, static discovery or a discovery the test drives ([`ManualDiscovery`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
mod manual;
pub mod origin;
pub mod process;

pub use manual::ManualDiscovery;

use bytes::Bytes;
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::RingChange;
use lcache_core::router::Router;
use lcache_discovery::{Discovery, StaticDiscovery};
use lcache_node::{
    loader_fn, GroupConfig, LoadError, Loaded, Loader, Node, NodeConfig, NodeProbe, ShutdownReport,
    DEFAULT_GROUP,
};
use lcache_transport::{
    CacheClient, ClientConfig, GrpcTransport, NodeStats, ServeError, ServerConfig,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One node of a test cluster.
pub struct TestNode {
    pub member: Member,
    pub client: CacheClient,
    /// A read-only handle on the node (stats, entries, routing).
    pub probe: NodeProbe<GrpcTransport>,
    /// The node's Prometheus metrics.
    pub metrics: lcache_node::metrics::Metrics,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<ShutdownReport, ServeError>>>,
}

/// Several nodes that know each other through static discovery.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
}

impl Cluster {
    /// Start one node per id; `configure` adjusts each node's config (e.g. adds a loader).
    pub async fn start(ids: &[&str], configure: impl Fn(NodeConfig) -> NodeConfig) -> Cluster {
        Self::start_with(ids, configure, |members, _| {
            StaticDiscovery::new(members.to_vec())
        })
        .await
    }

    /// Start one node per id, each with a [`ManualDiscovery`] that first reports every node;
    /// returns the cluster and each node's discovery, for the test to drive membership.
    pub async fn start_manual(
        ids: &[&str],
        configure: impl Fn(NodeConfig) -> NodeConfig,
    ) -> (Cluster, Vec<ManualDiscovery>) {
        let discoveries = std::sync::Mutex::new(Vec::new());
        let cluster = Self::start_with(ids, configure, |members, _| {
            let d = ManualDiscovery::new(members.to_vec());
            discoveries.lock().unwrap().push(d.clone());
            d
        })
        .await;
        (cluster, discoveries.into_inner().unwrap())
    }

    /// Start one node per id with the discovery `discovery(members, i)` makes for node `i`.
    pub async fn start_with<D: Discovery>(
        ids: &[&str],
        configure: impl Fn(NodeConfig) -> NodeConfig,
        discovery: impl Fn(&[Member], usize) -> D,
    ) -> Cluster {
        Self::start_secured(ids, configure, discovery, None).await
    }

    /// Start one node per id over mutual TLS: node `i` serves and calls its peers with
    /// `tls.nodes[i]`, and each node's test client connects with `tls.client`.
    pub async fn start_tls(
        ids: &[&str],
        configure: impl Fn(NodeConfig) -> NodeConfig,
        tls: &ClusterTls,
    ) -> Cluster {
        Self::start_secured(
            ids,
            configure,
            |members, _| StaticDiscovery::new(members.to_vec()),
            Some(tls),
        )
        .await
    }

    async fn start_secured<D: Discovery>(
        ids: &[&str],
        configure: impl Fn(NodeConfig) -> NodeConfig,
        discovery: impl Fn(&[Member], usize) -> D,
        tls: Option<&ClusterTls>,
    ) -> Cluster {
        let mut listeners = Vec::new();
        let mut members = Vec::new();
        for id in ids {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            members.push(Member::new(MemberId::new(*id), addr, 0));
            listeners.push(listener);
        }
        let mut nodes = Vec::new();
        for (i, (member, listener)) in members.iter().zip(listeners).enumerate() {
            let config = configure(NodeConfig::new(member.id.clone(), member.addr.clone()));
            let transport = match tls {
                Some(tls) => GrpcTransport::with_tls(ClientConfig::default(), tls.nodes[i].clone()),
                None => GrpcTransport::new(ClientConfig::default()),
            };
            let node = Node::start(config, transport, discovery(&members, i))
                .await
                .unwrap();
            let probe = node.probe();
            let metrics = node.metrics();
            let (stop, stopped) = oneshot::channel::<()>();
            let server_config = ServerConfig {
                tls: tls.map(|tls| tls.nodes[i].clone()),
                ..ServerConfig::default()
            };
            let server = tokio::spawn(lcache_node::server::run(
                node,
                server_config,
                listener,
                async move {
                    let _ = stopped.await;
                },
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
            nodes.push(TestNode {
                member: member.clone(),
                client,
                probe,
                metrics,
                stop: Some(stop),
                server: Some(server),
            });
        }
        Cluster { nodes }
    }

    /// Index of the node owning `key` (every node of a static cluster agrees).
    pub fn owner_of(&self, key: &[u8]) -> usize {
        let mut router = Router::new(self.nodes[0].member.clone(), Default::default());
        let others: Vec<_> = self.nodes[1..]
            .iter()
            .map(|n| RingChange::Added(n.member.clone()))
            .collect();
        router.apply(&others);
        let owner = router.owner(key).id.clone();
        self.nodes
            .iter()
            .position(|n| n.member.id == owner)
            .unwrap()
    }

    /// A key owned by node `owner`, made from `prefix`.
    pub fn key_owned_by(&self, owner: usize, prefix: &str) -> String {
        (0..10_000)
            .map(|i| format!("{prefix}-{i}"))
            .find(|k| self.owner_of(k.as_bytes()) == owner)
            .unwrap()
    }

    /// Stop node `i` gracefully and return its report.
    pub async fn stop(&mut self, i: usize) -> ShutdownReport {
        let node = &mut self.nodes[i];
        let _ = node.stop.take().unwrap().send(());
        node.server.take().unwrap().await.unwrap().unwrap()
    }

    /// Stats of the default group on every node still running.
    pub async fn stats(&self) -> Vec<lcache_transport::GroupStats> {
        let mut all = Vec::new();
        for node in self.nodes.iter().filter(|n| n.server.is_some()) {
            let stats: NodeStats = node.client.stats(Some(DEFAULT_GROUP)).await.unwrap();
            all.extend(stats.groups);
        }
        all
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].server.is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// TLS settings of a test cluster: one per node, and the test clients'.
pub struct ClusterTls {
    pub nodes: Vec<lcache_transport::TlsConfig>,
    pub client: lcache_transport::TlsConfig,
}

/// A loader that counts its calls, answers `loaded:<key>` (or `loaded:<key>#<call>` when
/// numbered) and, while its gate is closed, waits.
#[derive(Clone)]
pub struct GatedLoader {
    pub calls: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
    numbered: bool,
}

impl GatedLoader {
    /// A loader and the sender that opens its gate (`send(true)`).
    pub fn new(open: bool) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(open);
        let loader = GatedLoader {
            calls: Arc::new(AtomicUsize::new(0)),
            gate: rx,
            numbered: false,
        };
        (loader, tx)
    }

    /// Like [`GatedLoader::new`], but each value names the call that produced it (1, 2, …).
    pub fn numbered(open: bool) -> (Self, watch::Sender<bool>) {
        let (loader, gate) = Self::new(open);
        (
            GatedLoader {
                numbered: true,
                ..loader
            },
            gate,
        )
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Loader for GatedLoader {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut gate = self.gate.clone();
        gate.wait_for(|open| *open)
            .await
            .map_err(|_| LoadError("gate dropped".into()))?;
        if key.starts_with(b"absent") {
            return Ok(None);
        }
        let key = String::from_utf8_lossy(key);
        Ok(Some(Loaded::new(if self.numbered {
            format!("loaded:{key}#{call}")
        } else {
            format!("loaded:{key}")
        })))
    }
}

/// The default group with `loader`.
pub fn with_loader(config: NodeConfig, loader: impl Loader) -> NodeConfig {
    config.with_groups(vec![GroupConfig::new(DEFAULT_GROUP).with_loader(loader)])
}

/// A loader that always answers `value-of:<key>`.
pub fn echo_loader() -> impl Loader {
    loader_fn(|key: Bytes| async move {
        Ok(Some(Loaded::new(format!(
            "value-of:{}",
            String::from_utf8_lossy(&key)
        ))))
    })
}

/// Poll `condition` every few milliseconds until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One scrape of Prometheus text: every sample by its series (`name{label="value",...}`).
pub struct Scrape {
    samples: std::collections::BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap(),
                };
                (series.to_owned(), value)
            })
            .collect();
        Scrape { samples }
    }

    /// The sample of `name` with exactly `labels` (in the order the exporter writes them).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = if labels.is_empty() {
            name.to_owned()
        } else {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", labels.join(","))
        };
        self.samples.get(&series).copied()
    }

    /// Like [`Scrape::get`], 0 when the series is absent (histograms list only what was seen).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

/// `GET path` over plain HTTP/1.1: the status code, the Content-Type and the body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}
