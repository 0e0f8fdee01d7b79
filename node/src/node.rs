//! The node: its groups, its lifecycle (start, graceful shutdown) and the in-process handles on
//! it ([`Group`], [`NodeProbe`]).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_core::group::{
    Group as GroupCore, GroupSettings, GroupStats, HotSettings, LoadSlots, MissSettings, Tier,
};
use lcache_core::limits::check_group_name;
use lcache_core::member::Member;
use lcache_core::membership::MembershipView;
use lcache_core::router::Router;
use lcache_discovery::{Discovery, EVENT_CHANNEL_CAPACITY};
use lcache_transport::{Deadline, DeleteRequest, GetRequest, NodeStats, SetRequest, Transport};
use parking_lot::RwLock;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::clock::Clock;
use crate::config::{GroupConfig, NodeConfig};
use crate::error::{RequestError, StartError};
use crate::membership::{self, Membership};
use crate::metrics::record::{NodeMetrics, TimedLoader};
use crate::metrics::{Metrics, NodeCollector, SessionProbe};
use crate::runtime::{GroupState, Runtime, Timeouts};
use crate::service::NodeService;

/// An in-process handle on one group of a running node: what an application embedding LCache
/// calls instead of going through gRPC.
#[derive(Debug)]
pub struct Group<T> {
    runtime: Arc<Runtime<T>>,
    name: String,
}

impl<T> Clone for Group<T> {
    fn clone(&self) -> Self {
        Group {
            runtime: self.runtime.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T: Transport> Group<T> {
    /// Name of the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.runtime.timeouts.request)
    }

    /// The value of `key`: from this node, its owner, or the owner's loader; `None` on a miss.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, RequestError> {
        let request = GetRequest {
            group: self.name.clone(),
            key: key.into(),
            forwarded: false,
        };
        Ok(self
            .runtime
            .get(request, self.deadline(), Instant::now())
            .await?
            .map(|f| f.value))
    }

    /// Store `value` under `key` on the key's owner; `ttl` overrides the group default.
    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), RequestError> {
        let request = SetRequest {
            group: self.name.clone(),
            key: key.into(),
            value: value.into(),
            ttl,
            forwarded: false,
        };
        self.runtime
            .set(request, self.deadline(), Instant::now())
            .await
    }

    /// Remove `key` on its owner (and every copy); true if the owner held it.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool, RequestError> {
        let request = DeleteRequest {
            group: self.name.clone(),
            key: key.into(),
            forwarded: false,
        };
        self.runtime
            .delete(request, self.deadline(), Instant::now())
            .await
    }

    /// This group's counters on this node.
    pub fn stats(&self) -> GroupStats {
        match self.runtime.groups.get(&self.name) {
            Some(group) => group.core.stats(),
            None => GroupStats::default(),
        }
    }
}

/// A cheap, cloneable, read-only view of a running [`Node`]: its membership, routing and stats.
///
/// Obtained from [`Node::probe`]. It observes only; holding one keeps the node's stores alive
/// but does not keep the node serving.
pub struct NodeProbe<T> {
    runtime: Arc<Runtime<T>>,
}

impl<T> std::fmt::Debug for NodeProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProbe")
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl<T> Clone for NodeProbe<T> {
    fn clone(&self) -> Self {
        NodeProbe {
            runtime: self.runtime.clone(),
        }
    }
}

impl<T: Transport> NodeProbe<T> {
    /// The node as the cluster sees it.
    pub fn member(&self) -> &Member {
        &self.runtime.me
    }

    /// The members the node currently routes to, sorted by id (like [`Node::members`]).
    pub fn members(&self) -> Vec<Member> {
        self.runtime.members()
    }

    /// The member the node believes owns `key` (like [`Node::owner`]).
    pub fn owner(&self, key: &[u8]) -> Member {
        self.runtime.owner(key)
    }

    /// Stats of every group on the node (like [`Node::stats`]).
    pub fn stats(&self) -> NodeStats {
        self.runtime.all_stats()
    }

    /// Calls `visit` with every entry `group` holds (tier, key, value), so a checker can count
    /// bytes itself instead of trusting the stores' accounting.
    pub fn visit_entries(&self, group: &str, visit: impl FnMut(Tier, &[u8], &[u8])) {
        self.runtime.visit_entries(group, visit);
    }

    /// Requests being served right now (like [`Node::in_flight`]).
    pub fn in_flight(&self) -> usize {
        self.runtime.admission.in_flight()
    }

    /// Loader runs in progress on the node now.
    pub fn loads_running(&self) -> usize {
        self.runtime.load_slots.running()
    }

    /// Every entry of `group`'s stores as (key, value length, tier); empty for an unknown group.
    /// Lets an observer (the simulation) recount the bytes held independently of the stores'
    /// own counters, and check that the main store holds only keys this node owns.
    pub fn entries(&self, group: &str) -> Vec<(Bytes, usize, Tier)> {
        let mut entries = Vec::new();
        self.runtime.visit_entries(group, |tier, key, value| {
            entries.push((Bytes::copy_from_slice(key), value.len(), tier));
        });
        entries
    }
}

/// A cache node: hosts groups, follows membership and serves requests until shut down.
///
/// Generic over the peer [`Transport`] and the [`Discovery`] backend, so the same runtime runs
/// over real gRPC and etcd, or inside the simulation.
#[derive(Debug)]
pub struct Node<T, D> {
    runtime: Arc<Runtime<T>>,
    discovery: Arc<D>,
    shutdown_grace: Duration,
    background: CancellationToken,
    tasks: TaskTracker,
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether the node was deregistered from discovery.
    pub deregistered: bool,
    /// Whether every in-flight request finished within the grace period.
    pub drained: bool,
}

/// A hash seed from the OS: std's `RandomState` is seeded from the OS's randomness once per
/// process (and differently per instance), which is all a hasher seed needs.
fn os_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x4c43_6163_6865_4853); // "LCacheHS"
    hasher.finish()
}

impl<T: Transport, D: Discovery> Node<T, D> {
    /// Build the node's groups, join the cluster and start following membership.
    pub async fn start(config: NodeConfig, transport: T, discovery: D) -> Result<Self, StartError> {
        let me = Member {
            id: config.id.clone(),
            addr: config.advertise.clone(),
            incarnation: config.incarnation,
        };
        let router = Router::new(me.clone(), config.ring);
        let shared_router = Arc::new(router.clone());
        let load_slots = LoadSlots::new(config.max_loads);
        let hash_seed = config.hash_seed.unwrap_or_else(os_seed);
        let metrics = NodeMetrics::new(config.groups.iter().map(|g| g.name.as_str()));
        let groups = build_groups(&config, &shared_router, &load_slots, &metrics, hash_seed)?;
        let runtime = Arc::new(Runtime {
            me: me.clone(),
            clock: Clock::start(),
            limits: config.limits,
            timeouts: Timeouts {
                request: config.request_timeout,
                load: config.load_timeout,
                peer: config.peer_timeout,
            },
            router: RwLock::new(shared_router),
            transport,
            groups,
            admission: Admission::new(config.max_in_flight),
            load_slots,
            works: TaskTracker::new(),
            stop_works: CancellationToken::new(),
            metrics,
            #[cfg(feature = "buggify")]
            buggify: config.buggify.clone(),
        });
        let node = Node {
            runtime,
            discovery: Arc::new(discovery),
            shutdown_grace: config.shutdown_grace,
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let (events_tx, mut events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let fence = membership::fence_for(&node.runtime);
        node.discovery.join(me.clone(), events_tx, fence).await?;
        // Route by what discovery said while joining (a static or etcd snapshot) before serving.
        let mut view = Membership::new(MembershipView::new(me), router);
        view.catch_up(&node.runtime, &mut events_rx);
        node.tasks.spawn(membership::follow(
            node.runtime.clone(),
            view,
            events_rx,
            node.background.clone(),
        ));
        node.tasks.spawn(membership::sweep_expired(
            node.runtime.clone(),
            config.sweep_interval,
            config.sweep_batch,
            node.background.clone(),
        ));
        tracing::info!(node = %node.runtime.me.id, addr = %node.runtime.me.addr, "node started");
        Ok(node)
    }

    /// This node as the cluster sees it.
    pub fn member(&self) -> &Member {
        &self.runtime.me
    }

    /// An in-process handle on the group `name`, if this node hosts it.
    pub fn group(&self, name: &str) -> Option<Group<T>> {
        self.runtime.groups.contains_key(name).then(|| Group {
            runtime: self.runtime.clone(),
            name: name.to_string(),
        })
    }

    /// The handler serving this node's clients and peers (gRPC, and any other front door).
    pub fn service(&self) -> NodeService<T> {
        NodeService::new(self.runtime.clone())
    }

    /// The members this node currently routes to, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.runtime.members()
    }

    /// The member this node believes owns `key`.
    pub fn owner(&self, key: &[u8]) -> Member {
        self.runtime.owner(key)
    }

    /// Stats of every group on this node.
    pub fn stats(&self) -> NodeStats {
        self.runtime.all_stats()
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.runtime.admission.in_flight()
    }

    /// The node's Prometheus metrics (see [`crate::metrics`]); like [`Node::probe`], usable
    /// after the node was handed to [`crate::server::run`]. Serve them with
    /// [`crate::metrics::serve`].
    pub fn metrics(&self) -> Metrics {
        let discovery = self.discovery.clone();
        Metrics::new(NodeCollector {
            runtime: self.runtime.clone(),
            session: Arc::new(move || discovery.session()) as SessionProbe,
        })
    }

    /// A read-only handle on this node that stays usable after the node itself was handed to
    /// [`crate::server::run`] (which takes it by value): for tests, simulations and monitoring.
    pub fn probe(&self) -> NodeProbe<T> {
        NodeProbe {
            runtime: self.runtime.clone(),
        }
    }

    /// Leave the cluster gracefully, all within the grace period: deregister, refuse new
    /// requests, let in-flight ones finish, then stop background work and release the stores.
    ///
    /// A server serving [`Node::service`] should stop accepting between deregistering and
    /// draining; [`crate::server::run`] does exactly that.
    pub async fn shutdown(self) -> ShutdownReport {
        let deadline = self.shutdown_deadline();
        let deregistered = self.deregister(deadline).await;
        self.finish(deregistered, deadline).await
    }

    /// When a shutdown starting now must be over.
    pub(crate) fn shutdown_deadline(&self) -> Instant {
        Instant::now() + self.shutdown_grace
    }

    /// Deregister from discovery, by `deadline`; true if it succeeded.
    pub(crate) async fn deregister(&self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.discovery.leave()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(node = %self.runtime.me.id, error = %err, "deregistering failed");
                false
            }
            Err(_) => {
                tracing::warn!(node = %self.runtime.me.id, "deregistering timed out");
                false
            }
        }
    }

    /// Refuse new requests, drain in-flight ones by `deadline`, then stop background work and
    /// the loads and fetches still running.
    pub(crate) async fn finish(self, deregistered: bool, deadline: Instant) -> ShutdownReport {
        self.runtime.admission.close();
        let grace = deadline.saturating_duration_since(Instant::now());
        let drained = self.runtime.admission.drain(grace).await;
        if !drained {
            tracing::warn!(node = %self.runtime.me.id, in_flight = self.runtime.admission.in_flight(),
                "grace period over with requests still in flight");
        }
        self.stop_background().await;
        tracing::info!(node = %self.runtime.me.id, deregistered, drained, "node stopped");
        ShutdownReport {
            deregistered,
            drained,
        }
    }

    async fn stop_background(&self) {
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.runtime.stop_works.cancel();
        self.runtime.works.close();
        self.runtime.works.wait().await;
    }
}

/// Build the state machine of every configured group.
fn build_groups(
    config: &NodeConfig,
    router: &Arc<Router>,
    load_slots: &Arc<LoadSlots>,
    metrics: &NodeMetrics,
    hash_seed: u64,
) -> Result<BTreeMap<String, Arc<GroupState>>, StartError> {
    let mut groups = BTreeMap::new();
    for (i, group) in config.groups.iter().enumerate() {
        let seed = hash_seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut state = build_group(group, config, router, load_slots, seed)?;
        // Time the loader's runs for the metrics.
        if let Some(histogram) = metrics.loads.get(&group.name) {
            state.loader = state.loader.take().map(|inner| {
                Arc::new(TimedLoader {
                    inner,
                    histogram: histogram.clone(),
                }) as Arc<dyn crate::loader::Loader>
            });
        }
        if groups.insert(group.name.clone(), Arc::new(state)).is_some() {
            return Err(StartError::DuplicateGroup(group.name.clone()));
        }
    }
    Ok(groups)
}

fn build_group(
    group: &GroupConfig,
    config: &NodeConfig,
    router: &Arc<Router>,
    load_slots: &Arc<LoadSlots>,
    hash_seed: u64,
) -> Result<GroupState, StartError> {
    let invalid = |reason: String| StartError::InvalidGroup {
        group: group.name.clone(),
        reason,
    };
    check_group_name(&group.name).map_err(|err| invalid(err.to_string()))?;
    if group.default_ttl == Some(Duration::ZERO) {
        return Err(invalid("the default TTL must be longer than zero".into()));
    }
    let settings = GroupSettings {
        name: group.name.clone(),
        budget_bytes: group.budget_bytes,
        policy: group.policy,
        shards: group.effective_shards(&config.limits),
        default_ttl: group.default_ttl,
        hot: group
            .hot
            .filter(|h| h.budget_bytes > 0)
            .map(|h| HotSettings {
                budget_bytes: h.budget_bytes,
                lifetime: h.lifetime,
            }),
        misses: group
            .misses
            .filter(|m| m.budget_bytes > 0 && !m.ttl.is_zero())
            .map(|m| MissSettings {
                budget_bytes: m.budget_bytes,
                ttl: m.ttl,
            }),
        max_waiters_per_key: config.max_waiters_per_key,
        has_loader: group.loader.is_some(),
        hash_seed,
    };
    let core = GroupCore::new(settings, router.clone(), load_slots.clone())
        .map_err(|err| invalid(err.to_string()))?;
    Ok(GroupState {
        core,
        loader: group.loader.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Store hashers are seeded per process from the OS (issue "Resource safety", point 7): two
    /// nodes, or two runs, do not share a seed a client could aim crafted keys at.
    #[test]
    fn hash_seeds_come_from_the_os_and_differ() {
        let seeds: std::collections::BTreeSet<u64> = (0..16).map(|_| os_seed()).collect();
        assert_eq!(seeds.len(), 16, "{seeds:?}");
    }
}
