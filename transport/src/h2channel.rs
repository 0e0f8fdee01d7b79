//! [`H2Channel`]: unary gRPC calls straight over one `h2` client connection, for
//! [`crate::CacheClient`] and [`crate::GrpcTransport`].
//!
//! tonic's `Channel` puts a `tower::buffer` task and hyper's dispatch task between the caller and
//! the HTTP/2 connection, and hyper sends a request's body from yet another task, so every call
//! costs three task hops and two socket writes (HEADERS, then DATA). Here the caller queues
//! HEADERS and the whole DATA frame on the `h2` stream itself before the connection task runs, so
//! a request is one write, and the response is read on the caller's task.
//!
//! The channel keeps tonic's contract: the connection is dialled by [`H2Channel::connect`] and
//! dialled again on the next call after it broke; keep-alive pings (while calls are open) close a
//! connection whose peer stopped answering; statuses, `grpc-timeout` and message limits are
//! handled as tonic does, and errors are classified with the same [`classify`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use parking_lot::Mutex;
use percent_encoding::percent_decode;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use crate::channel::{validate_addr, ClientConfig};
use crate::convert::{classify, error_chain, Failure};
use crate::grpc_headers::{GRPC_MESSAGE, GRPC_STATUS, GRPC_STATUS_DETAILS_BIN, GRPC_TIMEOUT};
use crate::io::BoxError;
use crate::tls::TlsConfig;

/// A connected byte stream of any kind (TCP, or a simulated network's stream).
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
type BoxIo = Box<dyn Io>;
type DialFuture<'a> = Pin<Box<dyn Future<Output = Result<BoxIo, BoxError>> + Send + 'a>>;

/// How a connection is established.
trait Dial: Send + Sync + 'static {
    fn dial(&self, uri: Uri) -> DialFuture<'_>;

    /// The URI scheme of the connections it makes.
    fn scheme(&self) -> &'static str {
        "http"
    }
}

/// Dials TCP, with `TCP_NODELAY` (as tonic's endpoint does).
struct TcpDial {
    addr: String,
}

impl Dial for TcpDial {
    fn dial(&self, _uri: Uri) -> DialFuture<'_> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(self.addr.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// Dials TCP (as [`TcpDial`]), then TLS, verifying the server for `server_name`.
struct TlsDial {
    addr: String,
    connector: tokio_rustls::TlsConnector,
    server_name: rustls_pki_types::ServerName<'static>,
}

impl Dial for TlsDial {
    fn dial(&self, _uri: Uri) -> DialFuture<'_> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(self.addr.as_str()).await?;
            stream.set_nodelay(true)?;
            let stream = self
                .connector
                .connect(self.server_name.clone(), stream)
                .await?;
            Ok(Box::new(stream) as BoxIo)
        })
    }

    fn scheme(&self) -> &'static str {
        "https"
    }
}

/// Dials through an injected `tower::Service<Uri>` connector (e.g. turmoil's).
struct ConnectorDial<C> {
    connector: tokio::sync::Mutex<C>,
}

impl<C> Dial for ConnectorDial<C>
where
    C: Service<Uri> + Send + 'static,
    C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    fn dial(&self, uri: Uri) -> DialFuture<'_> {
        Box::pin(async move {
            let connecting = {
                let mut connector = self.connector.lock().await;
                connector.ready().await.map_err(Into::into)?.call(uri)
            };
            let io = connecting.await.map_err(Into::into)?;
            Ok(Box::new(io) as BoxIo)
        })
    }
}

/// One established connection: the handle to open streams on it and what its driver reports.
#[derive(Clone)]
struct Live {
    send: SendRequest<Bytes>,
    /// Set by the driver when the connection ended (closed, failed, or keep-alive expired).
    closed: Arc<AtomicBool>,
    /// Calls open on the connection (the driver pings only while there are some).
    open_calls: Arc<AtomicUsize>,
}

/// The methods of `lcache.v1.Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    Get = 0,
    Set = 1,
    Delete = 2,
    Stats = 3,
    Invalidate = 4,
}

impl Rpc {
    const ALL: [Rpc; 5] = [Rpc::Get, Rpc::Set, Rpc::Delete, Rpc::Stats, Rpc::Invalidate];

    fn path(self) -> &'static str {
        match self {
            Rpc::Get => "/lcache.v1.Cache/Get",
            Rpc::Set => "/lcache.v1.Cache/Set",
            Rpc::Delete => "/lcache.v1.Cache/Delete",
            Rpc::Stats => "/lcache.v1.Cache/Stats",
            Rpc::Invalidate => "/lcache.v1.Cache/Invalidate",
        }
    }
}

struct Inner {
    /// `http://host:port`, the prefix of every request's URI.
    base: String,
    /// The URI of each [`Rpc`], in [`Rpc::ALL`] order.
    uris: [Uri; 5],
    /// `grpc-timeout` of the configured request timeout (the usual one), encoded once.
    default_timeout: HeaderValue,
    config: ClientConfig,
    dialer: Box<dyn Dial>,
    live: Mutex<Option<Live>>,
    /// Serialises dialling, so a broken connection is replaced once, not by every caller.
    dialling: tokio::sync::Mutex<()>,
}

/// A gRPC channel to one node over a single HTTP/2 connection. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub(crate) struct H2Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for H2Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Channel")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Why a connection could not be established.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// Not within the connect timeout.
    TimedOut,
    /// Refused, unreachable, or the HTTP/2 handshake failed.
    Failed(String),
}

/// Calls that may be open on one connection before more wait for a stream (the server's default
/// `max_concurrent_streams`; `h2` also honours the server's own setting).
const MAX_SEND_STREAMS: usize = 1024;

impl H2Channel {
    /// A channel to `addr` (`host:port`) over TCP.
    pub(crate) fn tcp(addr: &str, config: ClientConfig) -> Result<Self, String> {
        Self::with_dialer(
            addr,
            config,
            Box::new(TcpDial {
                addr: addr.to_owned(),
            }),
        )
    }

    /// A channel to `addr` over TCP and TLS (see [`crate::tls`]).
    pub(crate) fn tls(addr: &str, config: ClientConfig, tls: &TlsConfig) -> Result<Self, String> {
        validate_addr(addr)?;
        let dialer = TlsDial {
            addr: addr.to_owned(),
            connector: tls.connector(),
            server_name: tls.server_name_for(addr)?,
        };
        Self::with_dialer(addr, config, Box::new(dialer))
    }

    /// A channel to `addr` dialled through `connector`, which gets `http://host:port` URIs.
    pub(crate) fn with_connector<C>(
        addr: &str,
        config: ClientConfig,
        connector: C,
    ) -> Result<Self, String>
    where
        C: Service<Uri> + Send + 'static,
        C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        C::Future: Send + 'static,
        C::Error: Into<BoxError>,
    {
        Self::with_dialer(
            addr,
            config,
            Box::new(ConnectorDial {
                connector: tokio::sync::Mutex::new(connector),
            }),
        )
    }

    fn with_dialer(
        addr: &str,
        config: ClientConfig,
        dialer: Box<dyn Dial>,
    ) -> Result<Self, String> {
        validate_addr(addr)?;
        let base = format!("{}://{addr}", dialer.scheme());
        let uri = |rpc: Rpc| -> Result<Uri, String> {
            format!("{base}{}", rpc.path())
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())
        };
        let uris = [
            uri(Rpc::ALL[0])?,
            uri(Rpc::ALL[1])?,
            uri(Rpc::ALL[2])?,
            uri(Rpc::ALL[3])?,
            uri(Rpc::ALL[4])?,
        ];
        let default_timeout = timeout_header(config.request_timeout)?;
        Ok(H2Channel {
            inner: Arc::new(Inner {
                base,
                uris,
                default_timeout,
                config,
                dialer,
                live: Mutex::new(None),
                dialling: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Establishes the connection now, within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<(), ConnectFailure> {
        self.connection().await.map(drop)
    }

    /// The current connection, or a new one if there is none or it ended.
    async fn connection(&self) -> Result<Live, ConnectFailure> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _dialling = self.inner.dialling.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let timeout = self.inner.config.connect_timeout;
        let live = match tokio::time::timeout(timeout, self.dial()).await {
            Ok(Ok(live)) => live,
            Ok(Err(reason)) => return Err(ConnectFailure::Failed(reason)),
            Err(_elapsed) => return Err(ConnectFailure::TimedOut),
        };
        *self.inner.live.lock() = Some(live.clone());
        Ok(live)
    }

    fn current(&self) -> Option<Live> {
        let live = self.inner.live.lock();
        live.as_ref()
            .filter(|l| !l.closed.load(Ordering::Acquire))
            .cloned()
    }

    /// Connects, performs the HTTP/2 handshake and spawns the connection's driver.
    async fn dial(&self) -> Result<Live, String> {
        let uri: Uri = self
            .inner
            .base
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let io = self
            .inner
            .dialer
            .dial(uri)
            .await
            .map_err(|e| format!("connecting failed: {}", error_chain(&*e)))?;
        let (send, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(2 * 1024 * 1024)
            .initial_connection_window_size(5 * 1024 * 1024)
            .initial_max_send_streams(MAX_SEND_STREAMS)
            .reset_stream_duration(self.inner.config.http2_reset_stream_duration)
            .handshake::<BoxIo, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {}", error_chain(&e)))?;
        let live = Live {
            send,
            closed: Arc::new(AtomicBool::new(false)),
            open_calls: Arc::new(AtomicUsize::new(0)),
        };
        let keepalive = self
            .inner
            .config
            .http2_keepalive_interval
            .zip(connection.ping_pong())
            .map(|(interval, pings)| KeepAlive {
                interval,
                timeout: self.inner.config.http2_keepalive_timeout,
                pings,
                open_calls: live.open_calls.clone(),
            });
        let closed = live.closed.clone();
        tokio::spawn(async move {
            drive(connection, keepalive).await;
            closed.store(true, Ordering::Release);
        });
        Ok(live)
    }

    /// Makes one unary call of `rpc`, bounded by `timeout` on the local (tokio) clock, which is
    /// also sent as `grpc-timeout`.
    pub(crate) async fn unary<M, R>(
        &self,
        rpc: Rpc,
        message: &M,
        timeout: Duration,
    ) -> Result<R, Failure>
    where
        M: prost::Message,
        R: prost::Message + Default,
    {
        let max = self.inner.config.max_message_bytes;
        let size = message.encoded_len();
        if size > max {
            return Err(Failure::MessageTooLarge(format!(
                "request is {size} bytes, the limit is {max} bytes"
            )));
        }
        let body = frame(message);
        match tokio::time::timeout(timeout, self.call(rpc, body, timeout)).await {
            Err(_elapsed) => Err(Failure::DeadlineExceeded),
            Ok(result) => result.and_then(|message| decode(message, max)),
        }
    }

    /// Sends one request and returns the response message's frame.
    async fn call(&self, rpc: Rpc, body: Bytes, timeout: Duration) -> Result<Bytes, Failure> {
        // A connection that cannot be (re-)established makes the peer unavailable, whether it
        // was refused or timed out (as with tonic's lazily connecting channels).
        let live = self.connection().await.map_err(|failure| match failure {
            ConnectFailure::TimedOut => Failure::Unreachable(format!(
                "connecting to {} timed out after {:?}",
                self.inner.base, self.inner.config.connect_timeout
            )),
            ConnectFailure::Failed(reason) => Failure::Unreachable(reason),
        })?;
        let _open = OpenCall::new(&live.open_calls);
        let request = self.request(rpc, timeout)?;
        let mut send = live
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| self.broken(&live, &e))?;
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(|e| self.broken(&live, &e))?;
        stream
            .send_data(body, true)
            .map_err(|e| self.broken(&live, &e))?;
        let response = response.await.map_err(|e| self.broken(&live, &e))?;
        let (head, mut body) = response.into_parts();
        if let Some(status) = status_in(&head.headers) {
            // Trailers-Only: the status came with the headers, there is no message.
            return Err(match status {
                Ok(()) => no_message(),
                Err(status) => classify(&status),
            });
        }
        let message = match read_body(&mut body, self.inner.config.max_message_bytes).await {
            Ok(message) => message,
            Err(BodyError::H2(e)) => return Err(self.broken(&live, &e)),
            Err(BodyError::TooLarge(len)) => {
                return Err(Failure::MessageTooLarge(format!(
                    "response is over {len} bytes, the limit is {} bytes",
                    self.inner.config.max_message_bytes
                )))
            }
        };
        let trailers = body.trailers().await.map_err(|e| self.broken(&live, &e))?;
        match trailers.as_ref().and_then(status_in) {
            Some(Ok(())) => message.ok_or_else(no_message),
            Some(Err(status)) => Err(classify(&status)),
            None => Err(http_failure(head.status)),
        }
    }

    fn request(&self, rpc: Rpc, timeout: Duration) -> Result<Request<()>, Failure> {
        let timeout = if timeout == self.inner.config.request_timeout {
            self.inner.default_timeout.clone()
        } else {
            timeout_header(timeout).map_err(|message| Failure::Other {
                code: Code::Internal,
                message,
            })?
        };
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.inner.uris[rpc as usize].clone();
        let headers = request.headers_mut();
        // Sized for the three below (a map's first insert otherwise allocates room for six).
        *headers = HeaderMap::with_capacity(3);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(GRPC_TIMEOUT, timeout);
        Ok(request)
    }

    /// The failure of a call whose stream or connection failed; a connection-level failure
    /// also retires the connection, so the next call dials a new one.
    fn broken(&self, live: &Live, err: &h2::Error) -> Failure {
        let connection_failed = err.is_io() || err.is_go_away() || err.reason().is_none();
        if !connection_failed {
            let status = Status::from_error(Box::new(clone_h2_error(err)));
            return classify(&status);
        }
        live.closed.store(true, Ordering::Release);
        Failure::Unreachable(format!(
            "connection to {} failed: {}",
            self.inner.base,
            error_chain(err)
        ))
    }
}

/// The gRPC status in `headers` (a trailers-only answer's headers, or trailers), if any: `Ok`
/// for success (no `Status` is built for the common case), the failure's `Status` otherwise.
///
/// Not tonic's `Status::from_header_map`: that panics on a `grpc-status-details-bin` that is not
/// base64, so any server could crash its caller, and it copies the whole header map for every
/// call, successful ones too. Details are not used here, so they are not read; the message is
/// percent-decoded; the other headers are the metadata of an error status.
fn status_in(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let code = Code::from_bytes(headers.get(GRPC_STATUS)?.as_bytes());
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get(GRPC_MESSAGE)
        .map(|m| {
            percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    // The rest is the status's metadata (how a node says what kind of refusal it is).
    let mut metadata = headers.clone();
    for name in [GRPC_STATUS, GRPC_MESSAGE, GRPC_STATUS_DETAILS_BIN] {
        metadata.remove(name);
    }
    Some(Err(Status::with_metadata(
        code,
        message,
        MetadataMap::from_headers(metadata),
    )))
}

/// h2 errors are not `Clone`; a stream error is fully described by its reason.
fn clone_h2_error(err: &h2::Error) -> h2::Error {
    err.reason().unwrap_or(h2::Reason::INTERNAL_ERROR).into()
}

/// Counts a call as open on its connection while it lives.
struct OpenCall<'a>(&'a AtomicUsize);

impl<'a> OpenCall<'a> {
    fn new(open: &'a AtomicUsize) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenCall(open)
    }
}

impl Drop for OpenCall<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keep-alive pings of one connection.
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    pings: h2::PingPong,
    open_calls: Arc<AtomicUsize>,
}

impl KeepAlive {
    /// Pings every `interval` while calls are open; returns when a ping went unanswered.
    async fn expired(mut self) {
        loop {
            tokio::time::sleep(self.interval).await;
            if self.open_calls.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let pong = tokio::time::timeout(self.timeout, self.pings.ping(h2::Ping::opaque()));
            if !matches!(pong.await, Ok(Ok(_))) {
                return;
            }
        }
    }
}

/// Runs the connection until it ends (closed by either side, failed, or every handle dropped) or
/// its keep-alive expires (then it is dropped, which fails its open calls).
async fn drive(connection: h2::client::Connection<BoxIo, Bytes>, keepalive: Option<KeepAlive>) {
    let keepalive = async move {
        match keepalive {
            Some(k) => k.expired().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = connection => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended");
            }
        }
        () = keepalive => tracing::debug!("keep-alive ping unanswered; closing the connection"),
    }
}

/// A message framed as gRPC sends it: no compression, 4-byte big-endian length, the message.
fn frame<M: prost::Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Why a response body could not be read.
enum BodyError {
    H2(h2::Error),
    /// More than this many bytes arrived.
    TooLarge(usize),
}

/// Reads the response body (one message of at most `max` bytes) and returns its frame.
async fn read_body(body: &mut h2::RecvStream, max: usize) -> Result<Option<Bytes>, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(BodyError::H2)?;
        total += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
        if total > max.saturating_add(5) {
            // Dropping the stream resets it.
            return Err(BodyError::TooLarge(total));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let mut joined = BytesMut::with_capacity(head.len() + chunk.len());
                joined.put_slice(head);
                joined.put_slice(&chunk);
                rest = Some(joined);
            }
            (Some(_), Some(joined)) => joined.put_slice(&chunk),
        }
    }
    Ok(rest.map(BytesMut::freeze).or(first))
}

/// Decodes the one message of a response frame.
fn decode<R: prost::Message + Default>(mut frame: Bytes, max: usize) -> Result<R, Failure> {
    let internal = |message: String| Failure::Other {
        code: Code::Internal,
        message,
    };
    if frame.len() < 5 {
        return Err(internal("truncated gRPC message frame".into()));
    }
    let compressed = frame.get_u8();
    let len = frame.get_u32() as usize;
    if len > max {
        return Err(Failure::MessageTooLarge(format!(
            "response is {len} bytes, the limit is {max} bytes"
        )));
    }
    if compressed != 0 {
        return Err(internal("compressed responses are not supported".into()));
    }
    if frame.len() != len {
        return Err(internal(format!(
            "gRPC frame declares {len} bytes but carries {}",
            frame.len()
        )));
    }
    R::decode(frame).map_err(|e| internal(format!("cannot decode the response: {e}")))
}

/// The failure of a unary call whose status is OK but that carried no message.
fn no_message() -> Failure {
    Failure::Other {
        code: Code::Internal,
        message: "the response has no message".into(),
    }
}

/// The failure of a response that ended without `grpc-status`, from its HTTP status (the
/// mapping of gRPC's `http-grpc-status-mapping.md`, as tonic applies it).
fn http_failure(status: StatusCode) -> Failure {
    let code = match status {
        StatusCode::BAD_REQUEST => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    classify(&Status::new(
        code,
        format!("the response (HTTP {status}) has no grpc-status"),
    ))
}

fn timeout_header(timeout: Duration) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&grpc_timeout(timeout)).map_err(|e| e.to_string())
}

/// Longest `grpc-timeout` sent (about 3 years), as tonic bounds it.
const MAX_WIRE_TIMEOUT: Duration = Duration::from_secs(99_999_999);

/// `timeout` as a `grpc-timeout` value: at most 8 digits, in the finest unit that fits.
fn grpc_timeout(timeout: Duration) -> String {
    const MAX_DIGITS: u128 = 99_999_999;
    let timeout = timeout.min(MAX_WIRE_TIMEOUT);
    let nanos = timeout.as_nanos();
    if nanos <= MAX_DIGITS {
        return format!("{nanos}n");
    }
    let micros = timeout.as_micros();
    if micros <= MAX_DIGITS {
        return format!("{micros}u");
    }
    let millis = timeout.as_millis();
    if millis <= MAX_DIGITS {
        return format!("{millis}m");
    }
    format!("{}S", timeout.as_secs().min(MAX_DIGITS as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_grpc_timeout;

    #[test]
    fn grpc_timeouts_round_trip_within_a_unit() {
        for t in [
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_secs(5),
            Duration::from_secs(30 * 24 * 3600),
            Duration::MAX,
        ] {
            let wire = grpc_timeout(t);
            let back = parse_grpc_timeout(&wire).unwrap();
            let t = t.min(MAX_WIRE_TIMEOUT);
            assert!(back <= t, "{t:?} -> {wire} -> {back:?}");
            assert!(t - back < Duration::from_secs(1), "{t:?} -> {wire}");
        }
        assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000000u");
    }

    #[test]
    fn frames_decode_and_limits_apply() {
        let message = crate::proto::GetResponse {
            value: Bytes::from_static(b"v"),
            ttl_ms: Some(7),
            held_ms: 0,
        };
        let framed = frame(&message);
        let back: crate::proto::GetResponse = decode(framed.clone(), 1024).unwrap();
        assert_eq!(back, message);
        assert!(matches!(
            decode::<crate::proto::GetResponse>(framed.clone(), 2),
            Err(Failure::MessageTooLarge(_))
        ));
        assert!(decode::<crate::proto::GetResponse>(framed.slice(..4), 1024).is_err());
        assert!(decode::<crate::proto::GetResponse>(framed.slice(..6), 1024).is_err());
        let mut compressed = BytesMut::from(&framed[..]);
        compressed[0] = 1;
        assert!(decode::<crate::proto::GetResponse>(compressed.freeze(), 1024).is_err());
    }

    #[test]
    fn http_statuses_without_grpc_status() {
        assert!(matches!(
            http_failure(StatusCode::SERVICE_UNAVAILABLE),
            Failure::Unavailable(_)
        ));
        assert!(matches!(
            http_failure(StatusCode::OK),
            Failure::Other {
                code: Code::Unknown,
                ..
            }
        ));
    }
}
