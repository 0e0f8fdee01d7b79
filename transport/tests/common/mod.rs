//! Shared fixtures: an in-memory handler and a loopback server whose accepted connections are
//! counted.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lcache_transport::observe::{Outcome, Rpc};
use lcache_transport::{
    serve_with_incoming, CacheHandler, Deadline, DeleteRequest, Fetched, GetRequest, GroupStats,
    InvalidateRequest, NodeStats, ServeError, ServerConfig, ServiceError, SetRequest, Tier,
    TierStats,
};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;

/// The group the fake handler knows.
pub const GROUP: &str = "g";
/// A group whose every request fails with `ResourceExhausted`.
pub const EXHAUSTED: &str = "exhausted";
/// A group whose every request fails with `Internal`.
pub const BROKEN: &str = "broken";
/// A group whose gets wait until [`Fake::release`] is notified (after notifying [`Fake::entered`]).
pub const BLOCKED: &str = "blocked";
/// A group whose gets never complete.
pub const STUCK: &str = "stuck";
/// A group whose gets return a value of [`Fake::big`] bytes.
pub const BIG: &str = "big";

/// What one request looked like when it reached the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub op: &'static str,
    pub forwarded: bool,
    pub deadline: Option<Duration>,
}

/// In-memory handler over a `BTreeMap`.
#[derive(Debug, Default)]
pub struct Fake {
    pub data: Mutex<BTreeMap<Bytes, (Bytes, Option<Duration>)>>,
    pub seen: Mutex<Vec<Seen>>,
    /// What the front doors reported through `CacheHandler::observe`, in order.
    pub observed: Mutex<Vec<(Rpc, Outcome, u64)>>,
    pub entered: Notify,
    pub release: Notify,
    /// Notified (one permit) whenever a request is reported to `observe`.
    pub reported: Notify,
    pub big: usize,
}

impl Fake {
    pub fn new() -> Arc<Self> {
        Arc::new(Fake::default())
    }

    pub fn with_big(big: usize) -> Arc<Self> {
        Arc::new(Fake {
            big,
            ..Fake::default()
        })
    }

    pub fn last_seen(&self) -> Seen {
        self.seen
            .lock()
            .last()
            .cloned()
            .expect("a request reached the handler")
    }

    fn check(&self, group: &str) -> Result<(), ServiceError> {
        match group {
            GROUP | BLOCKED | STUCK | BIG => Ok(()),
            EXHAUSTED => Err(ServiceError::ResourceExhausted("too many waiters".into())),
            BROKEN => Err(ServiceError::Internal("loader failed".into())),
            other => Err(ServiceError::UnknownGroup(other.into())),
        }
    }

    fn record(&self, op: &'static str, forwarded: bool, deadline: Deadline) {
        self.seen.lock().push(Seen {
            op,
            forwarded,
            deadline: Some(deadline.remaining()),
        });
    }
}

impl CacheHandler for Fake {
    async fn get(
        &self,
        req: GetRequest,
        deadline: Deadline,
        _arrived: Instant,
    ) -> Result<Option<Fetched>, ServiceError> {
        self.record("get", req.forwarded, deadline);
        self.check(&req.group)?;
        match req.group.as_str() {
            BLOCKED => {
                self.entered.notify_one();
                self.release.notified().await;
            }
            STUCK => std::future::pending::<()>().await,
            BIG => {
                return Ok(Some(Fetched {
                    value: Bytes::from(vec![7u8; self.big]),
                    ttl: None,
                }))
            }
            _ => {}
        }
        Ok(self.data.lock().get(&req.key).map(|(v, ttl)| Fetched {
            value: v.clone(),
            ttl: *ttl,
        }))
    }

    async fn set(
        &self,
        req: SetRequest,
        deadline: Deadline,
        _arrived: Instant,
    ) -> Result<(), ServiceError> {
        self.record("set", req.forwarded, deadline);
        self.check(&req.group)?;
        self.data.lock().insert(req.key, (req.value, req.ttl));
        Ok(())
    }

    async fn delete(
        &self,
        req: DeleteRequest,
        deadline: Deadline,
        _arrived: Instant,
    ) -> Result<bool, ServiceError> {
        self.record("delete", req.forwarded, deadline);
        self.check(&req.group)?;
        Ok(self.data.lock().remove(&req.key).is_some())
    }

    async fn invalidate(&self, req: InvalidateRequest) -> Result<(), ServiceError> {
        self.check(&req.group)?;
        self.data.lock().remove(&req.key);
        Ok(())
    }

    async fn stats(&self, group: Option<String>) -> Result<NodeStats, ServiceError> {
        let entries = self.data.lock().len() as u64;
        let all = [GROUP, BIG].map(|g| {
            let mut stats = GroupStats {
                group: g.into(),
                ..GroupStats::default()
            };
            stats.counters.hits = 3;
            let mut main = TierStats {
                tier: Tier::Main,
                budget_bytes: 1 << 20,
                store: Default::default(),
            };
            main.store.entries = if g == GROUP { entries } else { 0 };
            stats.tiers.push(main);
            stats
        });
        let groups = match group {
            None => all.to_vec(),
            Some(g) => {
                self.check(&g)?;
                all.into_iter().filter(|s| s.group == g).collect()
            }
        };
        Ok(NodeStats {
            node_id: "node-a".into(),
            groups,
        })
    }

    fn observe(&self, rpc: Rpc, outcome: Outcome, _elapsed: Duration, count: u64) {
        self.observed.lock().push((rpc, outcome, count));
        self.reported.notify_one();
    }
}

/// A server on 127.0.0.1:0 serving a handler through `serve_with_incoming`.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    pub async fn start<H: CacheHandler>(handler: Arc<H>, config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let incoming = TcpListenerStream::new(listener).inspect(move |conn| {
            if conn.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_incoming(handler, config, incoming, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            accepted,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Triggers graceful shutdown (without waiting for it).
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Bounds a test step so a bug shows as a failure, not a hung test.
pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not complete within 10s"))
}
