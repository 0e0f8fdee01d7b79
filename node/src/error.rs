//! Errors a node reports for a request, and how they map onto the wire.

use lcache_core::limits::LimitError;
use lcache_core::store::StoreError;
use lcache_transport::{ServiceError, TransportError};

/// Why a group operation failed. Cheap to clone: one load result is delivered to every waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The key or value breaks a limit (empty key, key or value too large).
    #[error(transparent)]
    Invalid(#[from] LimitError),
    /// The value is larger than the group's store can ever hold.
    #[error("group `{group}`: {reason}")]
    TooLarge {
        /// Group addressed.
        group: String,
        /// What the store said.
        reason: String,
    },
    /// No group of this name is hosted here.
    #[error("unknown group `{0}`")]
    UnknownGroup(String),
    /// Too many requests in flight, or too many callers waiting on one key.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The request's deadline passed before it completed.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// The key's owner could not be reached for a write.
    #[error("owner `{owner}` unavailable: {reason}")]
    OwnerUnavailable {
        /// Owner's member id.
        owner: String,
        /// What the transport said.
        reason: String,
    },
    /// The owner refused the forwarded request.
    #[error("owner `{owner}` rejected the request: {reason}")]
    OwnerRejected {
        /// Owner's member id.
        owner: String,
        /// What the owner said.
        reason: String,
    },
    /// The group's loader failed or timed out.
    #[error("loading failed: {0}")]
    Load(String),
    /// The node is shutting down and takes no new requests.
    #[error("node is shutting down")]
    ShuttingDown,
}

impl RequestError {
    pub(crate) fn from_store(group: &str, err: StoreError) -> Self {
        RequestError::TooLarge {
            group: group.to_string(),
            reason: err.to_string(),
        }
    }

    pub(crate) fn from_transport(owner: &str, err: &TransportError) -> Self {
        if err.is_peer_failure() {
            RequestError::OwnerUnavailable {
                owner: owner.to_string(),
                reason: err.to_string(),
            }
        } else {
            RequestError::OwnerRejected {
                owner: owner.to_string(),
                reason: err.to_string(),
            }
        }
    }
}

impl From<RequestError> for ServiceError {
    fn from(err: RequestError) -> Self {
        let message = err.to_string();
        match err {
            RequestError::Invalid(_) | RequestError::TooLarge { .. } => {
                ServiceError::InvalidArgument(message)
            }
            RequestError::OwnerRejected { .. } => ServiceError::InvalidArgument(message),
            RequestError::UnknownGroup(group) => ServiceError::UnknownGroup(group),
            RequestError::Overloaded(_) => ServiceError::ResourceExhausted(message),
            RequestError::DeadlineExceeded(_) => ServiceError::DeadlineExceeded(message),
            RequestError::OwnerUnavailable { .. }
            | RequestError::Load(_)
            | RequestError::ShuttingDown => ServiceError::Unavailable(message),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A group's settings are unusable.
    #[error("group `{group}`: {reason}")]
    InvalidGroup {
        /// Group concerned.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// Two groups share a name.
    #[error("group `{0}` is configured twice")]
    DuplicateGroup(String),
    /// The discovery backend refused the node.
    #[error("joining the cluster failed: {0}")]
    Discovery(#[from] lcache_discovery::DiscoveryError),
}
