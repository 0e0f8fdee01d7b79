//! Server side: the [`CacheHandler`] a node implements, its settings, and the functions that
//! serve it as the `lcache.v1.Cache` API with the standard gRPC health service (the HTTP/2 loop
//! itself is `h2server.rs`).
//!
//! Status mapping: see [`ServiceError`]; a `Get` miss (`Ok(None)`) is answered `NOT_FOUND`.
//! Requests that fail validation (empty group or key, `hops > 1`, `ttl_ms = 0`) are answered
//! `INVALID_ARGUMENT` without reaching the handler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::Status;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::util::BoxCloneSyncService;

use crate::deadline::Deadline;
use crate::error::{ServeError, ServiceError};
use crate::grpc_headers::GRPC_TIMEOUT;
use crate::h2server::{serve_connection, Shared};
use crate::io::BoxError;
use crate::limits::ConnectionSlots;
use crate::observe::{Outcome, Rpc};
use crate::proto;
use crate::tls::{tls_incoming, TlsConfig};
use crate::types::{DeleteRequest, Fetched, GetRequest, InvalidateRequest, NodeStats, SetRequest};

/// Name of the gRPC service, as the health service reports it.
pub const SERVICE_NAME: &str = proto::cache_server::SERVICE_NAME;

/// What a node implements to answer the cache API.
///
/// `deadline` is when the caller stops waiting: its `grpc-timeout` from when the request arrived,
/// capped by [`ServerConfig::max_request_timeout`]. The server drops the returned future when the
/// deadline passes (the caller then sees `CANCELLED`), so a handler needs the deadline only to
/// budget the calls it makes itself (e.g. forwarding to the owner).
///
/// `arrived` is when the front door read the request (for RESP, the pipelined batch it came
/// in): the start of its latency and the "now" of the node's decisions about it, so the clock
/// is read once on the way in, not again by the handler.
pub trait CacheHandler: Send + Sync + 'static {
    /// The value of `req.key`, `Ok(None)` on a miss.
    fn get(
        &self,
        req: GetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> impl Future<Output = Result<Option<Fetched>, ServiceError>> + Send;

    /// Stores a value.
    fn set(
        &self,
        req: SetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Removes a key; `Ok(true)` when the owner held it.
    fn delete(
        &self,
        req: DeleteRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send;

    /// Drops this node's copies of a key another node wrote.
    fn invalidate(
        &self,
        req: InvalidateRequest,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Stats of one group (`Some`) or of every group (`None`).
    fn stats(
        &self,
        group: Option<String>,
    ) -> impl Future<Output = Result<NodeStats, ServiceError>> + Send;

    /// `count` requests of `rpc` that ended with `outcome` were answered `elapsed` after they
    /// arrived: the front doors time what they serve and report it here (see
    /// [`crate::observe`]). By default nothing is recorded.
    fn observe(&self, rpc: Rpc, outcome: Outcome, elapsed: Duration, count: u64) {
        let _ = (rpc, outcome, elapsed, count);
    }
}

/// Settings of the gRPC server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest message decoded or encoded, in bytes (requests and responses).
    pub max_message_bytes: usize,
    /// Upper bound on any request's deadline; also the deadline of requests without
    /// `grpc-timeout`.
    pub max_request_timeout: Duration,
    /// Requests served at once on one connection; more are refused with `RESOURCE_EXHAUSTED`.
    pub concurrency_limit_per_connection: Option<usize>,
    /// HTTP/2 streams a client may open at once on one connection (more are refused by HTTP/2).
    pub max_concurrent_streams: Option<u32>,
    /// Connections held at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Bytes of request bodies held at once over all connections (received, or held by a
    /// request being served); a request that would pass it is refused with `RESOURCE_EXHAUSTED`.
    /// Raised to at least `max_message_bytes`, so the largest request can always be served alone.
    pub max_request_bytes: usize,
    /// Interval of HTTP/2 keepalive pings to detect dead clients; `None` disables them.
    pub http2_keepalive_interval: Option<Duration>,
    /// How long to wait for a keepalive ping's answer before closing the connection.
    pub http2_keepalive_timeout: Option<Duration>,
    /// Mutual TLS on every connection (see [`crate::tls`]); `None` serves plain text.
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// Default of [`ServerConfig::max_connections`].
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
    /// Default of [`ServerConfig::max_concurrent_streams`] (and of the per-connection limit).
    pub const DEFAULT_STREAMS_PER_CONNECTION: u32 = 128;
    /// Default of [`ServerConfig::max_request_bytes`]: 64 MiB.
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_bytes: 4 * 1024 * 1024,
            max_request_timeout: Duration::from_secs(30),
            concurrency_limit_per_connection: Some(Self::DEFAULT_STREAMS_PER_CONNECTION as usize),
            max_concurrent_streams: Some(Self::DEFAULT_STREAMS_PER_CONNECTION),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_request_bytes: Self::DEFAULT_MAX_REQUEST_BYTES,
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Some(Duration::from_secs(10)),
            tls: None,
        }
    }
}

/// The deadline of a request: its `grpc-timeout` from `received`, capped by `max` (which is
/// also the deadline of a request without one).
pub(crate) fn deadline_of(headers: &http::HeaderMap, max: Duration, received: Instant) -> Deadline {
    let header = headers
        .get(GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let timeout = header.map_or(max, |h| h.min(max));
    received
        .checked_add(timeout)
        .map_or_else(|| Deadline::after(timeout), Deadline::at)
}

/// Parses a `grpc-timeout` header value (1 to 8 ASCII digits and a unit of `H M S m u n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = value.get(..value.len() - unit.len_utf8())?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Turns a handler's or validation's error into a status, logging what deserves it.
pub(crate) fn reject(op: &'static str, err: ServiceError) -> Status {
    match &err {
        ServiceError::Internal(m) => tracing::warn!(op, error = %m, "request failed"),
        other => tracing::debug!(op, error = %other, "request refused"),
    }
    err.into()
}

/// Serves on a bound TCP listener until `shutdown` resolves.
///
/// On shutdown the health service turns `NOT_SERVING`, the listener is dropped (no new
/// connections), and the function returns once every in-flight request has completed and every
/// connection has closed.
pub async fn serve<H: CacheHandler>(
    handler: Arc<H>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving lcache.v1.Cache"),
        Err(e) => tracing::info!(error = %e, "serving lcache.v1.Cache (address unknown)"),
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_with_incoming(handler, config, incoming, shutdown).await
}

/// Serves the connections `incoming` yields until `shutdown` resolves, like [`serve`].
///
/// Each item is a connected byte stream (a TCP stream, a simulated stream, an in-memory duplex);
/// an `Err` item is logged and skipped. When `incoming` ends, the server stops accepting and
/// returns after the open connections close. With [`ServerConfig::tls`], each connection is
/// admitted (counted against `max_connections`), then its TLS handshake runs on a task of its
/// own; a connection whose handshake fails is closed without reaching the service.
///
/// Connections are served by `transport/src/h2server.rs` (HTTP/2 on `h2`, each connection's
/// streams answered in its own task; tonic's generated service answers only the health
/// service's paths).
pub async fn serve_with_incoming<H, I, IO, IE>(
    handler: Arc<H>,
    config: ServerConfig,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    H: CacheHandler,
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    IE: Into<BoxError> + Send + 'static,
{
    let slots = ConnectionSlots::new(config.max_connections);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let fallback = BoxCloneSyncService::new(health_service);
    let shared = Arc::new(Shared::new(handler, &config, fallback));
    let admitted = incoming.try_filter_map(move |io| std::future::ready(Ok(slots.admit(io))));
    match config.tls {
        None => accept_loop(shared, admitted, shutdown, health).await,
        Some(tls) => {
            let secured = tls_incoming(admitted, tls.acceptor());
            accept_loop(shared, secured, shutdown, health).await
        }
    }
}

/// Accepts connections until `shutdown` resolves or `connections` ends, serving each on a task
/// of its own; then drains (see [`serve_with_incoming`]).
async fn accept_loop<H, S, IO, E>(
    shared: Arc<Shared<H>>,
    connections: S,
    shutdown: impl Future<Output = ()>,
    health: HealthReporter,
) -> Result<(), ServeError>
where
    H: CacheHandler,
    S: Stream<Item = Result<IO, E>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    E: Into<BoxError>,
{
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut connections = Box::pin(connections);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accepting = true;
    let mut shut_down = false;
    while accepting || !tasks.is_empty() {
        // A fixed order (not tokio's random one), so a simulation replays exactly.
        tokio::select! {
            biased;
            () = &mut shutdown => {
                shut_down = true;
                break;
            }
            next = connections.next(), if accepting => match next {
                Some(Ok(io)) => {
                    tasks.spawn(serve_connection(shared.clone(), io, stopping.clone()));
                }
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    tracing::debug!(error = %e, "accepting a connection failed");
                }
                None => accepting = false,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_ended(joined),
        }
    }
    // No new connections: dropping the stream drops the listener.
    drop(connections);
    if shut_down {
        tracing::info!("shutting down: refusing new connections, draining in-flight requests");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let _ = stop.send(true);
    }
    while let Some(joined) = tasks.join_next().await {
        log_ended(joined);
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Logs a connection task that did not end normally.
fn log_ended(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::warn!(error = %e, "a connection's task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("30000000u"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_grpc_timeout("300000000u"), None, "more than 8 digits");
        assert_eq!(
            parse_grpc_timeout("9999999u"),
            Some(Duration::from_micros(9_999_999))
        );
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
    }

    #[test]
    fn grpc_timeout_garbage() {
        for bad in ["", "m", "12", "12x", "-1S", "+1S", "1.5S", "1é", "é", " 1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
