//! The source of truth behind a group: what a cache miss on the owner calls.

use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// A value produced by a [`Loader`], with an optional lifetime overriding the group default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The value to cache and return.
    pub value: Bytes,
    /// How long the value may be served; `None` uses the group's default TTL.
    pub ttl: Option<Duration>,
}

impl Loaded {
    /// A value with the group's default lifetime.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Loaded {
            value: value.into(),
            ttl: None,
        }
    }

    /// The same value with its own lifetime.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Why a loader could not produce a value; reported to the caller as unavailable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Loads a key's value from the expensive source (a database, a service) on a miss.
///
/// The cluster calls a key's loader on the key's owner, at most once at a time per node
/// (singleflight); `Ok(None)` means the key does not exist, which is a miss, not an error.
#[async_trait::async_trait]
pub trait Loader: Send + Sync + 'static {
    /// Produce the value of `key`, or `None` if it does not exist.
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError>;
}

/// A [`Loader`] made from an async closure, for small programs and tests.
pub struct FnLoader<F>(F);

impl<F> fmt::Debug for FnLoader<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnLoader")
    }
}

/// Wrap `f` (key → future of the load result) as a [`Loader`].
pub fn loader_fn<F, Fut>(f: F) -> FnLoader<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Loaded>, LoadError>> + Send + 'static,
{
    FnLoader(f)
}

#[async_trait::async_trait]
impl<F, Fut> Loader for FnLoader<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Loaded>, LoadError>> + Send + 'static,
{
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        (self.0)(Bytes::copy_from_slice(key)).await
    }
}
