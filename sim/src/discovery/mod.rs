//! A simulated discovery service with etcd's semantics, and the [`Discovery`] client nodes use
//! to reach it over the simulated network.
//!
//! - [`server`]: the registry host: leases with a TTL kept alive by the client, a revision that
//!   grows with every change, keys attached to leases (deleted when the lease expires or is
//!   revoked), and watches that send a snapshot then every change, with periodic progress
//!   notifications. Its data survives a crash of its host (like etcd's disk); a restart renews
//!   every lease's TTL (like an etcd leader change).
//! - [`client`]: [`SimDiscovery`], an implementation of the node's [`Discovery`] trait: it
//!   registers the member under a lease, keeps the lease alive, re-registers when the lease is
//!   lost, and turns the watch into revisioned [`MembershipEvent`]s, reconnecting on its own.
//!
//! Both speak a line protocol over turmoil TCP (see [`wire`]), so partitions cut a node off from
//! discovery exactly as they cut it off from peers, and lease expiry runs on simulated time.
//!
//! [`Discovery`]: lcache_discovery::Discovery
//! [`MembershipEvent`]: lcache_core::MembershipEvent

use std::time::Duration;

pub mod client;
pub mod server;
pub mod wire;

pub use client::SimDiscovery;
pub use server::{registry_software, RegistryState};

/// Host name of the discovery service.
pub const HOST: &str = "discovery";
/// Port it listens on.
pub const PORT: u16 = 2379;
/// Prefix of member keys.
pub const PREFIX: &str = "members/";
/// Bound of one request/response exchange with the registry.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How often the registry sends a progress notification on a quiet watch.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(1_000);
/// A watch that hears nothing (not even progress) for this long is reconnected.
pub const WATCH_IDLE_TIMEOUT: Duration = Duration::from_millis(3_000);
/// First delay before reconnecting; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay before reconnecting.
pub const MAX_BACKOFF: Duration = Duration::from_millis(1_000);
