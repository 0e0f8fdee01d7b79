//! [`CacheClient`]: a small client of the cache API for the `lcache` CLI, tests and simulated
//! workloads. It shares endpoints, call bounds and status classification with
//! [`crate::GrpcTransport`].

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use crate::channel::{endpoint, grpc_client, unary, ClientConfig};
use crate::convert::{error_chain, Failure};
use crate::error::ClientError;
use crate::io::{BoxError, TokioConnector};
use crate::proto;
use crate::proto::cache_client::CacheClient as GrpcClient;
use crate::types::{Fetched, NodeStats};

/// A client of one LCache node. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct CacheClient {
    addr: String,
    config: ClientConfig,
    client: GrpcClient<Channel>,
}

impl CacheClient {
    /// Connects over TCP to the node at `addr` (`host:port`), within `config.connect_timeout`.
    pub async fn connect(addr: &str, config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Self::endpoint(addr, &config)?;
        let connecting = endpoint.connect();
        let channel = Self::bounded(addr, &config, connecting).await?;
        Ok(Self::from_channel(addr, config, channel))
    }

    /// Connects to the node at `addr` through `connector` (e.g. a simulated network's
    /// `TcpStream::connect`), within `config.connect_timeout`.
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
        let endpoint = Self::endpoint(addr, &config)?;
        let connecting = endpoint.connect_with_connector(TokioConnector(connector));
        let channel = Self::bounded(addr, &config, connecting).await?;
        Ok(Self::from_channel(addr, config, channel))
    }

    fn endpoint(addr: &str, config: &ClientConfig) -> Result<Endpoint, ClientError> {
        endpoint(addr, config).map_err(|reason| ClientError::InvalidAddress {
            addr: addr.to_owned(),
            reason,
        })
    }

    /// Awaits a connection attempt, bounded by the connect timeout on the tokio clock.
    async fn bounded(
        addr: &str,
        config: &ClientConfig,
        connecting: impl std::future::Future<Output = Result<Channel, tonic::transport::Error>>,
    ) -> Result<Channel, ClientError> {
        match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(ClientError::Unavailable {
                addr: addr.to_owned(),
                reason: error_chain(&e),
            }),
            Err(_elapsed) => Err(ClientError::DeadlineExceeded {
                addr: addr.to_owned(),
                timeout: config.connect_timeout,
            }),
        }
    }

    fn from_channel(addr: &str, config: ClientConfig, channel: Channel) -> Self {
        CacheClient {
            addr: addr.to_owned(),
            client: grpc_client(channel, &config),
            config,
        }
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
            hops: 0,
        };
        let mut client = self.client.clone();
        match self
            .call(message, |r| async move { client.get(r).await })
            .await
        {
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
            forwarded: false,
        });
        let mut client = self.client.clone();
        self.call(message, |r| async move { client.set(r).await })
            .await
            .map(|_: proto::SetResponse| ())
            .map_err(|f| self.failed(f))
    }

    /// Removes `key` from `group`; `Ok(true)` when the owner held it.
    pub async fn delete(&self, group: &str, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let message = proto::DeleteRequest {
            group: group.to_owned(),
            key: key.into(),
            hops: 0,
        };
        let mut client = self.client.clone();
        self.call(message, |r| async move { client.delete(r).await })
            .await
            .map(|response: proto::DeleteResponse| response.existed)
            .map_err(|f| self.failed(f))
    }

    /// Stats of one group, or of every group when `group` is `None`.
    pub async fn stats(&self, group: Option<&str>) -> Result<NodeStats, ClientError> {
        let message = proto::StatsRequest {
            group: group.unwrap_or_default().to_owned(),
        };
        let mut client = self.client.clone();
        self.call(message, |r| async move { client.stats(r).await })
            .await
            .map(NodeStats::from)
            .map_err(|f| self.failed(f))
    }

    async fn call<M, R, Fut>(
        &self,
        message: M,
        call: impl FnOnce(tonic::Request<M>) -> Fut,
    ) -> Result<R, Failure>
    where
        M: prost::Message,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let timeout = self.config.request_timeout;
        unary(self.config.max_message_bytes, message, timeout, call).await
    }

    fn failed(&self, f: Failure) -> ClientError {
        f.into_client(&self.addr, self.config.request_timeout)
    }
}
