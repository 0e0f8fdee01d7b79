//! The LCache node runtime.
//!
//! A [`Node`] drives the sans-IO core (`lcache-core`) with a peer [`Transport`] and a membership
//! [`Discovery`]: it turns requests and membership events into core inputs, and core outputs into
//! peer calls and responses. It hosts named [`Group`]s, each with its byte budget, eviction
//! policy, default TTL, hot cache and optional [`Loader`].
//!
//! [`Transport`]: lcache_transport::Transport
//! [`Discovery`]: lcache_discovery::Discovery
#![warn(missing_docs)]

mod admission;
pub mod buggify;
mod clock;
pub mod config;
pub mod demo;
pub mod embed;
mod error;
pub mod loader;
mod membership;
pub mod metrics;
mod node;
pub mod origin;
mod reads;
mod runtime;
pub mod server;
mod service;
pub mod spec;
mod writes;

pub use clock::Clock;
pub use config::{GroupConfig, HotCacheConfig, MissCacheConfig, NodeConfig, DEFAULT_GROUP};
pub use embed::{BuildError, NodeBuilder, RunningNode};
pub use error::{RequestError, StartError};
pub use loader::{loader_fn, LoadError, Loaded, Loader};
pub use node::{Group, Node, NodeProbe, ShutdownReport};
pub use service::NodeService;
