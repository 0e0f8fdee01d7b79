//! Bounds on what clients can make a server hold before any request is admitted: connections,
//! and bytes of request bodies being received or served.
//!
//! A gRPC request body is read into memory before its handler runs, so admission control in the
//! handler (a cap on requests in flight) comes too late to bound memory: a thousand parallel
//! 1 MiB writes would be buffered first. `RequestBytes` charges every body frame against a
//! node-wide byte budget as it arrives, and refuses the request (`RESOURCE_EXHAUSTED`) the moment
//! the budget is spent; the bytes are released when the request has been answered.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// The server-wide budget of request-body bytes held at once (see the [module docs](self)),
/// which the HTTP/2 server (`transport/src/h2server.rs`) charges as body frames arrive.
#[derive(Debug, Clone)]
pub(crate) struct RequestBytes {
    /// Bytes charged now; never above `cap`.
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl RequestBytes {
    /// A budget of `cap` bytes (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        RequestBytes {
            used: Arc::new(AtomicUsize::new(0)),
            cap: cap.max(1),
        }
    }

    /// Charges `len` more bytes of one request's body to the budget, into `held` (all of a
    /// request's bytes are given back together when `held` is dropped), or refuses the request
    /// (`RESOURCE_EXHAUSTED`) if they would pass it.
    pub(crate) fn charge_to(&self, held: &mut Option<Charge>, len: usize) -> Result<(), Status> {
        let charge = self.charge(len)?;
        match held {
            Some(held) => held.bytes += charge.take(),
            None => *held = Some(charge),
        }
        Ok(())
    }

    /// Charges `len` bytes to the budget until the returned charge is dropped. One atomic
    /// compare-and-swap, no lock: it runs for every request.
    fn charge(&self, len: usize) -> Result<Charge, Status> {
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

/// Bytes of the request-body budget held by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl Charge {
    /// This charge's bytes, which it no longer gives back.
    fn take(mut self) -> usize {
        std::mem::take(&mut self.bytes)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}
