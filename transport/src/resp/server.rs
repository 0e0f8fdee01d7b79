//! The RESP listener: accepts connections up to a cap, runs one [`Session`] task per connection,
//! and on shutdown stops accepting, lets every connection answer what it already read, and
//! returns once all have closed.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::convert::MAX_GROUP_NAME_BYTES;
use crate::error::ServeError;
use crate::io::BoxError;
use crate::resp::codec::{RequestLimits, MAX_INLINE_BYTES};
use crate::resp::session::Session;
use crate::server::CacheHandler;

/// Settings of a RESP front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespConfig {
    /// The group every key of this front door belongs to (a RESP command names no group).
    pub group: String,
    /// Connections served at once; one more is answered `-ERR max number of clients reached`
    /// and closed (Redis's `maxclients`).
    pub max_connections: usize,
    /// Bounds on one request's arguments (Redis's `proto-max-bulk-len`, and a cap on their
    /// number).
    pub limits: RequestLimits,
    /// Largest request buffered while incomplete (Redis's `client-query-buffer-limit`); a client
    /// that exceeds it gets an error and is disconnected. Bounds each connection's read buffer.
    pub max_query_buffer_bytes: usize,
    /// Time each command is given (RESP requests carry no deadline of their own); the node
    /// also caps it with its own request timeout.
    pub request_timeout: Duration,
}

impl Default for RespConfig {
    fn default() -> Self {
        let max_bulk_bytes = 1024 * 1024;
        RespConfig {
            group: "default".to_owned(),
            max_connections: 10_000,
            limits: RequestLimits {
                max_args: 1024 * 1024,
                max_bulk_bytes,
            },
            max_query_buffer_bytes: 2 * max_bulk_bytes + MAX_INLINE_BYTES,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl RespConfig {
    /// Refuses settings that cannot serve: an empty or too long group name, zero caps.
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |reason: String| Err(ServeError::InvalidConfig(reason));
        if self.group.is_empty() || self.group.len() > MAX_GROUP_NAME_BYTES {
            return invalid(format!(
                "RESP group name must be 1 to {MAX_GROUP_NAME_BYTES} bytes, got {:?}",
                self.group
            ));
        }
        if self.max_connections == 0 || self.limits.max_args == 0 {
            return invalid("RESP max_connections and max_args must be at least 1".into());
        }
        if self.max_query_buffer_bytes < MAX_INLINE_BYTES {
            return invalid(format!(
                "RESP max_query_buffer_bytes must be at least {MAX_INLINE_BYTES} (one inline \
                 request), got {}",
                self.max_query_buffer_bytes
            ));
        }
        Ok(())
    }
}

/// Counters of a front door, reported by `INFO`.
#[derive(Debug, Default)]
pub(crate) struct RespStats {
    connected: AtomicUsize,
    connections_received: AtomicU64,
    rejected_connections: AtomicU64,
    commands_processed: AtomicU64,
}

/// A snapshot of [`RespStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RespCounts {
    pub(crate) connected: usize,
    pub(crate) connections_received: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) commands_processed: u64,
}

impl RespStats {
    /// Adds one connection's batch of answered commands (once per batch, not per command, to
    /// keep the shared counter off the per-command path).
    pub(crate) fn commands_processed(&self, n: u64) {
        if n > 0 {
            self.commands_processed.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> RespCounts {
        RespCounts {
            connected: self.connected.load(Ordering::Relaxed),
            connections_received: self.connections_received.load(Ordering::Relaxed),
            rejected_connections: self.rejected_connections.load(Ordering::Relaxed),
            commands_processed: self.commands_processed.load(Ordering::Relaxed),
        }
    }
}

/// What every connection of one front door shares.
#[derive(Debug)]
pub(crate) struct FrontDoor {
    pub(crate) config: RespConfig,
    pub(crate) stats: RespStats,
}

/// Decrements the connected-clients gauge when a connection ends, however it ends.
struct Connected(Arc<FrontDoor>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves RESP on a bound TCP listener (with `TCP_NODELAY` on every connection) until
/// `shutdown` resolves; see [`serve_with_incoming`].
pub async fn serve<H: CacheHandler>(
    handler: Arc<H>,
    config: RespConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, group = %config.group, "serving RESP"),
        Err(e) => tracing::info!(error = %e, "serving RESP (address unknown)"),
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            // A reply larger than one segment would otherwise wait for the client's delayed ACK.
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        })
    });
    serve_with_incoming(handler, config, incoming, shutdown).await
}

/// Serves RESP on the connections `incoming` yields until `shutdown` resolves (or `incoming`
/// ends): stops accepting, lets each connection answer the requests it already read, and
/// returns once every connection has closed. An `Err` item is logged and skipped.
pub async fn serve_with_incoming<H, I, IO, IE>(
    handler: Arc<H>,
    config: RespConfig,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError>
where
    H: CacheHandler,
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    IE: Into<BoxError>,
{
    config.validate()?;
    let permits = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let door = Arc::new(FrontDoor {
        config,
        stats: RespStats::default(),
    });
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut incoming = pin!(incoming);
    let mut shutdown = pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = incoming.next() => accepted,
        };
        let io = match accepted {
            Some(Ok(io)) => io,
            Some(Err(err)) => {
                let err: BoxError = err.into();
                tracing::warn!(error = %err, "RESP accept failed");
                continue;
            }
            None => break,
        };
        door.stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            door.stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit = door.config.max_connections,
                "refusing a RESP connection: too many connections"
            );
            connections.spawn(refuse(io));
            continue;
        };
        next_id += 1;
        door.stats.connected.fetch_add(1, Ordering::Relaxed);
        let gauge = Connected(door.clone());
        let session = Session::new(handler.clone(), door.clone(), io, next_id);
        let token = stop.child_token();
        connections.spawn(async move {
            session.run(token).await;
            drop(gauge);
            drop(permit);
        });
    }
    tracing::info!(
        open = door.stats.snapshot().connected,
        "RESP: refusing new connections, answering what was already read"
    );
    stop.cancel();
    connections.close();
    connections.wait().await;
    tracing::info!("RESP server stopped");
    Ok(())
}

/// Tells a client over the connection cap why it is being closed, as Redis does.
async fn refuse<IO: AsyncWrite + Unpin>(mut io: IO) {
    use tokio::io::AsyncWriteExt;
    let sent = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(b"-ERR max number of clients reached\r\n")
            .await?;
        io.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("could not tell a refused RESP client why");
    }
}
