//! Errors of membership backends.

use std::time::Duration;

/// Any error a backend's client library reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a discovery operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The configured peers or options are malformed.
    #[error("invalid discovery configuration: {0}")]
    InvalidConfig(String),
    /// The backend could not be reached or refused the operation.
    #[error("discovery backend unavailable: {0}")]
    Unavailable(String),
    /// One request to the backend failed.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done, e.g. "etcd put /lcache/prod/members/a".
        context: String,
        /// What the backend's client said.
        source: BoxError,
    },
    /// One request to the backend got no answer in time.
    #[error("{context}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        context: String,
        /// How long it waited.
        after: Duration,
    },
    /// The node's event receiver is gone, so there is nobody to report to.
    #[error("membership event receiver closed")]
    Closed,
}
