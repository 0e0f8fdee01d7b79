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
/// | variant             | gRPC code            |
/// |---------------------|----------------------|
/// | `InvalidArgument`   | `INVALID_ARGUMENT`   |
/// | `UnknownGroup`      | `INVALID_ARGUMENT` (message names the group, plus an `lcache-error: unknown-group` trailer) |
/// | `Unavailable`       | `UNAVAILABLE`        |
/// | `DeadlineExceeded`  | `DEADLINE_EXCEEDED`  |
/// | `ResourceExhausted` | `RESOURCE_EXHAUSTED` |
/// | `Internal`          | `INTERNAL`           |
///
/// A `Get` miss is not an error: the handler returns `Ok(None)` and the server answers `NOT_FOUND`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed (the message says how).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node has no group of this name.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// The node cannot serve the request now (shutting down, owner unreachable, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request's deadline passed before it completed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// A limit was hit (too many waiters, value larger than the budget, ...).
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A bug or an unexpected failure on the node (e.g. a loader error).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Error of a call to a peer through a [`crate::Transport`].
///
/// Every variant names the peer and the address dialled. Use [`TransportError::is_peer_failure`] to
/// decide whether the peer is sick and [`TransportError::is_retryable_elsewhere`] to decide whether
/// the node may serve the request itself (e.g. run the loader locally).
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
    /// The peer could not be reached or the connection broke (`UNAVAILABLE`).
    #[error("peer {peer} ({addr}) unavailable: {reason}")]
    Unavailable {
        /// The peer.
        peer: MemberId,
        /// The address dialled.
        addr: String,
        /// What failed.
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
            TransportError::InvalidAddress { .. } | TransportError::Unavailable { .. } => {
                Code::Unavailable
            }
            TransportError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            TransportError::ResourceExhausted { .. } => Code::ResourceExhausted,
            TransportError::MessageTooLarge { .. } => Code::OutOfRange,
            TransportError::UnknownGroup { .. } => Code::InvalidArgument,
            TransportError::Rejected { code, .. } => *code,
        }
    }

    /// True when the peer, or the path to it, failed: unreachable, too slow, overloaded, a bad
    /// address, or an internal error on the peer. Such errors say nothing about the request and
    /// count against the peer's health.
    pub fn is_peer_failure(&self) -> bool {
        match self {
            TransportError::InvalidAddress { .. }
            | TransportError::Unavailable { .. }
            | TransportError::DeadlineExceeded { .. }
            | TransportError::ResourceExhausted { .. } => true,
            TransportError::MessageTooLarge { .. } | TransportError::UnknownGroup { .. } => false,
            TransportError::Rejected { code, .. } => code_is_peer_failure(*code),
        }
    }

    /// True when another node (typically this one, by running the loader locally) may still serve
    /// the request: every peer failure, plus a peer that does not know the group or whose answer is
    /// too large to carry. False only when the peer judged the request itself invalid, which would
    /// fail anywhere.
    pub fn is_retryable_elsewhere(&self) -> bool {
        match self {
            TransportError::MessageTooLarge { .. } | TransportError::UnknownGroup { .. } => true,
            other => other.is_peer_failure(),
        }
    }
}

/// Codes that mean "the peer broke", as opposed to "the peer judged the request".
fn code_is_peer_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::Internal
            | Code::Unimplemented
            | Code::Aborted
            | Code::DataLoss
            | Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
    )
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
