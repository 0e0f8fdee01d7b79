//! Bounds on what clients can make a server hold before any request is admitted: connections,
//! and bytes of request bodies being received or served.
//!
//! A gRPC request body is read into memory before its handler runs, so admission control in the
//! handler (a cap on requests in flight) comes too late to bound memory: a thousand parallel
//! 1 MiB writes would be buffered first. [`RequestBytesLayer`] charges every body frame against a
//! node-wide byte budget as it arrives, and refuses the request (`RESOURCE_EXHAUSTED`) the moment
//! the budget is spent; the bytes are released when the request has been answered.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;
use tonic::Status;

/// An accepted connection holding one of the server's connection slots until it closes.
#[derive(Debug)]
pub(crate) struct AdmittedIo<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

/// Hands out connection slots; a connection past the cap is closed at once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlots {
    slots: Arc<Semaphore>,
    cap: usize,
}

impl ConnectionSlots {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionSlots {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    /// `io` with a slot, or `None` (and `io` dropped, which closes it) when none is left.
    pub(crate) fn admit<T>(&self, io: T) -> Option<AdmittedIo<T>> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Some(AdmittedIo { io, _slot: slot }),
            Err(_) => {
                tracing::warn!(
                    max_connections = self.cap,
                    "connection refused: the server holds its maximum of connections"
                );
                None
            }
        }
    }
}

impl<T> Connected for AdmittedIo<T> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<T: AsyncRead + Unpin> AsyncRead for AdmittedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AdmittedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The server-wide budget of request-body bytes held at once (see the [module docs](self)); the
/// layer [`crate::server`] puts around its routes, and the budget the HTTP/2 server
/// (`transport/src/h2server.rs`) charges directly.
#[derive(Debug, Clone)]
pub struct RequestBytesLayer {
    /// Bytes charged now; never above `cap`.
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl RequestBytesLayer {
    /// A budget of `cap` bytes (at least 1).
    pub fn new(cap: usize) -> Self {
        RequestBytesLayer {
            used: Arc::new(AtomicUsize::new(0)),
            cap: cap.max(1),
        }
    }

    /// Charges `len` bytes of a request body to the budget until the returned charge is
    /// dropped, or refuses the request (`RESOURCE_EXHAUSTED`) if they would pass it. One atomic
    /// compare-and-swap, no lock: it runs for every request.
    pub(crate) fn charge(&self, len: usize) -> Result<Charge, Status> {
        let cap = self.cap;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(len).filter(|&total| total <= cap)
            })
            .map_err(|_| self.exhausted())?;
        Ok(Charge {
            used: self.used.clone(),
            bytes: len,
        })
    }

    /// The status of a request refused for lack of budget.
    fn exhausted(&self) -> Status {
        Status::resource_exhausted(format!(
            "the server is already receiving its maximum of {} request bytes; retry later",
            self.cap
        ))
    }
}

impl<S> tower::Layer<S> for RequestBytesLayer {
    type Service = RequestBytes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBytes {
            inner,
            budget: self.clone(),
        }
    }
}

/// The service [`RequestBytesLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct RequestBytes<S> {
    inner: S,
    budget: RequestBytesLayer,
}

/// The bytes one request holds; released when both its body and its response future are gone.
type Held = Arc<Mutex<Option<Charge>>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for RequestBytes<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HoldWhile<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let held: Held = Arc::new(Mutex::new(None));
        let (parts, body) = request.into_parts();
        let body = CountedBody {
            inner: body,
            budget: self.budget.clone(),
            held: held.clone(),
        };
        let request = http::Request::from_parts(parts, tonic::body::Body::new(body));
        HoldWhile {
            inner: Box::pin(self.inner.call(request)),
            _held: held,
        }
    }
}

/// Bytes of the request-body budget held by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl Charge {
    /// Adds `other`'s bytes to this charge (one request's bytes are given back together).
    pub(crate) fn merge(&mut self, mut other: Charge) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// A response future that keeps its request's bytes charged until it completes or is dropped.
#[allow(missing_debug_implementations)]
pub struct HoldWhile<F> {
    inner: Pin<Box<F>>,
    _held: Held,
}

impl<F: std::future::Future> std::future::Future for HoldWhile<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// A request body whose frames are charged against the byte budget as they arrive.
struct CountedBody {
    inner: tonic::body::Body,
    budget: RequestBytesLayer,
    held: Held,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let len = frame.data_ref().map_or(0, Bytes::len);
        if len == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        match self.budget.charge(len) {
            Ok(permit) => {
                let mut held = self.held.lock();
                match held.as_mut() {
                    Some(existing) => existing.merge(permit),
                    None => *held = Some(permit),
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Err(status) => Poll::Ready(Some(Err(status))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
