//! The state every request of a node shares, and the entry points of its request path.
//!
//! A request enters here (from gRPC, RESP or an in-process [`crate::Group`] handle), passes the
//! input checks and admission, and goes to its group: the group's state machine
//! ([`lcache_core::group::Group`]) decides, and [`reads`](crate::reads) /
//! [`writes`](crate::writes) carry out what it decides.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lcache_core::counters::bump;
use lcache_core::group::{Group as GroupCore, LoadSlots, Reply};
use lcache_core::limits::Limits;
use lcache_core::member::Member;
use lcache_core::router::Router;
use lcache_core::Timestamp;
use lcache_transport::{
    Deadline, DeleteRequest, GetRequest, InvalidateRequest, NodeStats, SetRequest, Transport,
};
use parking_lot::RwLock;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::buggify::Point;
use crate::clock::Clock;
use crate::error::RequestError;
use crate::loader::Loader;
use crate::metrics::record::NodeMetrics;

/// What one caller waits on: the sender half of its own reply channel.
pub(crate) type Waiter = oneshot::Sender<Reply<RequestError>>;

/// One group on this node: its state machine and its loader.
pub(crate) struct GroupState {
    pub(crate) core: GroupCore<Waiter, RequestError>,
    pub(crate) loader: Option<Arc<dyn Loader>>,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState")
            .field("core", &self.core)
            .field("loader", &self.loader.is_some())
            .finish()
    }
}

/// Time limits of the request path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Cap of a client request's deadline.
    pub(crate) request: Duration,
    /// Longest a loader runs.
    pub(crate) load: Duration,
    /// Transit allowance of a peer call.
    pub(crate) peer: Duration,
}

impl Timeouts {
    /// How long a forwarded get waits for the owner ([`crate::NodeConfig::forward_timeout`]);
    /// also the cap of a forwarded request's deadline on the owner.
    pub(crate) fn forward(&self) -> Duration {
        crate::config::forward_timeout(self.load, self.peer)
    }
}

/// State every request of a node shares.
pub(crate) struct Runtime<T> {
    pub(crate) me: Member,
    pub(crate) clock: Clock,
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    /// The ring requests route by (the groups hold the same one).
    pub(crate) router: RwLock<Arc<Router>>,
    pub(crate) transport: T,
    pub(crate) groups: BTreeMap<String, Arc<GroupState>>,
    pub(crate) admission: Admission,
    pub(crate) load_slots: Arc<LoadSlots>,
    /// Loads and fetches running on their own tasks, outliving the callers that started them.
    pub(crate) works: TaskTracker,
    /// Stops the running works (at the end of a shutdown).
    pub(crate) stop_works: CancellationToken,
    /// What the request path records for the Prometheus metrics.
    pub(crate) metrics: NodeMetrics,
    #[cfg(feature = "buggify")]
    pub(crate) buggify: Option<Arc<dyn crate::buggify::Buggify>>,
}

impl<T> std::fmt::Debug for Runtime<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("me", &self.me)
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Runtime<T> {
    pub(crate) fn group(&self, name: &str) -> Result<&Arc<GroupState>, RequestError> {
        self.groups
            .get(name)
            .ok_or_else(|| RequestError::UnknownGroup(name.to_string()))
    }

    /// When a request arrived (`arrived`, read once by the caller) and the deadline it is served
    /// under: the caller's, capped by the node's bound for a client request, or by the forward
    /// timeout for a request a peer forwarded (the peer waits that long for a slow but healthy
    /// owner).
    fn arrival(
        &self,
        deadline: Deadline,
        forwarded: bool,
        arrived: Instant,
    ) -> (Timestamp, Deadline) {
        let cap = if forwarded {
            self.timeouts.forward()
        } else {
            self.timeouts.request
        };
        let now = arrived;
        let capped = now
            .checked_add(cap)
            .map_or(deadline, |at| deadline.min(Deadline::at(at)));
        (self.clock.at(now), capped)
    }

    /// Admits a request of `group`, counting a refusal (once: here is where it is decided).
    fn admit(
        &self,
        group: &GroupState,
        forwarded: bool,
    ) -> Result<crate::admission::Admitted<'_>, RequestError> {
        if forwarded {
            bump(&group.core.runtime_counters().forwarded_in);
        }
        self.admission.admit().inspect_err(|err| {
            if matches!(err, RequestError::Overloaded(_)) {
                bump(&group.core.runtime_counters().overloaded);
            }
        })
    }

    /// Counts an input refused as invalid (once: here is where it is checked).
    fn invalid<R>(group: &GroupState, err: RequestError) -> Result<R, RequestError> {
        bump(&group.core.runtime_counters().invalid);
        Err(err)
    }

    /// Serves a get, from a client, a peer or an in-process handle.
    pub(crate) async fn get(
        self: &Arc<Self>,
        request: GetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Reply<RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admit(group, request.forwarded)?;
        if let Err(err) = self.limits.check_key(&request.key) {
            return Self::invalid(group, err.into());
        }
        let (now, deadline) = self.arrival(deadline, request.forwarded, arrived);
        self.serve_get(group, request.key, request.forwarded, now, deadline)
            .await
    }

    /// Serves a set.
    pub(crate) async fn set(
        self: &Arc<Self>,
        request: SetRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<(), RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admit(group, request.forwarded)?;
        let checked = self
            .limits
            .check_key(&request.key)
            .and_then(|()| self.limits.check_value(&request.value));
        if let Err(err) = checked {
            return Self::invalid(group, err.into());
        }
        if request.ttl == Some(Duration::ZERO) {
            return Self::invalid(
                group,
                RequestError::TooLarge {
                    group: request.group,
                    reason: "a TTL must be longer than zero".into(),
                },
            );
        }
        let (now, deadline) = self.arrival(deadline, request.forwarded, arrived);
        self.serve_set(group, request, now, deadline).await
    }

    /// Serves a delete.
    pub(crate) async fn delete(
        self: &Arc<Self>,
        request: DeleteRequest,
        deadline: Deadline,
        arrived: Instant,
    ) -> Result<bool, RequestError> {
        let group = self.group(&request.group)?;
        let _permit = self.admit(group, request.forwarded)?;
        if let Err(err) = self.limits.check_key(&request.key) {
            return Self::invalid(group, err.into());
        }
        let (now, deadline) = self.arrival(deadline, request.forwarded, arrived);
        self.serve_delete(group, request, now, deadline).await
    }

    /// Serves an invalidation from a key's owner. Not subject to admission: it only drops
    /// data, costs one lock, and losing it would let a stale copy live on.
    pub(crate) fn invalidate(&self, request: InvalidateRequest) -> Result<(), RequestError> {
        let group = self.group(&request.group)?;
        if let Err(err) = self.limits.check_key(&request.key) {
            return Self::invalid(group, err.into());
        }
        group.core.invalidate(&request.key);
        Ok(())
    }

    /// The router requests route by now.
    pub(crate) fn router(&self) -> Arc<Router> {
        self.router.read().clone()
    }

    /// The members the node currently routes to, sorted by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.router().members().cloned().collect()
    }

    /// The member the node believes owns `key`.
    pub(crate) fn owner(&self, key: &[u8]) -> Member {
        self.router().owner(key).clone()
    }

    /// Stats of every group on the node.
    pub(crate) fn all_stats(&self) -> NodeStats {
        self.stats(None).unwrap_or_default()
    }

    /// Stats of one group, or of all groups.
    pub(crate) fn stats(&self, group: Option<&str>) -> Result<NodeStats, RequestError> {
        let groups = match group {
            Some(name) => vec![self.group(name)?.core.stats()],
            None => self.groups.values().map(|g| g.core.stats()).collect(),
        };
        Ok(NodeStats {
            node_id: self.me.id.to_string(),
            groups,
        })
    }

    /// Calls `visit` with every entry of `group` (tier, key, value); nothing for an unknown group.
    pub(crate) fn visit_entries(
        &self,
        group: &str,
        visit: impl FnMut(lcache_core::group::Tier, &[u8], &[u8]),
    ) {
        if let Some(group) = self.groups.get(group) {
            group.core.visit_entries(visit);
        }
    }

    /// Stalls at a fault point when the simulation says so (a no-op in production builds).
    pub(crate) async fn stall(&self, point: Point) {
        #[cfg(feature = "buggify")]
        if let Some(delay) = self.buggify.as_ref().and_then(|b| b.stall(point)) {
            tokio::time::sleep(delay).await;
        }
        let _ = point;
    }

    /// [`Runtime::stall`], then the time: `now` if no stall happened (no second clock read).
    pub(crate) async fn after_stall(&self, point: Point, now: Timestamp) -> Timestamp {
        #[cfg(feature = "buggify")]
        if let Some(delay) = self.buggify.as_ref().and_then(|b| b.stall(point)) {
            tokio::time::sleep(delay).await;
            return self.clock.now();
        }
        let _ = point;
        now
    }

    /// Whether the simulation drops the message at a fault point (never in production builds).
    pub(crate) fn drops(&self, point: Point) -> bool {
        #[cfg(feature = "buggify")]
        if let Some(buggify) = &self.buggify {
            return buggify.drop_message(point);
        }
        let _ = point;
        false
    }
}
