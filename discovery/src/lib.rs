//! How LCache nodes find each other.
//!
//! A [`Discovery`] registers the local node with the cluster and feeds the node's
//! [`MembershipView`](lcache_core::membership::MembershipView) with revisioned
//! [`MembershipEvent`]s: a snapshot first, then changes. Implementations: [`StaticDiscovery`]
//! (a fixed peer list, the embedded default) and, behind the `etcd` feature,
//! `EtcdDiscovery` (a lease, its keepalive and a watch; see the `etcd` module).
#![warn(missing_docs)]

pub mod backoff;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
mod static_peers;

pub use error::{BoxError, DiscoveryError};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdDiscovery, Registration};
pub use static_peers::{parse_peers, StaticDiscovery};

use lcache_core::member::Member;
use lcache_core::membership::MembershipEvent;
use std::future::Future;
use tokio::sync::mpsc;

/// Bound of the event channel a node hands to [`Discovery::join`]; events past it wait (backpressure).
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// A membership backend: registers this node and reports who else is alive.
///
/// The node calls [`join`](Discovery::join) once at start and [`leave`](Discovery::leave) once
/// on graceful shutdown. Events are delivered on the sender given to `join` until `leave`
/// (or until the receiver is dropped); the first event is a full snapshot. Implementations keep
/// retrying on their own while the backend is unreachable, so the node keeps serving with the
/// last view it has.
pub trait Discovery: Send + Sync + 'static {
    /// Register `me` and start delivering membership events to `events`.
    fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send;

    /// Deregister so peers drop this node at once, and stop delivering events.
    fn leave(&self) -> impl Future<Output = Result<(), DiscoveryError>> + Send;
}
