//! Running a node behind the gRPC server (and optionally a RESP front door), with the graceful
//! shutdown order of DESIGN.md: deregister, stop accepting, drain, release.

use crate::node::{Node, ShutdownReport};
use lcache_discovery::Discovery;
use lcache_transport::resp::RespConfig;
use lcache_transport::{BoxError, ServeError, ServerConfig, Transport};
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

/// A RESP (Redis protocol) front door served next to gRPC: its bound listener and settings.
#[derive(Debug)]
pub struct RespFrontDoor {
    /// Where RESP clients connect.
    pub listener: TcpListener,
    /// The group it serves and its limits.
    pub config: RespConfig,
}

/// Serve `node` on `listener` until `shutdown` resolves, then shut down gracefully.
pub async fn run<T: Transport, D: Discovery>(
    node: Node<T, D>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, ServeError> {
    run_with_resp(node, config, listener, None, shutdown).await
}

/// Like [`run`], and also serve `resp` (when given) until the same shutdown: both front doors
/// stop accepting at the same step and drain within the same grace period.
pub async fn run_with_resp<T: Transport, D: Discovery>(
    node: Node<T, D>,
    config: ServerConfig,
    listener: TcpListener,
    resp: Option<RespFrontDoor>,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, ServeError> {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(node = %node.member().id, %addr, "serving lcache.v1.Cache"),
        Err(err) => tracing::warn!(error = %err, "serving lcache.v1.Cache on an unknown address"),
    }
    // TCP_NODELAY on every accepted connection: a response larger than one segment (e.g. a
    // 4 KiB value) otherwise waits for the client's delayed ACK, ≈ 40 ms on Linux.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        })
    });
    serve_node(node, config, incoming, resp, shutdown).await
}

/// Serve `node` on any stream of connections (real sockets, or turmoil's simulated ones) until
/// `shutdown` resolves, then shut down gracefully.
///
/// If the server fails on its own, the node still leaves the cluster before the error returns.
pub async fn run_with_incoming<T, D, I, IO, IE>(
    node: Node<T, D>,
    config: ServerConfig,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, ServeError>
where
    T: Transport,
    D: Discovery,
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    IE: Into<BoxError> + Send + 'static,
{
    serve_node(node, config, incoming, None, shutdown).await
}

/// The shutdown sequence around the gRPC server and the optional RESP front door.
async fn serve_node<T, D, I, IO, IE>(
    node: Node<T, D>,
    config: ServerConfig,
    incoming: I,
    resp: Option<RespFrontDoor>,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, ServeError>
where
    T: Transport,
    D: Discovery,
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    IE: Into<BoxError> + Send + 'static,
{
    // Cancelled at step 2 below: both front doors stop accepting and drain.
    let stop_accepting = CancellationToken::new();
    let handler = Arc::new(node.service());
    let grpc = lcache_transport::serve_with_incoming(
        handler.clone(),
        config,
        incoming,
        stop_accepting.clone().cancelled_owned(),
    );
    let resp_stop = stop_accepting.clone().cancelled_owned();
    let resp = async move {
        match resp {
            Some(door) => {
                lcache_transport::resp::serve(handler, door.config, door.listener, resp_stop).await
            }
            None => Ok(()),
        }
    };
    let mut server = std::pin::pin!(async { tokio::try_join!(grpc, resp) });
    let early = tokio::select! {
        biased;
        result = &mut server => Some(result),
        () = shutdown => None,
    };
    // From here on, the whole shutdown shares one deadline: the grace period is the longest it
    // takes, not the longest each of its steps takes.
    if let Some(result) = early {
        tracing::error!(node = %node.member().id, "server stopped on its own");
        let deadline = node.shutdown_deadline();
        let deregistered = node.deregister(deadline).await;
        node.finish(deregistered, deadline).await;
        return result.map(|((), ())| ShutdownReport {
            deregistered,
            drained: true,
        });
    }
    tracing::info!(node = %node.member().id, "shutdown requested");
    let deadline = node.shutdown_deadline();
    // 1. Deregister, so peers stop routing here.
    let deregistered = node.deregister(deadline).await;
    // 2. Stop accepting connections; in-flight requests keep running.
    stop_accepting.cancel();
    let served = tokio::time::timeout_at(deadline, &mut server).await;
    // 3 + 4. Drain what is left through admission, then release.
    let report = node.finish(deregistered, deadline).await;
    match served {
        Ok(result) => result.map(|((), ())| report),
        Err(_) => {
            tracing::warn!("connections still open after the grace period; closing them");
            Ok(ShutdownReport {
                drained: false,
                ..report
            })
        }
    }
}
