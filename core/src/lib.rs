//! Sans-IO core of LCache.
//!
//! Every decision the cache makes lives here as a plain state machine: what is stored and evicted
//! ([`store`], [`sharded`]), who owns a key ([`ring`]), whether a load is already in flight
//! ([`singleflight`]), who is in the cluster ([`membership`]) and where a request goes ([`router`]).
//! Nothing here performs IO, reads a clock (time is passed in as [`Timestamp`]), draws ambient
//! randomness or iterates in an order chosen by a random hasher, so the same inputs give the same
//! outputs in every process and under any runtime.
#![warn(missing_docs)]

pub mod hash;
pub mod time;

pub use time::Timestamp;
