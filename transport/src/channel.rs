//! What both clients share: [`ClientConfig`], how an address is validated, and how channels to
//! an address are made (over TCP or an injected connector).

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use crate::h2channel::H2Channel;
use crate::io::BoxError;
use crate::tls::TlsConfig;

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

/// Makes the channel to one peer address (dialled lazily, on its first call).
pub(crate) type ChannelFactory =
    Arc<dyn Fn(&str, &ClientConfig) -> Result<H2Channel, String> + Send + Sync>;

/// The factory of channels over TCP.
pub(crate) fn http_channels() -> ChannelFactory {
    Arc::new(|addr: &str, config: &ClientConfig| H2Channel::tcp(addr, config.clone()))
}

/// The factory of channels over TCP and TLS.
pub(crate) fn tls_channels(tls: TlsConfig) -> ChannelFactory {
    Arc::new(move |addr: &str, config: &ClientConfig| H2Channel::tls(addr, config.clone(), &tls))
}

/// The factory of channels over an injected connector (each channel dials with its own clone).
pub(crate) fn connector_channels<C>(connector: C) -> ChannelFactory
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    Arc::new(move |addr: &str, config: &ClientConfig| {
        H2Channel::with_connector(addr, config.clone(), connector.clone())
    })
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
