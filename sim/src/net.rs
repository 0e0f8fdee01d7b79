//! The simulated network seam: how the real gRPC clients dial over turmoil.

use std::future::Future;
use std::io;
use std::pin::Pin;

use http::Uri;
use turmoil::net::TcpStream;

/// Future of one [`connect`] call.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Dials the host and port of `uri` over turmoil's network.
pub fn connect(uri: Uri) -> Connecting {
    Box::pin(async move {
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port"))?;
        TcpStream::connect((host, port)).await
    })
}

/// A connector for [`lcache_transport::GrpcTransport::with_connector`] and
/// [`lcache_transport::CacheClient::connect_with_connector`].
pub fn connector() -> tower::util::ServiceFn<fn(Uri) -> Connecting> {
    tower::service_fn(connect as fn(Uri) -> Connecting)
}
