//! The node: groups, membership, background work and the graceful shutdown sequence.

use crate::admission::Admission;
use crate::clock::Clock;
use crate::config::{GroupConfig, NodeConfig};
use crate::error::{RequestError, StartError};
use crate::group::{self, GroupState, HotCache};
use crate::service::NodeService;
use bytes::Bytes;
use lcache_core::limits::{check_group_name, Limits};
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::{MembershipEvent, MembershipView, RingChange};
use lcache_core::router::{Route, Router};
use lcache_core::sharded::{ShardedStore, ShardedStoreConfig};
use lcache_discovery::{Discovery, EVENT_CHANNEL_CAPACITY};
use lcache_transport::{DeleteRequest, GetRequest, GroupStats, NodeStats, SetRequest, Transport};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State every request of a node shares.
pub(crate) struct Shared<T> {
    pub(crate) me: Member,
    pub(crate) clock: Clock,
    pub(crate) limits: Limits,
    pub(crate) load_timeout: Duration,
    pub(crate) peer_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) router: RwLock<Router>,
    pub(crate) transport: T,
    pub(crate) groups: BTreeMap<String, Arc<GroupState>>,
    pub(crate) admission: Admission,
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.me)
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Shared<T> {
    /// Where a request for `key` is served.
    pub(crate) fn route(&self, key: &[u8], forwarded: bool) -> Route {
        self.router.read().route(key, forwarded)
    }

    fn group(&self, name: &str) -> Result<&Arc<GroupState>, RequestError> {
        self.groups
            .get(name)
            .ok_or_else(|| RequestError::UnknownGroup(name.to_string()))
    }

    /// The absolute deadline of a request whose caller allowed `timeout` (capped by config).
    pub(crate) fn peer_budget(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .min(self.peer_timeout)
    }

    fn deadline(&self, timeout: Option<Duration>) -> Instant {
        let timeout = timeout.map_or(self.request_timeout, |t| t.min(self.request_timeout));
        Instant::now() + timeout
    }

    fn count_forwarded(&self, group: &GroupState, forwarded: bool) {
        if forwarded {
            crate::stats::Counters::bump(&group.counters.forwarded_in);
        }
    }

    fn rejected<R>(
        &self,
        group: &GroupState,
        result: Result<R, RequestError>,
    ) -> Result<R, RequestError> {
        if let Err(
            RequestError::Invalid(_) | RequestError::Overloaded(_) | RequestError::TooLarge { .. },
        ) = &result
        {
            crate::stats::Counters::bump(&group.counters.rejected);
        }
        result
    }

    /// Serve a get, from a client, a peer or an in-process [`Group`] handle.
    pub(crate) async fn get(
        self: &Arc<Self>,
        request: GetRequest,
        timeout: Option<Duration>,
    ) -> Result<Option<lcache_transport::Fetched>, RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admission.admit()?;
        self.count_forwarded(group, request.forwarded);
        let deadline = self.deadline(timeout);
        let result = group::get(self, group, request.key, request.forwarded, deadline).await;
        self.rejected(group, result)
    }

    /// Serve a set.
    pub(crate) async fn set(
        self: &Arc<Self>,
        request: SetRequest,
        timeout: Option<Duration>,
    ) -> Result<(), RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admission.admit()?;
        self.count_forwarded(group, request.forwarded);
        let deadline = self.deadline(timeout);
        let result = group::set(self, group, request, deadline).await;
        self.rejected(group, result)
    }

    /// Serve a delete.
    pub(crate) async fn delete(
        self: &Arc<Self>,
        request: DeleteRequest,
        timeout: Option<Duration>,
    ) -> Result<bool, RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admission.admit()?;
        self.count_forwarded(group, request.forwarded);
        let deadline = self.deadline(timeout);
        let result = group::delete(self, group, request, deadline).await;
        self.rejected(group, result)
    }

    /// The members the node currently routes to, sorted by id.
    fn members(&self) -> Vec<Member> {
        self.router.read().members().cloned().collect()
    }

    /// The member the node believes owns `key`.
    fn owner(&self, key: &[u8]) -> Member {
        self.router.read().owner(key).clone()
    }

    /// Stats of every group on the node.
    fn all_stats(&self) -> NodeStats {
        self.stats(None).unwrap_or_default()
    }

    /// Stats of one group, or of all groups.
    pub(crate) fn stats(&self, group: Option<&str>) -> Result<NodeStats, RequestError> {
        let groups = match group {
            Some(name) => vec![self.group(name)?.stats()],
            None => self.groups.values().map(|g| g.stats()).collect(),
        };
        Ok(NodeStats {
            node_id: self.me.id.to_string(),
            groups,
        })
    }
}

/// An in-process handle on one group of a running node.
#[derive(Debug)]
pub struct Group<T> {
    shared: Arc<Shared<T>>,
    name: String,
}

impl<T> Clone for Group<T> {
    fn clone(&self) -> Self {
        Group {
            shared: self.shared.clone(),
            name: self.name.clone(),
        }
    }
}

impl<T: Transport> Group<T> {
    /// Name of the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`: from this node, its owner, or the owner's loader; `None` on a miss.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, RequestError> {
        let request = GetRequest {
            group: self.name.clone(),
            key: key.into(),
            forwarded: false,
        };
        Ok(self.shared.get(request, None).await?.map(|f| f.value))
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
        self.shared.set(request, None).await
    }

    /// Remove `key` on its owner (and this node's copies); true if the owner held it.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool, RequestError> {
        let request = DeleteRequest {
            group: self.name.clone(),
            key: key.into(),
            forwarded: false,
        };
        self.shared.delete(request, None).await
    }

    /// This group's counters on this node.
    pub fn stats(&self) -> GroupStats {
        match self.shared.groups.get(&self.name) {
            Some(group) => group.stats(),
            None => GroupStats::default(),
        }
    }
}

/// A cheap, cloneable, read-only view of a running [`Node`]: its membership, routing and stats.
///
/// Obtained from [`Node::probe`]. It observes only; holding one keeps the node's stores alive
/// but does not keep the node serving.
pub struct NodeProbe<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for NodeProbe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProbe")
            .field("shared", &self.shared)
            .finish()
    }
}

impl<T> Clone for NodeProbe<T> {
    fn clone(&self) -> Self {
        NodeProbe {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Transport> NodeProbe<T> {
    /// The node as the cluster sees it.
    pub fn member(&self) -> &Member {
        &self.shared.me
    }

    /// The members the node currently routes to, sorted by id (like [`Node::members`]).
    pub fn members(&self) -> Vec<Member> {
        self.shared.members()
    }

    /// The member the node believes owns `key` (like [`Node::owner`]).
    pub fn owner(&self, key: &[u8]) -> Member {
        self.shared.owner(key)
    }

    /// Stats of every group on the node (like [`Node::stats`]).
    pub fn stats(&self) -> NodeStats {
        self.shared.all_stats()
    }

    /// Bytes held and byte budget of each store of `group`: its main store, then its hot cache
    /// if it has one (empty for an unknown group). [`Self::stats`] sums them, which would hide a
    /// store over its budget while the other is under.
    pub fn store_usage(&self, group: &str) -> Vec<(u64, u64)> {
        self.shared
            .groups
            .get(group)
            .map(|g| g.store_usage())
            .unwrap_or_default()
    }

    /// Requests being served right now (like [`Node::in_flight`]).
    pub fn in_flight(&self) -> usize {
        self.shared.admission.in_flight()
    }

    /// Every entry of `group`'s stores as (key, value length, in the hot cache): main-store
    /// entries first, then hot copies; empty for an unknown group. Lets an observer (the
    /// simulation) recount the bytes held independently of the stores' own counters, and check
    /// that the main store holds only keys this node owns.
    pub fn entries(&self, group: &str) -> Vec<(Bytes, usize, bool)> {
        let Some(g) = self.shared.groups.get(group) else {
            return Vec::new();
        };
        let main = g
            .store
            .entries()
            .into_iter()
            .map(|(k, len)| (k, len, false));
        let hot = g
            .hot
            .iter()
            .flat_map(|h| h.entries())
            .map(|(k, len)| (k, len, true));
        main.chain(hot).collect()
    }
}

/// A cache node: hosts groups, follows membership and serves requests until shut down.
///
/// Generic over the peer [`Transport`] and the [`Discovery`] backend, so the same runtime runs
/// over real gRPC and etcd, or inside the simulation.
#[derive(Debug)]
pub struct Node<T, D> {
    shared: Arc<Shared<T>>,
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

impl<T: Transport, D: Discovery> Node<T, D> {
    /// Build the node's groups, join the cluster and start following membership.
    pub async fn start(config: NodeConfig, transport: T, discovery: D) -> Result<Self, StartError> {
        let groups = build_groups(&config)?;
        let me = Member {
            id: config.id.clone(),
            addr: config.advertise.clone(),
            incarnation: config.incarnation,
        };
        let shared = Arc::new(Shared {
            me: me.clone(),
            clock: Clock::start(),
            limits: config.limits,
            load_timeout: config.load_timeout,
            peer_timeout: config.peer_timeout,
            request_timeout: config.request_timeout,
            router: RwLock::new(Router::new(me.clone(), config.ring)),
            transport,
            groups,
            admission: Admission::new(config.max_in_flight),
        });
        let node = Node {
            shared,
            discovery: Arc::new(discovery),
            shutdown_grace: config.shutdown_grace,
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        node.tasks.spawn(follow_membership(
            node.shared.clone(),
            MembershipView::new(me.clone()),
            events_rx,
            node.background.clone(),
        ));
        node.tasks.spawn(sweep_expired(
            node.shared.clone(),
            config.sweep_interval,
            config.sweep_batch,
            node.background.clone(),
        ));
        if let Err(err) = node.discovery.join(me, events_tx).await {
            node.background.cancel();
            node.tasks.close();
            node.tasks.wait().await;
            return Err(err.into());
        }
        tracing::info!(node = %node.shared.me.id, addr = %node.shared.me.addr, "node started");
        Ok(node)
    }

    /// This node as the cluster sees it.
    pub fn member(&self) -> &Member {
        &self.shared.me
    }

    /// An in-process handle on the group `name`, if this node hosts it.
    pub fn group(&self, name: &str) -> Option<Group<T>> {
        self.shared.groups.contains_key(name).then(|| Group {
            shared: self.shared.clone(),
            name: name.to_string(),
        })
    }

    /// The gRPC handler serving this node's clients and peers.
    pub fn service(&self) -> NodeService<T> {
        NodeService::new(self.shared.clone())
    }

    /// The members this node currently routes to, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.shared.members()
    }

    /// The member this node believes owns `key`.
    pub fn owner(&self, key: &[u8]) -> Member {
        self.shared.owner(key)
    }

    /// Stats of every group on this node.
    pub fn stats(&self) -> NodeStats {
        self.shared.all_stats()
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.shared.admission.in_flight()
    }

    /// A read-only handle on this node that stays usable after the node itself was handed to
    /// [`crate::server::run`] (which takes it by value): for tests, simulations and monitoring.
    pub fn probe(&self) -> NodeProbe<T> {
        NodeProbe {
            shared: self.shared.clone(),
        }
    }

    /// Leave the cluster gracefully: deregister, refuse new requests, let in-flight ones finish
    /// (up to the grace period), then stop background work and release the stores.
    ///
    /// A server serving [`Node::service`] should stop accepting between deregistering and
    /// draining; [`crate::server::run`] does exactly that.
    pub async fn shutdown(self) -> ShutdownReport {
        let deregistered = self.deregister().await;
        self.finish(deregistered).await
    }

    /// Deregister from discovery, bounded by the grace period; true if it succeeded.
    pub(crate) async fn deregister(&self) -> bool {
        match tokio::time::timeout(self.shutdown_grace, self.discovery.leave()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(node = %self.shared.me.id, error = %err, "deregistering failed");
                false
            }
            Err(_) => {
                tracing::warn!(node = %self.shared.me.id, "deregistering timed out");
                false
            }
        }
    }

    /// Refuse new requests, drain in-flight ones and stop background work.
    pub(crate) async fn finish(self, deregistered: bool) -> ShutdownReport {
        self.shared.admission.close();
        let drained = self.shared.admission.drain(self.shutdown_grace).await;
        if !drained {
            tracing::warn!(node = %self.shared.me.id, in_flight = self.shared.admission.in_flight(),
                "grace period over with requests still in flight");
        }
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(node = %self.shared.me.id, deregistered, drained, "node stopped");
        ShutdownReport {
            deregistered,
            drained,
        }
    }

    pub(crate) fn grace(&self) -> Duration {
        self.shutdown_grace
    }
}

/// Build the stores of every configured group.
fn build_groups(config: &NodeConfig) -> Result<BTreeMap<String, Arc<GroupState>>, StartError> {
    let mut groups = BTreeMap::new();
    for group in &config.groups {
        let state = build_group(group, config)?;
        if groups.insert(group.name.clone(), Arc::new(state)).is_some() {
            return Err(StartError::DuplicateGroup(group.name.clone()));
        }
    }
    Ok(groups)
}

fn build_group(group: &GroupConfig, config: &NodeConfig) -> Result<GroupState, StartError> {
    let invalid = |reason: String| StartError::InvalidGroup {
        group: group.name.clone(),
        reason,
    };
    check_group_name(&group.name).map_err(|err| invalid(err.to_string()))?;
    if group.default_ttl == Some(Duration::ZERO) {
        return Err(invalid("the default TTL must be longer than zero".into()));
    }
    let store = ShardedStore::new(ShardedStoreConfig {
        shards: group.effective_shards(group.budget_bytes, &config.limits),
        ..ShardedStoreConfig::new(group.budget_bytes, group.policy)
    })
    .map_err(|err| invalid(err.to_string()))?;
    let hot = match group.hot {
        Some(hot) if hot.budget_bytes > 0 => {
            let store = ShardedStore::new(ShardedStoreConfig {
                shards: group.effective_shards(hot.budget_bytes, &config.limits),
                ..ShardedStoreConfig::new(hot.budget_bytes, lcache_core::store::Policy::Lru)
            })
            .map_err(|err| invalid(format!("hot cache: {err}")))?;
            Some(HotCache::new(store, hot.lifetime))
        }
        _ => None,
    };
    Ok(GroupState::new(
        group.name.clone(),
        group.default_ttl,
        store,
        hot,
        group.loader.clone(),
        config.max_waiters_per_key,
    ))
}

/// Apply membership events to the view and the router until cancelled.
///
/// When the discovery stream ends the node keeps its last view (it keeps serving).
async fn follow_membership<T: Transport>(
    shared: Arc<Shared<T>>,
    mut view: MembershipView,
    mut events: mpsc::Receiver<MembershipEvent>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        let Some(event) = event else {
            tracing::debug!(node = %shared.me.id, "membership stream ended; keeping the last view");
            cancel.cancelled().await;
            return;
        };
        let changes = view.apply(event);
        if changes.is_empty() {
            continue;
        }
        apply_ring_changes(&shared, &changes);
    }
}

/// Re-route after a membership change: update the ring, drop connections to departed peers and
/// drop stored keys this node no longer owns (so they cannot resurface stale if ownership returns).
fn apply_ring_changes<T: Transport>(shared: &Shared<T>, changes: &[RingChange]) {
    shared.router.write().apply(changes);
    for change in changes {
        match change {
            RingChange::Added(member) => {
                tracing::info!(node = %shared.me.id, peer = %member.id, addr = %member.addr, "member joined");
            }
            RingChange::Updated(member) => {
                tracing::info!(node = %shared.me.id, peer = %member.id, addr = %member.addr, "member changed");
                shared.transport.forget(&member.id);
            }
            RingChange::Removed(id) => {
                tracing::info!(node = %shared.me.id, peer = %id, "member left");
                shared.transport.forget(id);
            }
        }
    }
    let router = shared.router.read();
    let me: &MemberId = &shared.me.id;
    for group in shared.groups.values() {
        let dropped = group.store.retain(|key| router.owner(key).id == *me);
        if dropped > 0 {
            tracing::debug!(node = %me, group = %group.name, dropped, "handed off keys after a ring change");
        }
    }
}

/// Reclaim expired entries every `interval`, at most `batch` per store per round.
async fn sweep_expired<T: Transport>(
    shared: Arc<Shared<T>>,
    interval: Duration,
    batch: usize,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = shared.clock.now();
        for group in shared.groups.values() {
            group.sweep(now, batch);
        }
    }
}
