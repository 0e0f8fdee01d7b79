//! Error types: one enum per side of an RPC.
//!
//! - [`ServiceError`]: what a [`crate::CacheHandler`] returns; mapped to a gRPC status on the wire.
//! - [`TransportError`]: what a peer call through a [`crate::Transport`] returns.
//! - [`ClientError`]: what a [`crate::CacheClient`] call returns.
//! - [`ServeError`]: why a server stopped with an error.
//!
//! Statuses are classified once (`convert::classify`) and both [`TransportError`] and
//! [`ClientError`] are built from that classification, so the two clients agree on every code.

use std::time::Duration;

use lcache_core::member::MemberId;
use tonic::Code;

/// Error a [`crate::CacheHandler`] returns; the server maps it to a gRPC status.
///
/// | variant             | gRPC code            | `lcache-error` trailer |
/// |---------------------|----------------------|------------------------|
/// | `InvalidArgument`   | `INVALID_ARGUMENT`   |                        |
/// | `UnknownGroup`      | `INVALID_ARGUMENT`   | `unknown-group` (and the group in `lcache-group-bin`) |
/// | `Unavailable`       | `UNAVAILABLE`        |                        |
/// | `NotServing`        | `UNAVAILABLE`        | `not-serving`          |
/// | `NotOwner`          | `UNAVAILABLE`        | `not-owner`            |
/// | `LoadFailed`        | `UNAVAILABLE`        | `load-failed`          |
/// | `DeadlineExceeded`  | `DEADLINE_EXCEEDED`  |                        |
/// | `ResourceExhausted` | `RESOURCE_EXHAUSTED` |                        |
/// | `Internal`          | `INTERNAL`           |                        |
///
/// A `Get` miss is not an error: the handler returns `Ok(None)` and the server answers `NOT_FOUND`.
/// The trailers let a forwarding node tell an owner that cannot serve at all (`not-serving`: it
/// may load locally instead) from one that answered (`load-failed`, `not-owner`: it must not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed (the message says how).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node has no group of this name.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// The node cannot serve the request now (e.g. the key's owner is unreachable).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node is shutting down and takes no new requests.
    #[error("not serving: {0}")]
    NotServing(String),
    /// A forwarded write reached a node that does not own the key in its view; retry later
    /// (views disagree while membership changes).
    #[error("not the owner: {0}")]
    NotOwner(String),
    /// The group's loader failed on this node.
    #[error("loading failed: {0}")]
    LoadFailed(String),
    /// The request's deadline passed before it completed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A limit was hit (too many waiters, value larger than the budget, ...).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A bug or an unexpected failure on the node (e.g. a loader that panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Error of a call to a peer through a [`crate::Transport`].
///
/// Every variant names the peer and the address dialled. [`TransportError::is_unreachable`] says
/// whether the peer could not be asked at all, the one case in which the node may serve the
/// request itself (e.g. run the loader locally); [`TransportError::code`] gives the gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The member's address is not a valid `host:port`.
    #[error("peer {peer}: invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The peer.
        peer: MemberId,
        /// The address as announced.
        addr: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No connection to the peer could be made, or it broke before the peer answered: the
    /// peer is unreachable from here.
    #[error("peer {peer} ({addr}) unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The peer answered that it does not serve (it is shutting down).
    #[error("peer {peer} ({addr}) is not serving: {reason}")]
    NotServing {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The peer's message.
        reason: String,
    },
    /// The peer refused a forwarded write: it does not own the key in its view.
    #[error("peer {peer} ({addr}) does not own the key: {reason}")]
    NotOwner {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The peer's message.
        reason: String,
    },
    /// The peer's loader failed for the key.
    #[error("loading failed on peer {peer} ({addr}): {reason}")]
    LoadFailed {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The peer's message.
        reason: String,
    },
    /// The peer answered `UNAVAILABLE` for another reason.
    #[error("peer {peer} ({addr}) unavailable: {reason}")]
    Unavailable {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// What the peer said.
        reason: String,
    },
    /// No answer within the timeout (`DEADLINE_EXCEEDED` or `CANCELLED`, or the local timer).
    #[error("peer {peer} ({addr}): no answer within {timeout:?}")]
    DeadlineExceeded {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The timeout of the call.
        timeout: Duration,
    },
    /// The peer is out of some resource (`RESOURCE_EXHAUSTED`), e.g. overloaded.
    #[error("peer {peer} ({addr}) out of resources: {message}")]
    ResourceExhausted {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The peer's message.
        message: String,
    },
    /// The request or the response exceeds a message size limit (`OUT_OF_RANGE`).
    #[error("peer {peer} ({addr}): message too large: {message}")]
    MessageTooLarge {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// Sizes and limit.
        message: String,
    },
    /// The peer has no group of this name (`INVALID_ARGUMENT` marked as unknown group): the
    /// cluster's nodes disagree about their groups.
    #[error("peer {peer} ({addr}) has no group {group:?}")]
    UnknownGroup {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The group.
        group: String,
    },
    /// The peer answered with any other error status.
    #[error("peer {peer} ({addr}) rejected the request: {code:?}: {message}")]
    Rejected {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// The status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl TransportError {
    /// The peer the call was addressed to.
    pub fn peer(&self) -> &MemberId {
        match self {
            TransportError::InvalidAddress { peer, .. }
            | TransportError::Unreachable { peer, .. }
            | TransportError::NotServing { peer, .. }
            | TransportError::NotOwner { peer, .. }
            | TransportError::LoadFailed { peer, .. }
            | TransportError::Unavailable { peer, .. }
            | TransportError::DeadlineExceeded { peer, .. }
            | TransportError::ResourceExhausted { peer, .. }
            | TransportError::MessageTooLarge { peer, .. }
            | TransportError::UnknownGroup { peer, .. }
            | TransportError::Rejected { peer, .. } => peer,
        }
    }

    /// The gRPC code that best describes the error.
    pub fn code(&self) -> Code {
        match self {
            TransportError::InvalidAddress { .. }
            | TransportError::Unreachable { .. }
            | TransportError::NotServing { .. }
            | TransportError::NotOwner { .. }
            | TransportError::LoadFailed { .. }
            | TransportError::Unavailable { .. } => Code::Unavailable,
            TransportError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            TransportError::ResourceExhausted { .. } => Code::ResourceExhausted,
            TransportError::MessageTooLarge { .. } => Code::OutOfRange,
            TransportError::UnknownGroup { .. } => Code::InvalidArgument,
            TransportError::Rejected { code, .. } => *code,
        }
    }

    /// True when the peer could not be asked at all: its address is unusable, no connection
    /// could be made, the connection broke before it answered, or it said it is not serving.
    /// Only then may another node serve the request in its place (e.g. by loading locally):
    /// when the peer answered — its loader failed, it is overloaded or slow, it refused — the
    /// answer stands, and loading elsewhere would only multiply the load on a struggling source.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            TransportError::InvalidAddress { .. }
                | TransportError::Unreachable { .. }
                | TransportError::NotServing { .. }
        )
    }
}

/// Error of a [`crate::CacheClient`] call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server address is not a valid `host:port`.
    #[error("invalid server address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address given.
        addr: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("server {addr} unavailable: {reason}")]
    Unavailable {
        /// The server address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("server {addr}: no answer within {timeout:?}")]
    DeadlineExceeded {
        /// The server address.
        addr: String,
        /// The timeout of the call.
        timeout: Duration,
    },
    /// The server is out of some resource.
    #[error("server {addr} out of resources: {message}")]
    ResourceExhausted {
        /// The server address.
        addr: String,
        /// The server's message.
        message: String,
    },
    /// The request or the response exceeds a message size limit.
    #[error("server {addr}: message too large: {message}")]
    MessageTooLarge {
        /// The server address.
        addr: String,
        /// Sizes and limit.
        message: String,
    },
    /// The server has no group of this name.
    #[error("server {addr} has no group {group:?}")]
    UnknownGroup {
        /// The server address.
        addr: String,
        /// The group.
        group: String,
    },
    /// The server (or this client, before sending) judged the request invalid.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The server address.
        addr: String,
        /// What is wrong.
        message: String,
    },
    /// The server answered with any other error status.
    #[error("server {addr} failed the request: {code:?}: {message}")]
    Failed {
        /// The server address.
        addr: String,
        /// The status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

/// Why [`crate::serve`] or [`crate::serve_with_incoming`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Server(#[source] tonic::transport::Error),
    /// The server's settings cannot serve (the message says which).
    #[error("invalid server settings: {0}")]
    InvalidConfig(String),
}
