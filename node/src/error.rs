//! Errors a node reports for a request, and how they map onto the wire.

use lcache_core::group::Refusal;
use lcache_core::limits::LimitError;
use lcache_core::store::StoreError;
use lcache_transport::{ServiceError, TransportError};

/// Why a group operation failed. Cheap to clone: one load result is delivered to every waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The key or value breaks a limit (empty key, key or value too large).
    #[error(transparent)]
    Invalid(#[from] LimitError),
    /// The value is larger than the group's store can ever hold, or its TTL is zero.
    #[error("group `{group}`: {reason}")]
    TooLarge {
        /// Group addressed.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// No group of this name is hosted here.
    #[error("unknown group `{0}`")]
    UnknownGroup(String),
    /// A bound was reached: requests in flight, callers waiting on one key, loads on the node.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The request's deadline passed before it completed.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// The key's owner could not be reached, or could not serve.
    #[error("owner `{owner}` unavailable: {reason}")]
    OwnerUnavailable {
        /// Owner's member id.
        owner: String,
        /// What the transport said.
        reason: String,
    },
    /// The owner refused the forwarded request as invalid (the cluster's nodes disagree about
    /// their groups or limits).
    #[error("owner `{owner}` rejected the request: {reason}")]
    OwnerRejected {
        /// Owner's member id.
        owner: String,
        /// What the owner said.
        reason: String,
    },
    /// A forwarded write reached this node, which does not own the key in its view: retry
    /// (views disagree while membership changes).
    #[error("this node does not own the key (its owner is `{owner}`)")]
    NotOwner {
        /// The owner in this node's view.
        owner: String,
    },
    /// The group's loader failed or timed out (here, or on the key's owner).
    #[error("loading failed: {0}")]
    Load(String),
    /// An unexpected failure: a loader that panicked (here or on the owner), a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// The node is shutting down and takes no new requests.
    #[error("node is shutting down")]
    ShuttingDown,
}

impl From<Refusal> for RequestError {
    fn from(refusal: Refusal) -> Self {
        RequestError::Overloaded(refusal.to_string())
    }
}

impl RequestError {
    /// What every waiter of a load whose loader panicked gets.
    pub(crate) fn loader_panicked() -> Self {
        RequestError::Internal("loader panicked".into())
    }

    pub(crate) fn from_store(group: &str, err: StoreError) -> Self {
        RequestError::TooLarge {
            group: group.to_string(),
            reason: err.to_string(),
        }
    }

    /// The error a caller gets when the owner's answer (or the path to it) failed.
    pub(crate) fn from_transport(owner: &str, err: &TransportError) -> Self {
        let owner = owner.to_string();
        match err {
            TransportError::LoadFailed { reason, .. } => {
                RequestError::Load(format!("on owner `{owner}`: {reason}"))
            }
            TransportError::ResourceExhausted { message, .. } => {
                RequestError::Overloaded(format!("owner `{owner}`: {message}"))
            }
            TransportError::DeadlineExceeded { timeout, .. } => {
                RequestError::DeadlineExceeded(*timeout)
            }
            TransportError::Rejected { code, message, .. }
                if *code == lcache_transport::Code::Internal =>
            {
                RequestError::Internal(format!("on owner `{owner}`: {message}"))
            }
            TransportError::MessageTooLarge { .. }
            | TransportError::UnknownGroup { .. }
            | TransportError::Rejected { .. } => RequestError::OwnerRejected {
                owner,
                reason: err.to_string(),
            },
            TransportError::InvalidAddress { .. }
            | TransportError::Unreachable { .. }
            | TransportError::NotServing { .. }
            | TransportError::NotOwner { .. }
            | TransportError::Unavailable { .. } => RequestError::OwnerUnavailable {
                owner,
                reason: err.to_string(),
            },
        }
    }
}

impl From<RequestError> for ServiceError {
    fn from(err: RequestError) -> Self {
        let message = err.to_string();
        match err {
            RequestError::Invalid(_)
            | RequestError::TooLarge { .. }
            | RequestError::OwnerRejected { .. } => ServiceError::InvalidArgument(message),
            RequestError::UnknownGroup(group) => ServiceError::UnknownGroup(group),
            RequestError::Overloaded(_) => ServiceError::ResourceExhausted(message),
            RequestError::DeadlineExceeded(_) => ServiceError::DeadlineExceeded(message),
            RequestError::OwnerUnavailable { .. } => ServiceError::Unavailable(message),
            RequestError::NotOwner { .. } => ServiceError::NotOwner(message),
            RequestError::Load(_) => ServiceError::LoadFailed(message),
            RequestError::Internal(_) => ServiceError::Internal(message),
            RequestError::ShuttingDown => ServiceError::NotServing(message),
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
