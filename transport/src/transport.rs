//! Client side of peer calls: the [`Transport`] trait the node uses to reach owners, and
//! [`GrpcTransport`], its tonic implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use lcache_core::latency::LatencyHistogram;
use lcache_core::member::{Member, MemberId};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use crate::channel::ClientConfig;
use crate::convert::{fetched_at_receipt, Failure};
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::h2channel::{H2Channel, Rpc};
use crate::io::BoxError;
use crate::proto;
use crate::tls::TlsConfig;
use crate::types::{DeleteRequest, Fetched, GetRequest, InvalidateRequest, SetRequest};

/// How a node calls its peers. Implementations: [`GrpcTransport`] here, a simulated one in `sim/`.
///
/// Every call is bounded by `deadline`; a call that cannot complete in time fails with
/// [`TransportError::DeadlineExceeded`] rather than hang.
pub trait Transport: Send + Sync + 'static {
    /// The value of `req.key` on `peer`; `Ok(None)` when the peer reports a miss. The value's
    /// `ttl` is what was left of its lifetime when the peer *received* the request (see
    /// `held_ms` in the proto): the caller ages it by its whole call.
    fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Option<Fetched>, TransportError>> + Send;

    /// Stores a value on `peer`.
    fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Removes a key on `peer`; `Ok(true)` when the peer held it.
    fn delete(
        &self,
        peer: &Member,
        req: DeleteRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;

    /// Tells `peer` that a write of `req.key` was applied, so it drops its copies.
    fn invalidate(
        &self,
        peer: &Member,
        req: InvalidateRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Drops cached connection state for a member that left.
    fn forget(&self, peer: &MemberId);

    /// Calls `visit` with the latency of the calls made to each peer it holds state for, per
    /// method (`peer`, `"get" | "set" | "delete" | "invalidate"`, histogram of the calls, failed
    /// ones included), for monitoring. Implementations that do not measure visit nothing.
    fn visit_call_latencies(
        &self,
        visit: &mut dyn FnMut(&MemberId, &'static str, &LatencyHistogram),
    ) {
        let _ = visit;
    }
}

/// Latency of the calls to one peer, per method (in [`PeerLatency::METHODS`] order).
#[derive(Debug, Default)]
struct PeerLatency {
    by_method: [LatencyHistogram; 4],
}

impl PeerLatency {
    const METHODS: [(Rpc, &'static str); 4] = [
        (Rpc::Get, "get"),
        (Rpc::Set, "set"),
        (Rpc::Delete, "delete"),
        (Rpc::Invalidate, "invalidate"),
    ];

    fn of(&self, rpc: Rpc) -> &LatencyHistogram {
        let index = Self::METHODS
            .iter()
            .position(|(method, _)| *method == rpc)
            .unwrap_or(0);
        &self.by_method[index]
    }
}

/// Records the time from its creation to its drop into a histogram (a call given up at its
/// deadline is recorded too).
struct Timed<'a> {
    histogram: &'a LatencyHistogram,
    started: tokio::time::Instant,
}

impl<'a> Timed<'a> {
    fn start(histogram: &'a LatencyHistogram) -> Self {
        Timed {
            histogram,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed());
    }
}

/// Makes the channel to one peer address (dialled lazily, on its first call).
pub(crate) type ChannelFactory =
    Arc<dyn Fn(&str, &ClientConfig) -> Result<H2Channel, String> + Send + Sync>;

/// The factory of channels over TCP.
pub(crate) fn http_channels() -> ChannelFactory {
    Arc::new(|addr: &str, config: &ClientConfig| H2Channel::tcp(addr, config.clone()))
}

/// The factory of channels over TCP and TLS.
pub(crate) fn tls_channels(tls: TlsConfig) -> ChannelFactory {
    Arc::new(move |addr: &str, config: &ClientConfig| H2Channel::tls(addr, config.clone(), &tls))
}

/// The factory of channels over an injected connector (each channel dials with its own clone).
pub(crate) fn connector_channels<C>(connector: C) -> ChannelFactory
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    Arc::new(move |addr: &str, config: &ClientConfig| {
        H2Channel::with_connector(addr, config.clone(), connector.clone())
    })
}

/// The channel to one peer, valid for one address and incarnation.
#[derive(Debug)]
struct PeerChannel {
    addr: String,
    incarnation: u64,
    channel: H2Channel,
    /// Kept when the channel is replaced (same member id), dropped by [`Transport::forget`].
    latency: Arc<PeerLatency>,
}

/// [`Transport`] over tonic gRPC.
///
/// Keeps one lazily connected channel per peer (one HTTP/2 connection, see the private
/// `h2channel` module), reused by every call (HTTP/2 multiplexes them).
/// A member seen with another address or incarnation gets a new channel; [`Transport::forget`]
/// drops it. A channel whose connection fails reconnects on its next call.
pub struct GrpcTransport {
    config: ClientConfig,
    make_channel: ChannelFactory,
    peers: Mutex<BTreeMap<MemberId, PeerChannel>>,
}

impl fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("config", &self.config)
            .field("peers", &self.peers.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    /// A transport dialling peers over TCP.
    pub fn new(config: ClientConfig) -> Self {
        GrpcTransport::with_factory(config, http_channels())
    }

    /// A transport dialling peers over TCP and mutual TLS: it presents `tls`'s certificate and
    /// verifies each peer's against `tls`'s CA.
    pub fn with_tls(config: ClientConfig, tls: TlsConfig) -> Self {
        GrpcTransport::with_factory(config, tls_channels(tls))
    }

    /// A transport dialling peers through `connector` (e.g. a simulated network's
    /// `TcpStream::connect`). The connector gets `http://host:port` URIs.
    pub fn with_connector<C>(config: ClientConfig, connector: C) -> Self
    where
        C: Service<Uri> + Clone + Send + Sync + 'static,
        C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        C::Future: Send + 'static,
        C::Error: Into<BoxError>,
    {
        GrpcTransport::with_factory(config, connector_channels(connector))
    }

    fn with_factory(config: ClientConfig, make_channel: ChannelFactory) -> Self {
        GrpcTransport {
            config,
            make_channel,
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The config the transport was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Number of peers with a cached channel.
    pub fn cached_peers(&self) -> usize {
        self.peers.lock().len()
    }

    /// The client for `peer`: the cached one if its address and incarnation still match, else a
    /// new lazily connecting one (replacing the stale entry). Must run inside a tokio runtime.
    fn client(&self, peer: &Member) -> Result<(H2Channel, Arc<PeerLatency>), TransportError> {
        let mut peers = self.peers.lock();
        if let Some(cached) = peers.get(&peer.id) {
            if cached.addr == peer.addr && cached.incarnation == peer.incarnation {
                return Ok((cached.channel.clone(), cached.latency.clone()));
            }
        }
        let invalid = |reason| TransportError::InvalidAddress {
            peer: peer.id.clone(),
            addr: peer.addr.clone(),
            reason,
        };
        let channel = (self.make_channel)(&peer.addr, &self.config).map_err(invalid)?;
        let latency = peers
            .get(&peer.id)
            .map(|old| old.latency.clone())
            .unwrap_or_default();
        let replaced = peers.insert(
            peer.id.clone(),
            PeerChannel {
                addr: peer.addr.clone(),
                incarnation: peer.incarnation,
                channel: channel.clone(),
                latency: latency.clone(),
            },
        );
        match replaced {
            Some(old) => tracing::debug!(
                peer = %peer.id, addr = %peer.addr, incarnation = peer.incarnation,
                old_addr = %old.addr, old_incarnation = old.incarnation,
                "replacing channel to peer"
            ),
            None => tracing::debug!(
                peer = %peer.id, addr = %peer.addr, incarnation = peer.incarnation,
                "new channel to peer"
            ),
        }
        Ok((channel, latency))
    }

    fn failed(
        &self,
        op: &'static str,
        peer: &Member,
        timeout: Duration,
        f: Failure,
    ) -> TransportError {
        let err = f.into_transport(&peer.id, &peer.addr, timeout);
        tracing::debug!(op, peer = %peer.id, addr = %peer.addr, error = %err, "peer call failed");
        err
    }
}

impl Transport for GrpcTransport {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        let (channel, latency) = self.client(peer)?;
        let _timed = Timed::start(latency.of(Rpc::Get));
        let message = proto::GetRequest::from(req);
        let timeout = deadline.remaining();
        match channel
            .unary::<_, proto::GetResponse>(Rpc::Get, &message, timeout)
            .await
        {
            Ok(response) => Ok(Some(fetched_at_receipt(response))),
            Err(Failure::NotFound(_)) => Ok(None),
            Err(f) => Err(self.failed("get", peer, timeout, f)),
        }
    }

    async fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let (channel, latency) = self.client(peer)?;
        let _timed = Timed::start(latency.of(Rpc::Set));
        let message = proto::SetRequest::from(req);
        let timeout = deadline.remaining();
        channel
            .unary(Rpc::Set, &message, timeout)
            .await
            .map(|_: proto::SetResponse| ())
            .map_err(|f| self.failed("set", peer, timeout, f))
    }

    async fn delete(
        &self,
        peer: &Member,
        req: DeleteRequest,
        deadline: Deadline,
    ) -> Result<bool, TransportError> {
        let (channel, latency) = self.client(peer)?;
        let _timed = Timed::start(latency.of(Rpc::Delete));
        let message = proto::DeleteRequest::from(req);
        let timeout = deadline.remaining();
        channel
            .unary(Rpc::Delete, &message, timeout)
            .await
            .map(|response: proto::DeleteResponse| response.existed)
            .map_err(|f| self.failed("delete", peer, timeout, f))
    }

    async fn invalidate(
        &self,
        peer: &Member,
        req: InvalidateRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let (channel, latency) = self.client(peer)?;
        let _timed = Timed::start(latency.of(Rpc::Invalidate));
        let message = proto::InvalidateRequest::from(req);
        let timeout = deadline.remaining();
        channel
            .unary(Rpc::Invalidate, &message, timeout)
            .await
            .map(|_: proto::InvalidateResponse| ())
            .map_err(|f| self.failed("invalidate", peer, timeout, f))
    }

    fn forget(&self, peer: &MemberId) {
        if self.peers.lock().remove(peer).is_some() {
            tracing::debug!(peer = %peer, "forgot channel to peer");
        }
    }

    fn visit_call_latencies(
        &self,
        visit: &mut dyn FnMut(&MemberId, &'static str, &LatencyHistogram),
    ) {
        let peers: Vec<(MemberId, Arc<PeerLatency>)> = self
            .peers
            .lock()
            .iter()
            .map(|(id, peer)| (id.clone(), peer.latency.clone()))
            .collect();
        for (id, latency) in &peers {
            for ((_, method), histogram) in PeerLatency::METHODS.iter().zip(&latency.by_method) {
                visit(id, method, histogram);
            }
        }
    }
}
