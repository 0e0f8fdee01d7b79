//! A node host: the real [`Node`] runtime serving the real gRPC server on a turmoil listener,
//! peering through the real [`GrpcTransport`] over turmoil, discovering through
//! [`SimDiscovery`]. The driver controls it through a [`NodeCtl`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lcache_core::limits::Limits;
use lcache_core::member::Member;
use lcache_core::ring::RingConfig;
use lcache_discovery::Discovery;
use lcache_node::server::run_with_incoming;
use lcache_node::{GroupConfig, HotCacheConfig, Loader, Node, NodeConfig, NodeProbe};
use lcache_transport::{ClientConfig, GroupStats, GrpcTransport, ServerConfig, Transport};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::discovery::SimDiscovery;
use crate::doubles::{DropDeletes, NoDepartures, StretchTtl, WrongKeyLoader};
use crate::history::{Event, History};
use crate::loader::SimLoader;
use crate::options::{Mutation, Options};
use crate::rng::component_rng;

/// The group every simulated node hosts.
pub const GROUP: &str = "sim";
/// The port nodes serve on.
pub const PORT: u16 = 9000;
/// Longest key and value the simulated nodes accept (small, so small budgets still shard).
pub const LIMITS: Limits = Limits {
    max_key_bytes: 32,
    max_value_bytes: 128,
};
/// How long the simulated gRPC clients remember a stream they reset. h2 keeps this on the wall
/// clock; a day outlasts any run, so whether a late answer meets a remembered stream (dropped) or
/// a forgotten one (answered with `RST_STREAM`, one more message drawing turmoil's rng) depends
/// only on the simulation, never on how fast the machine runs it.
pub const RESET_STREAM_MEMORY: Duration = Duration::from_secs(86_400);
/// How often a node's monitor samples its stats and view.
const MONITOR_INTERVAL: Duration = Duration::from_millis(50);
/// Every how many samples the stats are recorded even when nothing is wrong.
const STATS_EVERY: u64 = 20;

/// What the driver and the checkers may observe of a running node.
pub trait Probe: Send + Sync + fmt::Debug {
    /// Members the node routes to.
    fn members(&self) -> Vec<Member>;
    /// The member the node believes owns `key`.
    fn owner(&self, key: &[u8]) -> Member;
    /// The stats of the simulated group.
    fn group_stats(&self) -> GroupStats;
    /// Bytes held and budget of each store of the simulated group (main, then hot cache).
    fn store_usage(&self) -> Vec<(u64, u64)>;
}

impl<T: Transport> Probe for NodeProbe<T> {
    fn members(&self) -> Vec<Member> {
        NodeProbe::members(self)
    }

    fn owner(&self, key: &[u8]) -> Member {
        NodeProbe::owner(self, key)
    }

    fn group_stats(&self) -> GroupStats {
        self.stats().groups.into_iter().next().unwrap_or_default()
    }

    fn store_usage(&self) -> Vec<(u64, u64)> {
        self.stats()
            .groups
            .into_iter()
            .next()
            .map(|g| {
                g.tiers
                    .iter()
                    .map(|t| (t.store.bytes, t.budget_bytes))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A running incarnation of a node.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its incarnation.
    pub inc: u64,
    /// A probe on it.
    pub probe: Arc<dyn Probe>,
}

/// The driver's handle on a node host.
#[derive(Debug)]
pub struct NodeCtl {
    name: String,
    desired_up: watch::Sender<bool>,
    incarnation: AtomicU64,
    running: Mutex<Option<Running>>,
}

impl NodeCtl {
    /// A node that starts serving as soon as its host runs if `up`.
    pub fn new(name: &str, up: bool) -> Arc<Self> {
        Arc::new(NodeCtl {
            name: name.to_owned(),
            desired_up: watch::Sender::new(up),
            incarnation: AtomicU64::new(0),
            running: Mutex::new(None),
        })
    }

    /// Node id (and host name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the node to serve (`true`) or to leave gracefully (`false`).
    pub fn set_up(&self, up: bool) {
        self.desired_up.send_replace(up);
    }

    /// Whether the node is asked to serve.
    pub fn desired_up(&self) -> bool {
        *self.desired_up.borrow()
    }

    /// The latest incarnation started (0 before the first).
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Relaxed)
    }

    /// The serving incarnation, if any.
    pub fn running(&self) -> Option<Running> {
        self.running.lock().clone()
    }

    /// Forgets the serving incarnation (the driver calls it when it crashes the host).
    pub fn clear_running(&self) {
        self.running.lock().take();
    }
}

/// Everything a node host's software needs.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The driver's handle.
    pub ctl: Arc<NodeCtl>,
    /// The run's options.
    pub options: Arc<Options>,
    /// The run's history.
    pub history: History,
}

/// The software of a node host: serve one incarnation whenever asked to be up, forever. A
/// crash drops it; a bounce starts it again (the next start is a new incarnation).
pub async fn node_software(ctx: NodeContext) -> turmoil::Result {
    let mut desired = ctx.ctl.desired_up.subscribe();
    loop {
        desired.wait_for(|up| *up).await?;
        let inc = ctx.ctl.incarnation.fetch_add(1, Ordering::Relaxed) + 1;
        serve_incarnation(&ctx, inc, desired.clone()).await?;
    }
}

/// Peer client settings: short keepalives, so a connection broken by a partition (turmoil's
/// TCP does not retransmit) is noticed within about a second while a call is waiting on it.
pub fn peer_client_config(options: &Options) -> ClientConfig {
    ClientConfig {
        connect_timeout: options.connect_timeout,
        request_timeout: options.call_timeout,
        http2_keepalive_interval: Some(Duration::from_millis(400)),
        http2_keepalive_timeout: Duration::from_millis(400),
        http2_reset_stream_duration: RESET_STREAM_MEMORY,
        ..ClientConfig::default()
    }
}

fn node_config(ctx: &NodeContext, inc: u64, loader: Arc<dyn Loader>) -> NodeConfig {
    let o = &ctx.options;
    let name = ctx.ctl.name();
    let mut group = GroupConfig::new(GROUP).with_budget(o.budget_bytes);
    group.shards = 4;
    group.default_ttl = o.default_ttl;
    group.hot = o.hot.map(|(budget_bytes, lifetime)| HotCacheConfig {
        budget_bytes,
        lifetime,
    });
    group.loader = Some(loader);
    let mut config = NodeConfig::new(name, format!("{name}:{PORT}")).with_groups(vec![group]);
    config.incarnation = inc;
    // The stores' hashers are seeded from the run's seed, never the OS: replays stay exact.
    config.hash_seed = Some(crate::rng::component_seed(
        o.seed,
        &format!("hash/{name}/{inc}"),
    ));
    config.limits = LIMITS;
    config.request_timeout = o.call_timeout + Duration::from_secs(1);
    config.peer_timeout = o.peer_timeout;
    config.load_timeout = o.load_timeout;
    config.shutdown_grace = Duration::from_secs(2);
    config.sweep_interval = Duration::from_millis(200);
    config.ring = RingConfig { vnodes: 64 };
    config
}

fn loader(ctx: &NodeContext, inc: u64) -> Arc<dyn Loader> {
    let o = &ctx.options;
    let name = ctx.ctl.name();
    let rng = component_rng(o.seed, &format!("loader/{name}/{inc}"));
    let sim = SimLoader::new(name, inc, o.loader, rng, ctx.history.clone());
    match o.mutation {
        Mutation::WrongKeyLoader => Arc::new(WrongKeyLoader {
            inner: sim,
            keys: o.keys,
        }),
        Mutation::StretchTtl => Arc::new(StretchTtl(sim)),
        _ => Arc::new(sim),
    }
}

async fn serve_incarnation(
    ctx: &NodeContext,
    inc: u64,
    desired: watch::Receiver<bool>,
) -> turmoil::Result {
    let config = node_config(ctx, inc, loader(ctx, inc));
    let transport =
        GrpcTransport::with_connector(peer_client_config(&ctx.options), crate::net::connector());
    let discovery = SimDiscovery::new(ctx.options.lease_ttl);
    match ctx.options.mutation {
        Mutation::DropDeletes => {
            serve(ctx, inc, config, DropDeletes(transport), discovery, desired).await
        }
        Mutation::NoDepartures => {
            serve(
                ctx,
                inc,
                config,
                transport,
                NoDepartures(discovery),
                desired,
            )
            .await
        }
        _ => serve(ctx, inc, config, transport, discovery, desired).await,
    }
}

async fn serve<T: Transport, D: Discovery>(
    ctx: &NodeContext,
    inc: u64,
    config: NodeConfig,
    transport: T,
    discovery: D,
    mut desired: watch::Receiver<bool>,
) -> turmoil::Result {
    let name = ctx.ctl.name().to_owned();
    let node = Node::start(config, transport, discovery).await?;
    let probe: Arc<dyn Probe> = Arc::new(node.probe());
    *ctx.ctl.running.lock() = Some(Running {
        inc,
        probe: probe.clone(),
    });
    ctx.history.record(Event::NodeStarted {
        node: name.clone(),
        inc,
    });
    let stop_monitor = CancellationToken::new();
    tokio::spawn(monitor(
        name.clone(),
        inc,
        probe,
        ctx.history.clone(),
        stop_monitor.clone(),
    ));
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let shutdown = async move {
        let _ = desired.wait_for(|up| !*up).await;
    };
    let served = run_with_incoming(node, server_config(), incoming, shutdown).await;
    stop_monitor.cancel();
    ctx.ctl.clear_running();
    let how = match &served {
        Ok(report) => format!("{report:?}"),
        Err(err) => format!("server error: {err}"),
    };
    ctx.history.record(Event::NodeStopped {
        node: name,
        inc,
        how,
    });
    served?;
    Ok(())
}

fn server_config() -> ServerConfig {
    ServerConfig {
        http2_keepalive_interval: Some(Duration::from_secs(1)),
        http2_keepalive_timeout: Some(Duration::from_secs(1)),
        ..ServerConfig::default()
    }
}

/// Samples the node's stats and view: records the view whenever it changes, the stats every
/// [`STATS_EVERY`] samples and at once whenever a store holds more bytes than its budget (S2).
async fn monitor(
    node: String,
    inc: u64,
    probe: Arc<dyn Probe>,
    history: History,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(MONITOR_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_view = Vec::new();
    let mut samples = 0u64;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let view: Vec<(String, u64)> = probe
            .members()
            .into_iter()
            .map(|m| (m.id.to_string(), m.incarnation))
            .collect();
        if view != last_view {
            history.record(Event::View {
                node: node.clone(),
                inc,
                members: view.clone(),
            });
            last_view = view;
        }
        let stats = probe.group_stats();
        let stores = probe.store_usage();
        let over = stores.iter().any(|(bytes, budget)| bytes > budget);
        if over || samples.is_multiple_of(STATS_EVERY) {
            history.record(Event::Stats {
                node: node.clone(),
                inc,
                bytes: stats.bytes(),
                budget: stats.budget_bytes(),
                stores,
                evictions: stats.evictions(),
                local_fallbacks: stats.counters.fallbacks,
                peer_errors: stats.counters.fetch_errors,
            });
        }
        samples += 1;
    }
}
