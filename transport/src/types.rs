//! Domain types of the cache API: what the node and its clients see, free of any wire (prost) type.
//!
//! The private `convert` module maps them to and from the `lcache.v1` messages and validates what
//! arrives.

use std::time::Duration;

use bytes::Bytes;

/// A value returned by a `Get`, with its remaining lifetime (declared once, in the core).
pub use lcache_core::group::Fetched;
/// What a node reports about itself and its groups (declared once, in the core).
pub use lcache_core::group::{GroupCounters, GroupStats, NodeStats, Tier, TierStats};

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

/// A key's owner telling another node that it applied a write of `key` in `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidateRequest {
    /// Name of the cache group.
    pub group: String,
    /// The key written.
    pub key: Bytes,
}
