//! Configuration of a node and of the groups it hosts.

use crate::loader::Loader;
use lcache_core::limits::Limits;
use lcache_core::member::MemberId;
use lcache_core::ring::RingConfig;
use lcache_core::store::{entry_size, Policy};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Name of the group every node hosts unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// Settings of one cache group (a named keyspace with its own budget, policy and loader).
#[derive(Clone)]
pub struct GroupConfig {
    /// Name clients address the group by.
    pub name: String,
    /// Byte budget of the main store (keys this node owns).
    pub budget_bytes: u64,
    /// Eviction policy of the main store.
    pub policy: Policy,
    /// Lock shards of the main store (a power of two); reduced at start if a largest entry
    /// would not fit one shard.
    pub shards: usize,
    /// Lifetime of values set or loaded without an explicit TTL; `None` keeps them until evicted.
    pub default_ttl: Option<Duration>,
    /// Optional hot cache of values fetched from owners.
    pub hot: Option<HotCacheConfig>,
    /// Optional memory of loader misses on the owner (penetration protection).
    pub misses: Option<MissCacheConfig>,
    /// Source of values on a miss on the owner; `None` makes the group a pure set/get cache.
    pub loader: Option<Arc<dyn Loader>>,
}

/// A bounded cache of copies of values owned by other nodes, so hot keys are not fetched on
/// every request. A write invalidates every node's copy before it is acknowledged; a copy an
/// invalidation missed (a fault) still expires within the lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotCacheConfig {
    /// Byte budget of the hot cache.
    pub budget_bytes: u64,
    /// Longest time a copy is served (also never past the owner's remaining TTL).
    pub lifetime: Duration,
}

/// Remembered loader misses: a key the loader has no value for is answered "not found" by its
/// owner for `ttl` without asking the loader again, so a flood of gets for absent keys reaches the
/// source once per key and period. A write of the key forgets the miss at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissCacheConfig {
    /// Byte budget of the remembered misses (each costs its key plus the per-entry overhead).
    pub budget_bytes: u64,
    /// How long a miss is remembered.
    pub ttl: Duration,
}

impl GroupConfig {
    /// Default budget of a group: 64 MiB.
    pub const DEFAULT_BUDGET_BYTES: u64 = 64 << 20;
    /// Default number of lock shards.
    pub const DEFAULT_SHARDS: usize = 16;
    /// Default lifetime of hot copies.
    pub const DEFAULT_HOT_LIFETIME: Duration = Duration::from_secs(2);
    /// Default time a loader miss is remembered.
    pub const DEFAULT_MISS_TTL: Duration = Duration::from_secs(1);
    /// Budget of the remembered misses, as a fraction of the main budget (1/32).
    pub const MISS_BUDGET_DIVISOR: u64 = 32;

    /// A group with default settings: 64 MiB, TinyLFU ([`Policy::default`]), no TTL, a hot cache
    /// of 1/8 of the budget, loader misses remembered for 1 s in 1/32 of the budget.
    pub fn new(name: impl Into<String>) -> Self {
        let budget_bytes = Self::DEFAULT_BUDGET_BYTES;
        GroupConfig {
            name: name.into(),
            budget_bytes,
            policy: Policy::default(),
            shards: Self::DEFAULT_SHARDS,
            default_ttl: None,
            hot: Some(HotCacheConfig {
                budget_bytes: budget_bytes / 8,
                lifetime: Self::DEFAULT_HOT_LIFETIME,
            }),
            misses: Some(MissCacheConfig {
                budget_bytes: budget_bytes / Self::MISS_BUDGET_DIVISOR,
                ttl: Self::DEFAULT_MISS_TTL,
            }),
            loader: None,
        }
    }

    /// The same group with another budget (the hot cache keeps 1/8 of it, the remembered misses
    /// 1/32).
    pub fn with_budget(mut self, budget_bytes: u64) -> Self {
        self.budget_bytes = budget_bytes;
        if let Some(hot) = &mut self.hot {
            hot.budget_bytes = budget_bytes / 8;
        }
        if let Some(misses) = &mut self.misses {
            misses.budget_bytes = budget_bytes / Self::MISS_BUDGET_DIVISOR;
        }
        self
    }

    /// Sum of the budgets of every store of the group (main, hot, misses): what it may hold.
    pub fn total_budget_bytes(&self) -> u64 {
        self.budget_bytes
            + self.hot.map_or(0, |h| h.budget_bytes)
            + self.misses.map_or(0, |m| m.budget_bytes)
    }

    /// The same group with a loader.
    pub fn with_loader(mut self, loader: impl Loader) -> Self {
        self.loader = Some(Arc::new(loader));
        self
    }

    /// Shard count to use so that the largest entry `limits` allow fits one shard of the main
    /// store, and every other tier gives each shard a budget too.
    pub(crate) fn effective_shards(&self, limits: &Limits) -> usize {
        let max_entry = entry_size(limits.max_key_bytes, limits.max_value_bytes);
        let smallest_tier = [
            Some(self.budget_bytes),
            self.hot.map(|h| h.budget_bytes),
            self.misses.map(|m| m.budget_bytes),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.budget_bytes);
        let mut shards = self.shards.max(1).next_power_of_two();
        while shards > 1
            && (self.budget_bytes / shards as u64 <= max_entry
                || smallest_tier / (shards as u64) < 1)
        {
            shards /= 2;
        }
        shards
    }
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("name", &self.name)
            .field("budget_bytes", &self.budget_bytes)
            .field("policy", &self.policy)
            .field("shards", &self.shards)
            .field("default_ttl", &self.default_ttl)
            .field("hot", &self.hot)
            .field("misses", &self.misses)
            .field("loader", &self.loader.is_some())
            .finish()
    }
}

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's stable id in the cluster.
    pub id: MemberId,
    /// Address peers and clients dial to reach this node (`host:port`).
    pub advertise: String,
    /// Grows with every restart, so peers can tell a new life of the node from the old one.
    pub incarnation: u64,
    /// Key and value size limits.
    pub limits: Limits,
    /// Requests served at once; more are refused with `ResourceExhausted` instead of queueing.
    pub max_in_flight: usize,
    /// Callers that may wait on one key's load at once.
    pub max_waiters_per_key: usize,
    /// Loader runs at once on the node, over all groups; a get that would start one more is
    /// refused with `ResourceExhausted`. A load holds its slot until the loader really returns
    /// (or its load timeout), whether or not its callers still wait.
    pub max_loads: usize,
    /// Deadline of a client request whose caller gave none (and cap on the ones they give).
    pub request_timeout: Duration,
    /// Transit allowance of a call to a peer: a forwarded get waits for the owner up to
    /// [`NodeConfig::forward_timeout`], so a slow but healthy owner is waited for; a write
    /// forwarded to the owner or an invalidation waits up to `peer_timeout` plus the owner's own
    /// invalidations.
    pub peer_timeout: Duration,
    /// Longest a loader may run before its load counts as failed.
    pub load_timeout: Duration,
    /// Longest a graceful shutdown takes in total (deregister, stop accepting, drain).
    pub shutdown_grace: Duration,
    /// Seed of the store hashers and of the shard choice; `None` draws one from the OS at start
    /// (keys come from clients, so the seed must not be predictable). A simulation passes its
    /// run's seed so replays stay exact.
    pub hash_seed: Option<u64>,
    /// Fault points for simulations (named delays and drops inside the request path); `None`
    /// in production, where the `buggify` feature is off and none is compiled in.
    #[cfg(feature = "buggify")]
    pub buggify: Option<Arc<dyn crate::buggify::Buggify>>,
    /// Virtual nodes of the consistent-hash ring.
    pub ring: RingConfig,
    /// Period of the expired-entry sweep.
    pub sweep_interval: Duration,
    /// Entries a sweep may reclaim per group and store.
    pub sweep_batch: usize,
    /// Groups hosted by this node.
    pub groups: Vec<GroupConfig>,
}

impl NodeConfig {
    /// Default of [`NodeConfig::max_loads`].
    pub const DEFAULT_MAX_LOADS: usize = 256;

    /// How long a forwarded get waits for the key's owner: two load timeouts plus transit. The
    /// owner never runs two loads of one key at once, so a get that arrives after a write
    /// superseded the load in flight waits for that load to end, then for its own (seed 1305:
    /// with one load timeout, a healthy owner with a slow loader was given up on early).
    pub fn forward_timeout(&self) -> Duration {
        forward_timeout(self.load_timeout, self.peer_timeout)
    }

    /// A node with default limits hosting the `default` group.
    pub fn new(id: impl Into<MemberId>, advertise: impl Into<String>) -> Self {
        NodeConfig {
            id: id.into(),
            advertise: advertise.into(),
            incarnation: 0,
            limits: Limits::default(),
            max_in_flight: 10_000,
            max_waiters_per_key: 10_000,
            max_loads: Self::DEFAULT_MAX_LOADS,
            request_timeout: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(2),
            load_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            ring: RingConfig::default(),
            sweep_interval: Duration::from_secs(1),
            sweep_batch: 1_024,
            groups: vec![GroupConfig::new(DEFAULT_GROUP)],
            hash_seed: None,
            #[cfg(feature = "buggify")]
            buggify: None,
        }
    }

    /// The same node hosting exactly `groups`.
    pub fn with_groups(mut self, groups: Vec<GroupConfig>) -> Self {
        self.groups = groups;
        self
    }
}

/// [`NodeConfig::forward_timeout`] for a load timeout and a peer timeout.
pub(crate) fn forward_timeout(load: Duration, peer: Duration) -> Duration {
    load.saturating_mul(2).saturating_add(peer)
}
