//! What both clients share: [`ClientConfig`] and how an address is validated.

use std::time::Duration;

use http::Uri;

/// Settings of the gRPC clients ([`crate::GrpcTransport`] and [`crate::CacheClient`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of [`crate::CacheClient`] calls (peer calls take theirs as an argument).
    pub request_timeout: Duration,
    /// Largest message sent or received, in bytes; a larger request fails before it is sent.
    pub max_message_bytes: usize,
    /// Interval of HTTP/2 keepalive pings on a busy connection; `None` disables them.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long to wait for a keepalive ping's answer before the connection counts as dead.
    pub http2_keepalive_timeout: Duration,
    /// How long a stream this client reset (a call abandoned at its timeout) is remembered, so
    /// that the late answer is dropped silently rather than answered with `RST_STREAM`. h2 measures
    /// it on the wall clock (`std::time::Instant`), so a deterministic simulation sets it longer
    /// than any run (the number remembered stays bounded by h2's limit of 50 per connection).
    pub http2_reset_stream_duration: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
            http2_keepalive_interval: Some(Duration::from_secs(10)),
            http2_keepalive_timeout: Duration::from_secs(5),
            http2_reset_stream_duration: Duration::from_secs(1),
        }
    }
}

/// Checks that `addr` is a `host:port` address (no scheme, no path), as every client takes it.
pub(crate) fn validate_addr(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("address is empty".into());
    }
    if addr.contains("://") || addr.contains('/') {
        return Err("expected host:port without scheme or path".into());
    }
    let uri: Uri = format!("http://{addr}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    if uri.port_u16().is_none() {
        return Err("missing port".into());
    }
    Ok(())
}
