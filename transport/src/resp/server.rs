//! The RESP listener: accepts connections up to a cap, runs one [`Session`] task per connection,
//! and on shutdown stops accepting, lets every connection answer what it already read, and
//! returns once all have closed.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServeError;
use crate::io::BoxError;
use crate::resp::door::{FrontDoor, RespConfig, RespStats};
use crate::resp::linger;
use crate::resp::session::Session;
use crate::server::CacheHandler;

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
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let linger_turns = linger::turns_for(config.linger_turns, workers);
    if linger_turns < config.linger_turns {
        tracing::info!(
            workers,
            configured = config.linger_turns,
            "RESP lingering is off: it only pays on a runtime of one worker thread"
        );
    }
    let door = Arc::new(FrontDoor {
        config,
        stats: RespStats::default(),
        linger_turns,
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
