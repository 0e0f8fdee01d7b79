//! Model-based property tests of `lcache-core`.
//!
//! The library holds the reference models the tests in `tests/` compare the core against, each a
//! naive transcription of the documented semantics (linear scans over `Vec`s, recomputation from
//! scratch) that is meant to be obviously correct rather than fast, plus shared proptest strategies.
//!
//! - [`group_cluster`] drives a cluster of group state machines and checks them against the
//!   consistency rules;
//! - [`store_model`] models `Store` (LRU and LRU2, expiry, stats), delegating TinyLFU to
//!   [`tinylfu_model`];
//! - [`sharded_model`] models `ShardedStore` as one store model per shard;
//! - [`membership_model`] models `MembershipView`, recomputed from the set of events seen;
//! - [`strategy`] generates membership events and delivery orders.
#![warn(missing_docs)]

pub mod group_cluster;
pub mod membership_model;
pub mod sharded_model;
pub mod store_model;
pub mod strategy;
pub mod tinylfu_model;
