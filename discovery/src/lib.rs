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
pub use etcd::{EtcdConfig, EtcdDiscovery, EtcdTls, Registration};
pub use static_peers::{parse_peers, StaticDiscovery};

use lcache_core::member::Member;
use lcache_core::membership::MembershipEvent;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bound of the event channel a node hands to [`Discovery::join`]; events past it wait (backpressure).
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// What a discovery must call when this node's registration was lost (its lease expired or was
/// revoked, its key vanished) — synchronously, *before* it registers the node again.
///
/// While the node was out of the membership, its peers took over its keys and acknowledged
/// writes to them. Once it is registered again they route those keys back to it, so whatever it
/// still holds from before would undo those writes: the node drops it in this call (fencing).
/// Calling it before re-registering, not through the event channel, is what makes that safe: no
/// peer can route to the new registration before the node has dropped its old data.
#[derive(Clone)]
pub struct Fence(Arc<dyn Fn() + Send + Sync>);

impl Fence {
    /// A fence that runs `raise` each time the registration is lost.
    pub fn new(raise: impl Fn() + Send + Sync + 'static) -> Self {
        Fence(Arc::new(raise))
    }

    /// A fence that does nothing (for a node with nothing to drop, or tests).
    pub fn none() -> Self {
        Fence::new(|| {})
    }

    /// Tells the node its registration was lost; returns once it dropped what it must.
    pub fn raise(&self) {
        (self.0)();
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fence")
    }
}

/// A membership backend: registers this node and reports who else is alive.
///
/// The node calls [`join`](Discovery::join) once at start and [`leave`](Discovery::leave) once
/// on graceful shutdown. Events are delivered on the sender given to `join` until `leave`
/// (or until the receiver is dropped); the first event is a full snapshot. Implementations keep
/// retrying on their own while the backend is unreachable, so the node keeps serving with the
/// last view it has, and raise `fence` whenever they find the registration lost, before they
/// register again.
pub trait Discovery: Send + Sync + 'static {
    /// Register `me`, start delivering membership events to `events`, and raise `fence` each
    /// time the registration is lost (before registering again).
    fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> impl Future<Output = Result<(), DiscoveryError>> + Send;

    /// Deregister so peers drop this node at once, and stop delivering events.
    fn leave(&self) -> impl Future<Output = Result<(), DiscoveryError>> + Send;

    /// The state of this node's session with the backend now, for monitoring. A backend with
    /// nothing to lose (a static list) is always connected and registered.
    fn session(&self) -> SessionState {
        SessionState {
            connected: true,
            registered: true,
        }
    }
}

/// How a node's session with its discovery backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// The backend answers: for etcd, the membership watch is established.
    pub connected: bool,
    /// This node's registration stands: for etcd, its lease is alive (renewed within its TTL).
    pub registered: bool,
}
