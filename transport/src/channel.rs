//! What both clients share: [`ClientConfig`], how an address becomes a tonic endpoint and channel,
//! and how one unary call is made, bounded and classified.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tower::Service;

use crate::convert::{classify, Failure};
use crate::io::{BoxError, TokioConnector};
use crate::proto::cache_client::CacheClient as GrpcClient;

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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
            http2_keepalive_interval: Some(Duration::from_secs(10)),
            http2_keepalive_timeout: Duration::from_secs(5),
        }
    }
}

/// Makes a lazily connecting channel for an endpoint (the normal connector or an injected one).
pub(crate) type ChannelFactory = Arc<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// The factory of channels over the normal HTTP (TCP) connector.
pub(crate) fn http_channels() -> ChannelFactory {
    Arc::new(|endpoint: &Endpoint| endpoint.connect_lazy())
}

/// The factory of channels over an injected connector.
pub(crate) fn connector_channels<C>(connector: C) -> ChannelFactory
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    Arc::new(move |endpoint: &Endpoint| {
        endpoint.connect_with_connector_lazy(TokioConnector(connector.clone()))
    })
}

/// The endpoint for a `host:port` address, with the config's connection settings.
pub(crate) fn endpoint(addr: &str, config: &ClientConfig) -> Result<Endpoint, String> {
    if addr.is_empty() {
        return Err("address is empty".into());
    }
    if addr.contains("://") || addr.contains('/') {
        return Err("expected host:port without scheme or path".into());
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?;
    if endpoint.uri().port_u16().is_none() {
        return Err("missing port".into());
    }
    let endpoint = endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .keep_alive_timeout(config.http2_keepalive_timeout);
    Ok(match config.http2_keepalive_interval {
        Some(interval) => endpoint.http2_keep_alive_interval(interval),
        None => endpoint,
    })
}

/// The generated client over `channel`, with the config's message limits.
pub(crate) fn grpc_client(channel: Channel, config: &ClientConfig) -> GrpcClient<Channel> {
    GrpcClient::new(channel)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
}

/// Longest `grpc-timeout` sent (about 3 years); tonic cannot encode absurdly long durations.
const MAX_WIRE_TIMEOUT: Duration = Duration::from_secs(99_999_999);

/// Makes one unary call: checks the request size, sets `grpc-timeout`, bounds the wait by
/// `timeout` on the local (tokio) clock and classifies an error status.
pub(crate) async fn unary<M, R, Fut>(
    max_message_bytes: usize,
    message: M,
    timeout: Duration,
    call: impl FnOnce(Request<M>) -> Fut,
) -> Result<R, Failure>
where
    M: prost::Message,
    Fut: Future<Output = Result<Response<R>, Status>>,
{
    let size = message.encoded_len();
    if size > max_message_bytes {
        return Err(Failure::MessageTooLarge(format!(
            "request is {size} bytes, the limit is {max_message_bytes} bytes"
        )));
    }
    let mut request = Request::new(message);
    request.set_timeout(timeout.min(MAX_WIRE_TIMEOUT));
    match tokio::time::timeout(timeout, call(request)).await {
        Err(_elapsed) => Err(Failure::DeadlineExceeded),
        Ok(Err(status)) => Err(classify(&status)),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}
