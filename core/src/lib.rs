//! Sans-IO core of LCache.
//!
//! Every decision the cache makes lives here as a plain state machine: what is stored and evicted
//! ([`store`], [`sharded`]), who owns a key ([`ring`]), who is in the cluster ([`membership`]),
//! where a request goes ([`router`]), and what a cache group does with every get, load, fetch,
//! write, invalidation and membership change ([`group`]: singleflight, keep rules, fencing).
//! Nothing here performs IO, reads a clock (time is passed in as [`Timestamp`]), draws ambient
//! randomness or iterates in an order chosen by a random hasher, so the same inputs give the same
//! outputs in every process and under any runtime.
#![warn(missing_docs)]

pub mod counters;
pub mod group;
pub mod hash;
pub mod latency;
pub mod limits;
pub mod member;
pub mod membership;
pub mod owned;
pub mod ring;
pub mod router;
pub mod sharded;
pub mod store;
mod stripe;
pub mod time;

pub use limits::{check_group_name, LimitError, Limits};
pub use member::{Member, MemberId};
pub use membership::{MembershipEvent, MembershipView, RingChange};
pub use ring::{Ring, RingConfig, RingError};
pub use router::{Route, Router};
pub use sharded::{ShardedStore, ShardedStoreConfig};
pub use store::{
    Eviction, EvictionReason, Evictions, Lookup, Policy, SharedGet, Store, StoreConfig, StoreError,
    StoreStats,
};
pub use time::Timestamp;
