//! The three-node demo: nodes A, B and C on loopback, each sets its own key and reads the
//! other two through the cluster.

use crate::config::{GroupConfig, NodeConfig, DEFAULT_GROUP};
use crate::loader::{loader_fn, Loaded};
use crate::node::Node;
use lcache_core::member::{Member, MemberId};
use lcache_discovery::StaticDiscovery;
use lcache_transport::{
    CacheClient, ClientConfig, ClientError, GrpcTransport, NodeStats, ServerConfig,
};
use std::fmt::Write as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up a node failed.
    #[error("starting node {node}: {reason}")]
    Start {
        /// Node concerned.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// A client call failed.
    #[error("calling node {node}: {source}")]
    Call {
        /// Node called.
        node: String,
        /// The client's error.
        source: ClientError,
    },
}

/// What one node read for one key during the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Node asked.
    pub node: String,
    /// Key read.
    pub key: String,
    /// Value returned (`None` on a miss).
    pub value: Option<String>,
    /// The node that owns the key.
    pub owner: String,
}

/// Everything the demo observed.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Every cross read, in order.
    pub reads: Vec<Read>,
    /// Stats of each node after the reads.
    pub stats: Vec<NodeStats>,
}

impl DemoReport {
    /// A human-readable account of the run.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for read in &self.reads {
            let _ = writeln!(
                out,
                "node {} get {:<8} -> {:<28} (owner {})",
                read.node,
                read.key,
                read.value.as_deref().unwrap_or("<miss>"),
                read.owner
            );
        }
        for stats in &self.stats {
            for g in &stats.groups {
                let _ = writeln!(
                    out,
                    "stats {} [{}]: hits={} misses={} loads={} fetches={} hot_hits={} entries={} bytes={}",
                    stats.node_id,
                    g.group,
                    g.counters.hits,
                    g.counters.misses,
                    g.counters.loads,
                    g.counters.fetches,
                    g.counters.hot_hits,
                    g.entries(),
                    g.bytes()
                );
            }
        }
        out
    }
}

/// Run three nodes on loopback, have each set `key-<id>` and read the others' keys plus one key
/// only the loader knows, then shut the nodes down.
pub async fn run() -> Result<DemoReport, DemoError> {
    let ids = ["A", "B", "C"];
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for id in ids {
        let start_err = |reason: String| DemoError::Start {
            node: id.to_string(),
            reason,
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| start_err(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| start_err(e.to_string()))?;
        members.push(Member::new(MemberId::new(id), addr.to_string(), 0));
        listeners.push(listener);
    }
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for (member, listener) in members.iter().zip(listeners) {
        let node_id = member.id.to_string();
        let loader = loader_fn(move |key| {
            let node_id = node_id.clone();
            async move {
                let value = format!("loaded {} on {node_id}", String::from_utf8_lossy(&key));
                Ok(Some(Loaded::new(value)))
            }
        });
        let config = NodeConfig::new(member.id.clone(), member.addr.clone())
            .with_groups(vec![GroupConfig::new(DEFAULT_GROUP).with_loader(loader)]);
        let node = Node::start(
            config,
            GrpcTransport::new(ClientConfig::default()),
            StaticDiscovery::new(members.clone()),
        )
        .await
        .map_err(|e| DemoError::Start {
            node: member.id.to_string(),
            reason: e.to_string(),
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        servers.push(tokio::spawn(crate::server::run(
            node,
            ServerConfig::default(),
            listener,
            async move {
                let _ = stopped.await;
            },
        )));
    }
    let report = exercise(&members).await;
    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        let _ = server.await;
    }
    report
}

async fn exercise(members: &[Member]) -> Result<DemoReport, DemoError> {
    let mut clients = Vec::new();
    for member in members {
        let client = CacheClient::connect(&member.addr, ClientConfig::default())
            .await
            .map_err(|source| DemoError::Call {
                node: member.id.to_string(),
                source,
            })?;
        clients.push((member.id.to_string(), client));
    }
    let call_err = |node: &str| {
        let node = node.to_string();
        move |source| DemoError::Call { node, source }
    };
    for (id, client) in &clients {
        client
            .set(
                DEFAULT_GROUP,
                format!("key-{id}"),
                format!("value set by {id}"),
                None,
            )
            .await
            .map_err(call_err(id))?;
    }
    let ring = {
        let mut router = lcache_core::router::Router::new(members[0].clone(), Default::default());
        let changes: Vec<_> = members
            .iter()
            .skip(1)
            .cloned()
            .map(lcache_core::membership::RingChange::Added)
            .collect();
        router.apply(&changes);
        router
    };
    let mut reads = Vec::new();
    for (id, client) in &clients {
        let keys = clients
            .iter()
            .filter(|(other, _)| other != id)
            .map(|(other, _)| format!("key-{other}"))
            .chain(std::iter::once("db-row-42".to_string()));
        for key in keys {
            let value = client
                .get(DEFAULT_GROUP, key.clone())
                .await
                .map_err(call_err(id))?
                .map(|f| String::from_utf8_lossy(&f.value).into_owned());
            reads.push(Read {
                node: id.clone(),
                owner: ring.owner(key.as_bytes()).id.to_string(),
                key,
                value,
            });
        }
    }
    let mut stats = Vec::new();
    for (id, client) in &clients {
        stats.push(client.stats(None).await.map_err(call_err(id))?);
    }
    Ok(DemoReport { reads, stats })
}
