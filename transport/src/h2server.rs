//! The gRPC server loop: HTTP/2 on `h2` directly, every stream of a connection answered inside
//! that connection's task.
//!
//! Why not tonic's server: hyper runs each stream as a task of its own and tonic passes each
//! request through a stack of tower layers, codecs and boxed bodies. For a cache, whose requests
//! take a few microseconds of work, that machinery was most of the server's CPU per request
//! (README, "LCache vs Redis and memcached"). Here a connection task accepts streams, answers the
//! five `lcache.v1.Cache` RPCs through the [`CacheHandler`] with prost directly, and hands any
//! other path (the gRPC health service) to tonic's generated service, unchanged.
//!
//! What [`ServerConfig`] bounds is bounded as before: streams per connection (HTTP/2
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, and requests served at once per connection, beyond which
//! `RESOURCE_EXHAUSTED`), message size both ways (`OUT_OF_RANGE`), request bytes held server-wide
//! (`RESOURCE_EXHAUSTED`), the request deadline (the caller's `grpc-timeout` capped by the
//! server's bound; past it the request is dropped and answered `CANCELLED`), keepalive pings.
//! Statuses and messages for malformed requests are tonic's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use h2::server::SendResponse;
use h2::{Ping, RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use crate::convert::{miss_status, stats_filter};
use crate::deadline::Deadline;
use crate::error::ServiceError;
use crate::grpc_headers::{GRPC_ENCODING, GRPC_STATUS};
use crate::limits::{Charge, RequestBytes};
use crate::observe::{Outcome, RequestTimer, Rpc};
use crate::proto;
use crate::server::{deadline_of, reject, CacheHandler, ServerConfig};
use crate::types::{DeleteRequest, GetRequest, InvalidateRequest, SetRequest};

/// The service that answers every path other than the cache's own (the health service).
pub(crate) type Fallback =
    BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, Infallible>;

/// Bytes of the gRPC message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// Largest header list a client may send (as hyper's server allows).
const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;

/// HTTP/2 flow-control windows per stream and per connection (hyper's server defaults), so a
/// large write is not held to 64 KiB per round trip.
const WINDOW_BYTES: u32 = 1 << 20;

/// What every connection of one server shares.
pub(crate) struct Shared<H> {
    handler: Arc<H>,
    fallback: Fallback,
    max_message_bytes: usize,
    max_timeout: Duration,
    request_bytes: RequestBytes,
    concurrency_limit: Option<usize>,
    max_concurrent_streams: Option<u32>,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Duration,
}

impl<H: CacheHandler> Shared<H> {
    /// The settings of `config` for connections answering through `handler` and `fallback`.
    pub(crate) fn new(handler: Arc<H>, config: &ServerConfig, fallback: Fallback) -> Self {
        Shared {
            handler,
            fallback,
            max_message_bytes: config.max_message_bytes,
            max_timeout: config.max_request_timeout,
            request_bytes: RequestBytes::new(
                config.max_request_bytes.max(config.max_message_bytes),
            ),
            concurrency_limit: config.concurrency_limit_per_connection,
            max_concurrent_streams: config.max_concurrent_streams,
            keepalive_interval: config.http2_keepalive_interval,
            keepalive_timeout: config
                .http2_keepalive_timeout
                .unwrap_or(Duration::from_secs(20)),
        }
    }
}

/// Serves one connection until the client closes it, it fails, or, once `shutdown` turns
/// true, its in-flight requests are answered (new streams are refused with `GOAWAY`).
pub(crate) async fn serve_connection<H, IO>(
    shared: Arc<Shared<H>>,
    io: IO,
    shutdown: watch::Receiver<bool>,
) where
    H: CacheHandler,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    builder
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .initial_window_size(WINDOW_BYTES)
        .initial_connection_window_size(WINDOW_BYTES);
    if let Some(streams) = shared.max_concurrent_streams {
        builder.max_concurrent_streams(streams);
    }
    let mut connection = match builder.handshake::<_, Bytes>(io).await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    // The ping handle is taken only for keepalive: once taken, h2 re-registers the
    // connection's waker for it on every poll.
    let keepalive_pings = shared
        .keepalive_interval
        .and_then(|interval| Some((interval, connection.ping_pong()?)));
    // The connection's own events (shutdown begun, keepalive lost) wait in a set that polls a
    // future only once its waker fired: polled in every turn of the loop instead, the shutdown
    // signal's waiter list (a lock) and the keepalive timer cost 1–2 % of a request's CPU.
    let mut control: FuturesUnordered<Pin<Box<dyn Future<Output = Control> + Send>>> =
        FuturesUnordered::new();
    let mut signal = shutdown.clone();
    control.push(Box::pin(async move {
        let _ = signal.wait_for(|down| *down).await;
        Control::ShuttingDown
    }));
    if let Some((interval, ping_pong)) = keepalive_pings {
        let timeout = shared.keepalive_timeout;
        control.push(Box::pin(async move {
            keepalive(ping_pong, interval, timeout).await;
            Control::KeepaliveLost
        }));
    }
    let mut streams = FuturesUnordered::new();
    // The allocation of the last stream answered at its first poll, reused by the next.
    let mut spare = None;
    loop {
        // A fixed order (not tokio's random one), so a simulation replays exactly.
        tokio::select! {
            biased;
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let busy = shared.concurrency_limit.is_some_and(|limit| streams.len() >= limit);
                    if busy {
                        refuse(respond, Status::resource_exhausted(
                            "Too many active requests for the connection",
                        ));
                    } else {
                        // Most answers are ready at the first poll (a hit whose request came
                        // whole with its headers): polled here, such a stream never enters
                        // `streams`, so it costs no task there nor a second turn of this loop,
                        // and its allocation is kept for the next stream. One that is not is
                        // polled again there, with this task's waker.
                        let next = serve_stream(&shared, request, respond, &shutdown);
                        let mut stream = match spare.take() {
                            Some(mut stream) => {
                                Pin::set(&mut stream, next);
                                stream
                            }
                            None => Box::pin(next),
                        };
                        if stream.as_mut().now_or_never().is_none() {
                            streams.push(stream);
                        } else {
                            spare = Some(stream);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 connection failed");
                    break;
                }
                None => break,
            },
            Some(()) = streams.next(), if !streams.is_empty() => {}
            Some(event) = control.next(), if !control.is_empty() => match event {
                Control::ShuttingDown => connection.graceful_shutdown(),
                Control::KeepaliveLost => {
                    tracing::debug!("closing a connection whose keepalive ping went unanswered");
                    break;
                }
            },
        }
    }
}

/// What a connection's own events ask of its loop.
enum Control {
    /// The server is shutting down: refuse new streams, answer those in flight.
    ShuttingDown,
    /// A keepalive ping went unanswered: the client is gone.
    KeepaliveLost,
}

/// Resolves when a keepalive ping, sent after every `interval` of the connection's life, goes
/// unanswered for `timeout`.
async fn keepalive(mut ping_pong: h2::PingPong, interval: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "keepalive ping failed");
                return;
            }
            Err(_elapsed) => return,
        }
    }
}

/// The RPC a request path names, if it is one of the cache's.
fn rpc_of(path: &str) -> Option<Rpc> {
    let method = path.strip_prefix("/lcache.v1.Cache/")?;
    Some(match method {
        "Get" => Rpc::Get,
        "Set" => Rpc::Set,
        "Delete" => Rpc::Delete,
        "Invalidate" => Rpc::Invalidate,
        "Stats" => Rpc::Stats,
        _ => return None,
    })
}

/// Answers one stream: a cache RPC here, anything else through the fallback service.
///
/// Not an `async fn`: what it needs of the request's head (path, deadline, encoding) is read
/// here, before the future exists, so that the future holds only the body. An `async fn` keeps
/// its arguments (the 240-byte request) in its state, twice as the compiler lays it out today,
/// and nested in `answer` twice more: 1,536 bytes allocated and copied per stream, against
/// the few hundred the answer needs.
fn serve_stream<'a, H: CacheHandler>(
    shared: &'a Shared<H>,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    shutdown: &'a watch::Receiver<bool>,
) -> impl Future<Output = ()> + 'a {
    use futures::future::Either;
    let Some(rpc) = rpc_of(request.uri().path()) else {
        // Boxed: the fallback's state is large, and most streams never need it.
        let fallback = Box::pin(fall_back(shared, request, respond, shutdown.clone()));
        return Either::Left(fallback);
    };
    let received = Instant::now();
    let deadline = deadline_of(request.headers(), shared.max_timeout, received);
    if let Err(status) = identity_encoding(request.headers()) {
        refuse(respond, status);
        return Either::Right(Either::Left(std::future::ready(())));
    }
    let body = request.into_body();
    Either::Right(Either::Right(serve_cache_stream(
        shared, rpc, body, respond, received, deadline,
    )))
}

/// Refuses a compressed request: this server only speaks `identity`.
fn identity_encoding(headers: &HeaderMap) -> Result<(), Status> {
    match headers.get(GRPC_ENCODING) {
        Some(encoding) if encoding.as_bytes() != b"identity" => {
            Err(Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                String::from_utf8_lossy(encoding.as_bytes())
            )))
        }
        _ => Ok(()),
    }
}

/// Answers one cache RPC whose request body is `body`, within `deadline`.
async fn serve_cache_stream<H: CacheHandler>(
    shared: &Shared<H>,
    rpc: Rpc,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
    received: Instant,
    deadline: Deadline,
) {
    let mut answering = std::pin::pin!(answer(shared, rpc, body, received, deadline));
    // The deadline's timer is armed only if the answer is not ready at the first poll (most
    // cache reads are), so such a request costs no timer.
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let answered = std::future::poll_fn(|cx| {
        if let Poll::Ready(answered) = answering.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        // A client that resets the stream (or whose connection ends) cancels the request: its
        // future is dropped, as tonic's server does, so nothing is done for a caller who left.
        if respond.poll_reset(cx).is_ready() {
            return Poll::Ready(None);
        }
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.instant())));
        timer
            .as_mut()
            .poll(cx)
            .map(|()| Some(Err(Status::cancelled("Timeout expired"))))
    })
    .await;
    let Some(answered) = answered else {
        return;
    };
    match answered {
        Ok(message) => send_message(&mut respond, message),
        Err(status) => refuse(respond, status),
    }
}

/// Reads, decodes and serves one cache request; the framed response message or the status.
async fn answer<H: CacheHandler>(
    shared: &Shared<H>,
    rpc: Rpc,
    body: RecvStream,
    received: Instant,
    deadline: Deadline,
) -> Result<Bytes, Status> {
    // The request's bytes stay charged to the server-wide budget until it is answered.
    let (message, _held) = read_message(body, shared).await?;
    let handler = &*shared.handler;
    let max = shared.max_message_bytes;
    match rpc {
        Rpc::Get => {
            let req = GetRequest::try_from(decode::<proto::GetRequest>(message)?);
            let call = |req: GetRequest| {
                let group = req.group.clone();
                handler
                    .get(req, deadline, received)
                    .map(|found| found.map(|found| (found, group)))
            };
            let ((found, group), held) = timed(handler, rpc, received, req, call, |(found, _)| {
                found.is_none()
            })
            .await?;
            let fetched = found.ok_or_else(|| miss_status(&group))?;
            let mut response = proto::GetResponse::from(fetched);
            response.held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
            encode(&response, max)
        }
        Rpc::Set => {
            let req = SetRequest::try_from(decode::<proto::SetRequest>(message)?);
            let call = |req| handler.set(req, deadline, received);
            timed(handler, rpc, received, req, call, |_| false).await?;
            encode(&proto::SetResponse {}, max)
        }
        Rpc::Delete => {
            let req = DeleteRequest::try_from(decode::<proto::DeleteRequest>(message)?);
            let call = |req| handler.delete(req, deadline, received);
            let (existed, _) = timed(handler, rpc, received, req, call, |_| false).await?;
            encode(&proto::DeleteResponse { existed }, max)
        }
        Rpc::Invalidate => {
            let req = InvalidateRequest::try_from(decode::<proto::InvalidateRequest>(message)?);
            let call = |req| handler.invalidate(req);
            timed(handler, rpc, received, req, call, |_| false).await?;
            encode(&proto::InvalidateResponse {}, max)
        }
        Rpc::Stats => {
            let filter = stats_filter(decode::<proto::StatsRequest>(message)?);
            let call = |group| handler.stats(group);
            let (stats, _) = timed(handler, rpc, received, filter, call, |_| false).await?;
            encode(&proto::StatsResponse::from(stats), max)
        }
    }
}

/// Serves one request through `call` if it passed validation (`validated`), timed from its
/// arrival and reported to the handler's metrics with its outcome (`miss` says which successes
/// are misses); returns the answer and when it ended, or the status of its error. The handler's
/// future is boxed so that the stream's state stays small: inlined, the node's get future
/// made a stream's future about 1,630 bytes instead of 640 — copied into the connection's spare
/// allocation for every stream, and held by every stream that waits (a miss, a fetch from the
/// owner) — to save one allocation of 272 bytes per request, with no measurable gain.
async fn timed<H, R, T, F>(
    handler: &H,
    rpc: Rpc,
    received: Instant,
    validated: Result<R, ServiceError>,
    call: impl FnOnce(R) -> F,
    miss: impl FnOnce(&T) -> bool,
) -> Result<(T, Duration), Status>
where
    H: CacheHandler,
    F: Future<Output = Result<T, ServiceError>>,
{
    let timer = RequestTimer::start(handler, rpc, received);
    let result = match validated {
        Ok(req) => Box::pin(call(req)).await,
        Err(err) => Err(err),
    };
    let elapsed = timer.finish(Outcome::of(&result, miss));
    result
        .map(|answer| (answer, elapsed))
        .map_err(|e| reject(rpc.label(), e))
}

/// The one message of a unary request body, without its prefix, and the budget bytes it holds.
async fn read_message<H>(
    mut body: RecvStream,
    shared: &Shared<H>,
) -> Result<(Bytes, Option<Charge>), Status> {
    let mut held: Option<Charge> = None;
    let mut buf = BytesMut::new();
    let mut first: Option<Bytes> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(read_failed)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if chunk.is_empty() {
            continue;
        }
        shared.request_bytes.charge_to(&mut held, chunk.len())?;
        if first.is_none() && buf.is_empty() {
            // The common case: the whole message in one DATA frame, kept without a copy.
            first = Some(chunk);
        } else {
            if let Some(first) = first.take() {
                buf.extend_from_slice(&first);
            }
            buf.extend_from_slice(&chunk);
        }
        let received = first.as_deref().unwrap_or(&buf[..]);
        if received.len() >= PREFIX {
            // Refused as soon as the prefix or the bytes past the one message say so, so a
            // client cannot make the server hold more than one message's worth.
            let len = check_prefix(received, shared.max_message_bytes)?;
            if received.len() > PREFIX + len {
                return Err(more_than_one());
            }
        }
    }
    let mut whole = match first {
        Some(first) => first,
        None => buf.freeze(),
    };
    if whole.len() < PREFIX {
        return Err(if whole.is_empty() {
            Status::internal("Missing request message.")
        } else {
            Status::internal("Unexpected EOF decoding stream.")
        });
    }
    let len = check_prefix(&whole, shared.max_message_bytes)?;
    whole.advance(PREFIX);
    if whole.len() < len {
        return Err(Status::internal("Unexpected EOF decoding stream."));
    }
    if whole.len() > len {
        return Err(more_than_one());
    }
    Ok((whole, held))
}

/// The status of a unary request body holding more than its one message.
fn more_than_one() -> Status {
    Status::internal("Expected one request message, got more.")
}

/// Checks a message prefix (no compression, length within `max`); returns the length.
fn check_prefix(prefix: &[u8], max: usize) -> Result<usize, Status> {
    match prefix.first() {
        Some(0) => {}
        Some(1) => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ))
        }
        Some(flag) => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1) while receiving request"
            )))
        }
        None => return Err(Status::internal("Unexpected EOF decoding stream.")),
    }
    let len_bytes: [u8; 4] = prefix
        .get(1..PREFIX)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Status::internal("Unexpected EOF decoding stream."))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: {max} bytes"
        )));
    }
    Ok(len)
}

/// A request message decoded from its bytes.
fn decode<M: Message + Default>(bytes: Bytes) -> Result<M, Status> {
    M::decode(bytes)
        .map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))
}

/// A response message with its gRPC prefix, or `OUT_OF_RANGE` past `max` bytes.
fn encode<M: Message>(message: &M, max: usize) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    if len > max {
        return Err(Status::out_of_range(format!(
            "Error, encoded message length too large: found {len} bytes, the limit is: {max} bytes"
        )));
    }
    let len_prefix = u32::try_from(len).map_err(|_| Status::out_of_range("response too large"))?;
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(len_prefix);
    message
        .encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding the response: {e}")))?;
    Ok(buf.freeze())
}

/// The headers every gRPC response starts with, in a map with room for `headers` in all
/// (a map's first insert otherwise allocates room for six).
fn grpc_response(headers: usize) -> Response<()> {
    let mut response = Response::new(());
    *response.headers_mut() = HeaderMap::with_capacity(headers);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Answers with `message`: headers, one DATA frame, then `grpc-status: 0`.
fn send_message(respond: &mut SendResponse<Bytes>, message: Bytes) {
    let Ok(mut send) = respond.send_response(grpc_response(1), false) else {
        return; // The client reset the stream: nobody is waiting.
    };
    if send.send_data(message, false).is_err() {
        return;
    }
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

/// Answers with `status` alone (a gRPC "trailers-only" response).
fn refuse(mut respond: SendResponse<Bytes>, status: Status) {
    // Content type, `grpc-status`, `grpc-message` and room for status details.
    let mut response = grpc_response(4);
    if status.add_header(response.headers_mut()).is_err() {
        let plain = Status::new(status.code(), "");
        let _ = plain.add_header(response.headers_mut());
    }
    let _ = respond.send_response(response, true);
}

/// Serves a request for another path through the fallback service, streaming its answer until
/// it ends or the server shuts down.
async fn fall_back<H>(
    shared: &Shared<H>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (parts, body) = request.into_parts();
    let body = H2Body {
        inner: body,
        budget: shared.request_bytes.clone(),
        held: None,
    };
    let request = Request::from_parts(parts, tonic::body::Body::new(body));
    let Ok(response) = shared.fallback.clone().oneshot(request).await;
    let (parts, mut body) = response.into_parts();
    let Ok(mut send) = respond.send_response(Response::from_parts(parts, ()), body.is_end_stream())
    else {
        return;
    };
    if body.is_end_stream() {
        return;
    }
    let pump = pump(&mut body, &mut send);
    tokio::select! {
        biased;
        () = pump => {}
        _ = shutdown.wait_for(|down| *down) => send.send_reset(h2::Reason::CANCEL),
    }
}

/// Copies a response body's frames onto an HTTP/2 stream until the body ends or the client
/// resets the stream.
async fn pump(body: &mut tonic::body::Body, send: &mut SendStream<Bytes>) {
    loop {
        let next = std::future::poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut *body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = next else {
            return; // The client reset the stream.
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send.send_data(data, false).is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                        return;
                    }
                }
            },
            Some(Err(status)) => {
                let mut trailers = HeaderMap::new();
                if status.add_header(&mut trailers).is_ok() {
                    let _ = send.send_trailers(trailers);
                } else {
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                }
                return;
            }
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
        }
    }
}

/// An HTTP/2 request body as an [`http_body::Body`], for the fallback service: its frames are
/// charged to the server-wide request-byte budget as they arrive, as the cache's own requests
/// are (a frame past the budget ends the body with `RESOURCE_EXHAUSTED`).
struct H2Body {
    inner: RecvStream,
    budget: RequestBytes,
    /// The bytes read so far, held until the body is dropped.
    held: Option<Charge>,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match this.inner.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = this.inner.flow_control().release_capacity(data.len());
                if let Err(status) = this.budget.charge_to(&mut this.held, data.len()) {
                    return Poll::Ready(Some(Err(status)));
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(read_failed(e)))),
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        match this.inner.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(read_failed(e)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The status of a request whose body failed at the HTTP/2 level.
fn read_failed(err: h2::Error) -> Status {
    Status::internal(format!("reading the request: {err}"))
}
