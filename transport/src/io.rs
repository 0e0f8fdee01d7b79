//! The error type of the byte-stream seams: the server accepts any tokio byte stream
//! ([`crate::serve_with_incoming`]) and clients take any connector
//! ([`crate::CacheClient::connect_with_connector`]).
//!
//! This is the seam a simulated network (turmoil) plugs into: its listener yields
//! `AsyncRead + AsyncWrite` streams and its `connect` is a `tower::Service<Uri>`.

/// Boxed error, as tonic and tower use it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
