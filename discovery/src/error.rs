//! Errors of membership backends.

/// Why a discovery operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The configured peers or options are malformed.
    #[error("invalid discovery configuration: {0}")]
    InvalidConfig(String),
    /// The backend could not be reached or refused the operation.
    #[error("discovery backend unavailable: {0}")]
    Unavailable(String),
    /// The node's event receiver is gone, so there is nobody to report to.
    #[error("membership event receiver closed")]
    Closed,
}
