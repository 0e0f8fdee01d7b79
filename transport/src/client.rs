//! [`CacheClient`]: a small client of the cache API for the `lcache` CLI, tests and simulated
//! workloads. It shares address checks, the HTTP/2 channel and status classification with
//! [`crate::GrpcTransport`].

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use crate::channel::ClientConfig;
use crate::convert::Failure;
use crate::error::ClientError;
use crate::h2channel::{ConnectFailure, H2Channel, Rpc};
use crate::io::BoxError;
use crate::proto;
use crate::tls::TlsConfig;
use crate::types::{Fetched, NodeStats};

/// A client of one LCache node. Cheap to clone; clones share the connection.
///
/// Calls go straight over one HTTP/2 connection (see the private `h2channel` module), which is
/// dialled again on the next call after it broke.
#[derive(Debug, Clone)]
pub struct CacheClient {
    addr: String,
    config: ClientConfig,
    channel: H2Channel,
    /// Whether requests claim to come from a peer (`hops = 1`); see [`CacheClient::as_peer`].
    forwarded: bool,
}

impl CacheClient {
    /// Connects over TCP to the node at `addr` (`host:port`), within `config.connect_timeout`.
    pub async fn connect(addr: &str, config: ClientConfig) -> Result<Self, ClientError> {
        let channel =
            H2Channel::tcp(addr, config.clone()).map_err(|reason| ClientError::InvalidAddress {
                addr: addr.to_owned(),
                reason,
            })?;
        Self::connected(addr, config, channel).await
    }

    /// Connects over TCP and mutual TLS to the node at `addr`, within `config.connect_timeout`:
    /// presents `tls`'s certificate and verifies the node's against `tls`'s CA.
    pub async fn connect_tls(
        addr: &str,
        config: ClientConfig,
        tls: &TlsConfig,
    ) -> Result<Self, ClientError> {
        let channel = H2Channel::tls(addr, config.clone(), tls).map_err(|reason| {
            ClientError::InvalidAddress {
                addr: addr.to_owned(),
                reason,
            }
        })?;
        Self::connected(addr, config, channel).await
    }

    /// Connects to the node at `addr` through `connector` (e.g. a simulated network's
    /// `TcpStream::connect`), within `config.connect_timeout`. The connector gets
    /// `http://host:port` URIs, and is used again to reconnect after the connection broke.
    pub async fn connect_with_connector<C>(
        addr: &str,
        config: ClientConfig,
        connector: C,
    ) -> Result<Self, ClientError>
    where
        C: Service<Uri> + Send + 'static,
        C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        C::Future: Send + 'static,
        C::Error: Into<BoxError>,
    {
        let channel =
            H2Channel::with_connector(addr, config.clone(), connector).map_err(|reason| {
                ClientError::InvalidAddress {
                    addr: addr.to_owned(),
                    reason,
                }
            })?;
        Self::connected(addr, config, channel).await
    }

    /// Establishes the channel's connection, bounded by the connect timeout.
    async fn connected(
        addr: &str,
        config: ClientConfig,
        channel: H2Channel,
    ) -> Result<Self, ClientError> {
        match channel.connect().await {
            Ok(()) => Ok(CacheClient {
                addr: addr.to_owned(),
                config,
                channel,
                forwarded: false,
            }),
            Err(ConnectFailure::Failed(reason)) => Err(ClientError::Unavailable {
                addr: addr.to_owned(),
                reason,
            }),
            Err(ConnectFailure::TimedOut) => Err(ClientError::DeadlineExceeded {
                addr: addr.to_owned(),
                timeout: config.connect_timeout,
            }),
        }
    }

    /// The same client, marking every `Get`, `Set` and `Delete` as already forwarded by a peer
    /// (`hops = 1`), as a misbehaving or confused client could. A node must not trust the mark
    /// (it never forwards such a request again); tests and simulations use this to check how it
    /// handles one.
    pub fn as_peer(mut self) -> Self {
        self.forwarded = true;
        self
    }

    /// The address of the node.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The value of `key` in `group`; `Ok(None)` on a miss.
    pub async fn get(
        &self,
        group: &str,
        key: impl Into<Bytes>,
    ) -> Result<Option<Fetched>, ClientError> {
        let message = proto::GetRequest {
            group: group.to_owned(),
            key: key.into(),
            hops: u32::from(self.forwarded),
        };
        match self.call::<_, proto::GetResponse>(Rpc::Get, &message).await {
            Ok(response) => Ok(Some(response.into())),
            Err(Failure::NotFound(_)) => Ok(None),
            Err(f) => Err(self.failed(f)),
        }
    }

    /// Stores `value` under `key` in `group`, expiring after `ttl` (`None`: never).
    pub async fn set(
        &self,
        group: &str,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let message = proto::SetRequest::from(crate::types::SetRequest {
            group: group.to_owned(),
            key: key.into(),
            value: value.into(),
            ttl,
            forwarded: self.forwarded,
        });
        self.call(Rpc::Set, &message)
            .await
            .map(|_: proto::SetResponse| ())
            .map_err(|f| self.failed(f))
    }

    /// Removes `key` from `group`; `Ok(true)` when the owner held it.
    pub async fn delete(&self, group: &str, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let message = proto::DeleteRequest {
            group: group.to_owned(),
            key: key.into(),
            hops: u32::from(self.forwarded),
        };
        self.call(Rpc::Delete, &message)
            .await
            .map(|response: proto::DeleteResponse| response.existed)
            .map_err(|f| self.failed(f))
    }

    /// Stats of one group, or of every group when `group` is `None`.
    pub async fn stats(&self, group: Option<&str>) -> Result<NodeStats, ClientError> {
        let message = proto::StatsRequest {
            group: group.unwrap_or_default().to_owned(),
        };
        self.call::<_, proto::StatsResponse>(Rpc::Stats, &message)
            .await
            .map(NodeStats::from)
            .map_err(|f| self.failed(f))
    }

    async fn call<M, R>(&self, rpc: Rpc, message: &M) -> Result<R, Failure>
    where
        M: prost::Message,
        R: prost::Message + Default,
    {
        self.channel
            .unary(rpc, message, self.config.request_timeout)
            .await
    }

    fn failed(&self, f: Failure) -> ClientError {
        f.into_client(&self.addr, self.config.request_timeout)
    }
}
