//! Embedding a node in an application: [`NodeBuilder`] starts a node in-process (groups with
//! their loaders, static peers, the gRPC server in the background so peers can reach it), and
//! [`RunningNode`] hands out the in-process [`Group`] handles the application serves its own
//! requests through, without a gRPC hop for the local call.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use lcache_node::{loader_fn, Loaded, NodeBuilder};
//!
//! let node = NodeBuilder::new("app-1")
//!     .listen("127.0.0.1:7001")
//!     .peers("app-1=127.0.0.1:7001,app-2=127.0.0.1:7002")?
//!     .group("users", 64 << 20, loader_fn(|key| async move {
//!         // Read the application's own data source here.
//!         Ok(Some(Loaded::new(format!("user {}", String::from_utf8_lossy(&key)))))
//!     }))
//!     .start()
//!     .await?;
//! let users = node.group("users").expect("configured above");
//! let alice = users.get("alice").await?;
//! node.shutdown().await?;
//! # let _ = alice; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lcache_core::member::{Member, MemberId};
use lcache_discovery::{parse_peers, DiscoveryError, StaticDiscovery};
use lcache_transport::{ClientConfig, GrpcTransport, ServeError, ServerConfig, TlsConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{GroupConfig, NodeConfig};
use crate::error::StartError;
use crate::loader::Loader;
use crate::metrics::Metrics;
use crate::node::{Group, Node, NodeProbe, ShutdownReport};

/// Why [`NodeBuilder::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The listen address is not an `IP:PORT`.
    #[error("listen address {addr:?} is not IP:PORT: {reason}")]
    InvalidListen {
        /// The address given.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The listen address is a wildcard and no advertised address was given.
    #[error("listening on the wildcard address {0}: give .advertise(HOST:PORT) for peers")]
    NoAdvertise(SocketAddr),
    /// The node could not start (invalid group settings, discovery failed).
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Builds and starts a node inside an application; see the [module docs](self).
///
/// Defaults: listens on `127.0.0.1:0` (a free port, advertised as bound), no peers, the
/// `default` group if no group is added, plain text, the defaults of [`NodeConfig`].
#[derive(Debug)]
pub struct NodeBuilder {
    id: MemberId,
    listen: Listen,
    advertise: Option<String>,
    peers: Vec<Member>,
    groups: Vec<GroupConfig>,
    tls: Option<TlsConfig>,
    configure: Vec<ConfigEdit>,
}

/// Where the node listens.
#[derive(Debug)]
enum Listen {
    Addr(String),
    Bound(std::net::TcpListener),
}

/// A change to the [`NodeConfig`] the builder makes.
struct ConfigEdit(Box<dyn FnOnce(&mut NodeConfig) + Send>);

impl std::fmt::Debug for ConfigEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigEdit")
    }
}

impl NodeBuilder {
    /// A node called `id` (unique in its cluster).
    pub fn new(id: impl Into<MemberId>) -> Self {
        NodeBuilder {
            id: id.into(),
            listen: Listen::Addr("127.0.0.1:0".to_owned()),
            advertise: None,
            peers: Vec::new(),
            groups: Vec::new(),
            tls: None,
            configure: Vec::new(),
        }
    }

    /// Serve peers and clients on `addr` (`IP:PORT`; port 0 picks a free one).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Listen::Addr(addr.into());
        self
    }

    /// Serve on a listener the application bound itself (e.g. to learn its port first).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listen = Listen::Bound(listener);
        self
    }

    /// The address peers dial to reach this node (default: the bound listen address).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// One static peer (this node may be listed too; it is replaced by itself).
    pub fn peer(mut self, id: impl Into<MemberId>, addr: impl Into<String>) -> Self {
        self.peers.push(Member::new(id, addr, 0));
        self
    }

    /// Static peers as `ID=HOST:PORT,...` (the `--peers` syntax of `lcache-node`).
    pub fn peers(mut self, list: &str) -> Result<Self, DiscoveryError> {
        self.peers.extend(parse_peers(list)?);
        Ok(self)
    }

    /// A group called `name` holding up to `budget_bytes` of values `loader` produces on a
    /// miss (groupcache's `NewGroup(name, cacheBytes, getter)`); other settings at their
    /// defaults ([`GroupConfig::new`]).
    pub fn group(self, name: impl Into<String>, budget_bytes: u64, loader: impl Loader) -> Self {
        self.group_config(
            GroupConfig::new(name)
                .with_budget(budget_bytes)
                .with_loader(loader),
        )
    }

    /// A group with every setting chosen by the caller.
    pub fn group_config(mut self, group: GroupConfig) -> Self {
        self.groups.push(group);
        self
    }

    /// Mutual TLS for the server and the calls to peers (see [`lcache_transport::tls`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Adjusts the rest of the node's settings (limits, timeouts, ...).
    pub fn configure(mut self, edit: impl FnOnce(&mut NodeConfig) + Send + 'static) -> Self {
        self.configure.push(ConfigEdit(Box::new(edit)));
        self
    }

    /// Binds the listener, starts the node (joining its static peers) and serves gRPC in the
    /// background until [`RunningNode::shutdown`] (or until the [`RunningNode`] is dropped).
    pub async fn start(self) -> Result<RunningNode, BuildError> {
        let listener = self.bind().await?;
        let bound = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: self.listen_text(),
            source,
        })?;
        if self.tls.is_none() && !bound.ip().is_loopback() {
            tracing::warn!(addr = %bound,
                "serving plain text on a non-loopback address: give .tls(..) for mutual TLS");
        }
        let advertise = match self.advertise {
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => return Err(BuildError::NoAdvertise(bound)),
            None => bound.to_string(),
        };
        let mut config = NodeConfig::new(self.id, advertise);
        if !self.groups.is_empty() {
            config.groups = self.groups;
        }
        for edit in self.configure {
            (edit.0)(&mut config);
        }
        let client_config = ClientConfig {
            request_timeout: config.request_timeout,
            connect_timeout: config.peer_timeout,
            ..ClientConfig::default()
        };
        let transport = match &self.tls {
            Some(tls) => GrpcTransport::with_tls(client_config, tls.clone()),
            None => GrpcTransport::new(client_config),
        };
        let server_config = ServerConfig {
            max_request_timeout: config.request_timeout.max(config.forward_timeout()),
            tls: self.tls,
            ..ServerConfig::default()
        };
        let group_names: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
        let node = Node::start(config, transport, StaticDiscovery::new(self.peers)).await?;
        let groups = group_names
            .iter()
            .filter_map(|name| node.group(name).map(|g| (name.clone(), g)))
            .collect();
        let (member, probe, metrics) = (node.member().clone(), node.probe(), node.metrics());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::run(
            node,
            server_config,
            listener,
            async move {
                // A dropped sender (the RunningNode dropped) shuts down too.
                let _ = stopped.await;
            },
        ));
        Ok(RunningNode {
            member,
            local_addr: bound,
            groups,
            probe,
            metrics,
            stop: Some(stop),
            server: Some(server),
        })
    }

    fn listen_text(&self) -> String {
        match &self.listen {
            Listen::Addr(addr) => addr.clone(),
            Listen::Bound(listener) => listener
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string()),
        }
    }

    async fn bind(&self) -> Result<tokio::net::TcpListener, BuildError> {
        let bind_error = |source| BuildError::Bind {
            addr: self.listen_text(),
            source,
        };
        match &self.listen {
            Listen::Addr(text) => {
                let addr: SocketAddr = text.parse().map_err(|e: std::net::AddrParseError| {
                    BuildError::InvalidListen {
                        addr: text.clone(),
                        reason: e.to_string(),
                    }
                })?;
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(bind_error)
            }
            Listen::Bound(listener) => {
                let listener = listener.try_clone().map_err(bind_error)?;
                listener.set_nonblocking(true).map_err(bind_error)?;
                tokio::net::TcpListener::from_std(listener).map_err(bind_error)
            }
        }
    }
}

/// A node started by [`NodeBuilder::start`], serving in the background.
///
/// Dropping it shuts the node down gracefully in the background; [`RunningNode::shutdown`]
/// does the same and waits for it.
#[derive(Debug)]
pub struct RunningNode {
    member: Member,
    local_addr: SocketAddr,
    groups: BTreeMap<String, Group<GrpcTransport>>,
    probe: NodeProbe<GrpcTransport>,
    metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<ShutdownReport, ServeError>>>,
}

impl RunningNode {
    /// The in-process handle on group `name`: its `get`, `set` and `delete` run on this node
    /// (going to the key's owner only when another node owns it).
    pub fn group(&self, name: &str) -> Option<Group<GrpcTransport>> {
        self.groups.get(name).cloned()
    }

    /// This node as the cluster sees it.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A read-only view of the node (membership, routing, stats).
    pub fn probe(&self) -> NodeProbe<GrpcTransport> {
        self.probe.clone()
    }

    /// The node's Prometheus metrics (serve them with [`crate::metrics::serve`]).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Leaves the cluster gracefully (see [`Node::shutdown`]) and stops serving. A panic of
    /// the server task is propagated; a server task cancelled by its runtime shutting down
    /// reports nothing done.
    pub async fn shutdown(mut self) -> Result<ShutdownReport, ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let not_done = ShutdownReport {
            deregistered: false,
            drained: false,
        };
        match self.server.take() {
            Some(server) => match server.await {
                Ok(served) => served,
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(_) => Ok(not_done),
            },
            None => Ok(not_done),
        }
    }
}
