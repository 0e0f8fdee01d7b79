//! Domain types of the cache API: what the node and its clients see, free of any wire (prost) type.
//!
//! The private `convert` module maps them to and from the `lcache.v1` messages and validates what
//! arrives.

use std::time::Duration;

use bytes::Bytes;

/// A request for the value of `key` in `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    /// Name of the cache group (never empty once validated).
    pub group: String,
    /// The key (never empty once validated).
    pub key: Bytes,
    /// Set when a peer forwarded the request; a forwarded request is never forwarded again.
    pub forwarded: bool,
}

/// A value returned by a `Get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The value.
    pub value: Bytes,
    /// Remaining lifetime on the node that answered; `None` when the value does not expire.
    /// A receiver must not keep a copy longer than this.
    pub ttl: Option<Duration>,
}

/// A request to store `value` under `key` in `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRequest {
    /// Name of the cache group.
    pub group: String,
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Lifetime of the entry; `None` means no expiry. Never zero once validated.
    pub ttl: Option<Duration>,
    /// Set when a peer forwarded the request.
    pub forwarded: bool,
}

/// A request to remove `key` from `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Name of the cache group.
    pub group: String,
    /// The key.
    pub key: Bytes,
    /// Set when a peer forwarded the request.
    pub forwarded: bool,
}

/// Counters of one group on one node. Counters only grow; `bytes`, `entries` and `budget_bytes`
/// are gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Name of the group.
    pub group: String,
    /// Gets answered from the local store.
    pub hits: u64,
    /// Gets not answered from the local store.
    pub misses: u64,
    /// Loader runs started on this node.
    pub loads: u64,
    /// Loader runs that failed.
    pub load_errors: u64,
    /// Gets forwarded to the owning peer.
    pub peer_gets: u64,
    /// Forwarded gets that failed at the transport level.
    pub peer_errors: u64,
    /// Loads run locally because the owning peer failed.
    pub local_fallbacks: u64,
    /// Entries inserted into the store.
    pub inserts: u64,
    /// Entries evicted to stay within the byte budget.
    pub evictions: u64,
    /// Entries dropped because their TTL passed.
    pub expirations: u64,
    /// Bytes held now (keys + values + per-entry overhead).
    pub bytes: u64,
    /// Entries held now.
    pub entries: u64,
    /// Byte budget of the group's store.
    pub budget_bytes: u64,
    /// Inserts refused (e.g. one entry larger than a shard's budget).
    pub rejected: u64,
    /// Gets that joined a load already in flight for the same key.
    pub load_dedups: u64,
    /// Gets answered from a hot copy of a value owned by another node.
    pub hot_hits: u64,
    /// Requests received from peers (forwarded).
    pub forwarded_in: u64,
}

/// Stats of one node: its id and one [`GroupStats`] per group, ordered by group name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Id of the node that answered.
    pub node_id: String,
    /// One entry per group.
    pub groups: Vec<GroupStats>,
}
