//! The adapter that lets tonic's server accept any tokio byte stream ([`ServerIo`]); clients take
//! any connector directly (see [`crate::CacheClient::connect_with_connector`]).
//!
//! This is the seam a simulated network (turmoil) plugs into: its listener yields
//! `AsyncRead + AsyncWrite` streams and its `connect` is a `tower::Service<Uri>`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Boxed error, as tonic and tower use it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An accepted connection of any tokio byte stream, accepted by tonic's server.
///
/// tonic's `serve_with_incoming` needs its IO to implement
/// [`Connected`]; this wrapper does so (with no connection info) for every
/// `AsyncRead + AsyncWrite + Unpin` stream.
#[derive(Debug)]
pub struct ServerIo<T>(pub T);

impl<T> Connected for ServerIo<T> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<T: AsyncRead + Unpin> AsyncRead for ServerIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ServerIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
