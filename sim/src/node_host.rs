//! A node host: the real [`Node`] runtime serving the real gRPC server on a turmoil listener,
//! peering through the real [`GrpcTransport`] over turmoil (wrapped by [`Recording`], which
//! writes every peer call into the history), discovering through [`SimDiscovery`]. The driver
//! controls it through a [`NodeCtl`]; a monitor task samples what the checkers need (view,
//! stats, an independent recount of the stored bytes, main-store keys the node does not own).
//!
//! Node-facing code, kept small: this file, [`crate::recording`] and [`crate::doubles`] are what
//! moves when the node's API changes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_core::group::Tier;
use lcache_core::limits::Limits;
use lcache_core::member::Member;
use lcache_core::ring::RingConfig;
use lcache_core::store::entry_size;
use lcache_discovery::Discovery;
use lcache_node::server::run_with_incoming;
use lcache_node::{GroupConfig, HotCacheConfig, Loader, Node, NodeConfig, NodeProbe};
use lcache_transport::{ClientConfig, GroupStats, GrpcTransport, ServerConfig, Transport};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buggify::SimBuggify;
use crate::discovery::client::Misdelivery;
use crate::discovery::SimDiscovery;
use crate::doubles::{
    Detour, DropDeletes, FallbackAlways, LazySets, NoDepartures, StaleGets, StretchTtl,
    UndercountBytes, WrongKeyLoader,
};
use crate::history::{Event, History};
use crate::loader::SimLoader;
use crate::options::{Mutation, Options};
use crate::recording::Recording;
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
/// Virtual nodes per member on the simulated nodes' rings (the checkers rebuild the same ring).
pub const RING_VNODES: u32 = 64;
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
    /// Bytes held and budget of each store of the simulated group, in [`Tier::ALL`] order.
    fn store_usage(&self) -> Vec<(u64, u64)>;
    /// Every stored entry of the simulated group: key, value length, the store holding it.
    fn entries(&self) -> Vec<(Bytes, usize, Tier)>;
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

    fn entries(&self) -> Vec<(Bytes, usize, Tier)> {
        NodeProbe::entries(self, GROUP)
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
    watch_stalled: watch::Sender<bool>,
    discovery_cut: watch::Sender<bool>,
    incarnation: AtomicU64,
    running: Mutex<Option<Running>>,
}

impl NodeCtl {
    /// A node that starts serving as soon as its host runs if `up`.
    pub fn new(name: &str, up: bool) -> Arc<Self> {
        Arc::new(NodeCtl {
            name: name.to_owned(),
            desired_up: watch::Sender::new(up),
            watch_stalled: watch::Sender::new(false),
            discovery_cut: watch::Sender::new(false),
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

    /// Holds back (`true`) or lets through (`false`) the discovery events of this node's watch.
    pub fn stall_watch(&self, stalled: bool) {
        self.watch_stalled.send_replace(stalled);
    }

    /// Cuts the node off from discovery only (`true`: no lease renewals, no watch events; it
    /// keeps serving clients and peers), or heals it (`false`). The verifier uses it where it
    /// cannot partition links itself.
    pub fn cut_discovery(&self, cut: bool) {
        self.discovery_cut.send_replace(cut);
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
    config.ring = RingConfig {
        vnodes: RING_VNODES,
    };
    config.max_in_flight = o.max_in_flight;
    config.max_waiters_per_key = o.max_waiters_per_key;
    config.max_loads = o.max_loads;
    if !o.buggify.is_empty() {
        let rng = component_rng(o.seed, &format!("buggify/{name}/{inc}"));
        config.buggify = Some(Arc::new(SimBuggify::new(
            o.buggify.clone(),
            rng,
            ctx.history.clone(),
            name,
            inc,
        )));
    }
    config
}

fn loader(ctx: &NodeContext, inc: u64) -> Arc<dyn Loader> {
    let o = &ctx.options;
    let name = ctx.ctl.name();
    let rng = component_rng(o.seed, &format!("loader/{name}/{inc}"));
    let slow_key_latency = (o.peer_timeout + o.load_timeout) / 2;
    let sim = SimLoader::new(
        name,
        inc,
        o.loader,
        slow_key_latency,
        rng,
        ctx.history.clone(),
    );
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
    let o = &ctx.options;
    let name = ctx.ctl.name();
    let config = node_config(ctx, inc, loader(ctx, inc));
    let grpc = GrpcTransport::with_connector(peer_client_config(o), crate::net::connector());
    let how = Misdelivery {
        chaos: o.chaos,
        rng: component_rng(o.seed, &format!("discovery-chaos/{name}/{inc}")),
        stalled: ctx.ctl.watch_stalled.subscribe(),
        cut: ctx.ctl.discovery_cut.subscribe(),
    };
    let discovery = SimDiscovery::new(o.lease_ttl, how);
    match o.mutation {
        Mutation::DropDeletes => {
            let t = Recording::new(DropDeletes(grpc), name, inc, ctx.history.clone());
            serve(ctx, inc, config, t, discovery, desired).await
        }
        Mutation::NoDepartures => {
            let d = NoDepartures(discovery);
            serve(
                ctx,
                inc,
                config,
                Recording::new(grpc, name, inc, ctx.history.clone()),
                d,
                desired,
            )
            .await
        }
        Mutation::LazySets => {
            let t = Recording::new(LazySets(Arc::new(grpc)), name, inc, ctx.history.clone());
            serve(ctx, inc, config, t, discovery, desired).await
        }
        Mutation::StaleGets => {
            let t = Recording::new(StaleGets::new(grpc), name, inc, ctx.history.clone());
            serve(ctx, inc, config, t, discovery, desired).await
        }
        Mutation::FallbackAlways => {
            let t = Recording::new(
                FallbackAlways::new(grpc, o.seed, name, inc),
                name,
                inc,
                ctx.history.clone(),
            );
            serve(ctx, inc, config, t, discovery, desired).await
        }
        Mutation::Detour => {
            let t = Recording::new(
                Detour::new(grpc, name, o.node_names()),
                name,
                inc,
                ctx.history.clone(),
            );
            serve(ctx, inc, config, t, discovery, desired).await
        }
        _ => {
            serve(
                ctx,
                inc,
                config,
                Recording::new(grpc, name, inc, ctx.history.clone()),
                discovery,
                desired,
            )
            .await
        }
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
    let probe: Arc<dyn Probe> = match ctx.options.mutation {
        Mutation::UndercountBytes => Arc::new(UndercountBytes(node.probe())),
        _ => Arc::new(node.probe()),
    };
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

/// Samples the node's stats and view: records the view whenever it changes, main-store keys the
/// node does not own whenever there are any, and the stats every [`STATS_EVERY`] samples, when
/// the eviction or rejection counters moved, and at once whenever a store holds more bytes than
/// its budget (S2) or its own byte counter disagrees with a recount of its entries.
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
    let mut last_foreign = Vec::new();
    let mut last_counters = (0, 0);
    let mut samples = 0u64;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let members = probe.members();
        let view: Vec<(String, u64)> = members
            .iter()
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
        let entries = probe.entries();
        let mut counted = vec![0u64; Tier::ALL.len()];
        let mut foreign = Vec::new();
        for (key, len, tier) in &entries {
            if let Some(i) = Tier::ALL.iter().position(|t| t == tier) {
                counted[i] += entry_size(key.len(), *len);
            }
            if *tier == Tier::Main && probe.owner(key).id.as_str() != node {
                foreign.push(String::from_utf8_lossy(key).into_owned());
            }
        }
        foreign.sort();
        if !foreign.is_empty() && foreign != last_foreign {
            history.record(Event::ForeignKeys {
                node: node.clone(),
                inc,
                keys: foreign.clone(),
            });
        }
        last_foreign = foreign;
        let stats = probe.group_stats();
        let rejected = stats.counters.overloaded;
        let stores = probe.store_usage();
        counted.truncate(stores.len());
        let over = stores.iter().any(|(bytes, budget)| bytes > budget)
            || stores
                .iter()
                .zip(&counted)
                .any(|((bytes, _), c)| bytes != c);
        let counters = (stats.evictions(), rejected);
        if over || counters != last_counters || samples.is_multiple_of(STATS_EVERY) {
            history.record(Event::Stats {
                node: node.clone(),
                inc,
                bytes: stats.bytes(),
                budget: stats.budget_bytes(),
                stores,
                counted,
                evictions: stats.evictions(),
                local_fallbacks: stats.counters.fallbacks,
                peer_errors: stats.counters.fetch_errors,
                rejected,
            });
        }
        last_counters = counters;
        samples += 1;
    }
}
