//! Adapters that let any tokio byte stream carry gRPC: on the server side ([`ServerIo`]) and on the
//! client side ([`TokioConnector`]).
//!
//! This is the seam a simulated network (turmoil) plugs into: its listener yields
//! `AsyncRead + AsyncWrite` streams and its `connect` is a `tower::Service<Uri>`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tower::Service;

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

/// Turns a connector yielding tokio streams into one yielding hyper IO, as tonic's
/// `Endpoint::connect_with_connector_lazy` requires.
#[derive(Debug, Clone)]
pub struct TokioConnector<C>(pub C);

impl<C> Service<Uri> for TokioConnector<C>
where
    C: Service<Uri>,
    C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = TokioIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(TokioIo::new).map_err(Into::into) })
    }
}
