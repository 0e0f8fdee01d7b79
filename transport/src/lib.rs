//! The network face of LCache: the versioned gRPC API (`lcache.v1`, see
//! `proto/lcache/v1/cache.proto`), the server a node plugs its [`CacheHandler`] into, and
//! the peer [`Transport`] trait with its tonic implementation [`GrpcTransport`].
//!
//! [`resp`] serves the same handler over the Redis protocol (RESP2).
//!
//! Wire types stay inside [`proto`]; the node and clients use the plain domain types of [`types`]
//! ([`GetRequest`], [`Fetched`], ...). Conversions validate what arrives and never panic.
//!
//! Both sides take any tokio byte stream, so a simulated network can replace TCP:
//! [`serve_with_incoming`] accepts a stream of connections and [`GrpcTransport::with_connector`] /
//! [`CacheClient::connect_with_connector`] accept any `tower::Service<Uri>` connector. No code
//! here reads the wall clock; timeouts run on tokio's clock.
#![warn(missing_docs)]

mod channel;
mod client;
mod codec;
mod convert;
mod deadline;
mod error;
mod grpc_headers;
mod h2channel;
mod h2server;
mod io;
pub mod limits;
pub mod observe;
pub mod proto;
pub mod resp;
mod server;
pub mod tls;
mod transport;
pub mod types;

pub use channel::ClientConfig;
pub use client::CacheClient;
pub use convert::MAX_GROUP_NAME_BYTES;
pub use deadline::Deadline;
pub use error::{ClientError, ServeError, ServiceError, TransportError};
pub use io::BoxError;
pub use server::{
    parse_grpc_timeout, serve, serve_with_incoming, CacheHandler, ServerConfig, SERVICE_NAME,
};
pub use tls::{TlsConfig, TlsError};
pub use transport::{GrpcTransport, Transport};
pub use types::{
    DeleteRequest, Fetched, GetRequest, GroupCounters, GroupStats, InvalidateRequest, NodeStats,
    SetRequest, Tier, TierStats,
};

/// Re-exported: [`TransportError::Rejected`] and [`ClientError::Failed`] carry a gRPC code.
pub use tonic::Code;
