//! One cache group on one node: its stores, its loader and its request path.
//!
//! `get` follows DESIGN.md: the local store (or the hot cache for keys owned elsewhere), then the
//! owner over the transport, then the loader on the owner — each miss path coalesced per key.
//! If the owner cannot be reached the node loads locally (the cluster degrades, never fails).

use crate::error::RequestError;
use crate::loader::Loader;
use crate::node::Shared;
use crate::stats::Counters;
use bytes::Bytes;
use lcache_core::router::Route;
use lcache_core::sharded::ShardedStore;
use lcache_core::singleflight::{Begin, FlightId, SingleFlight};
use lcache_core::store::Lookup;
use lcache_core::Timestamp;
use lcache_transport::{DeleteRequest, Fetched, GetRequest, GroupStats, SetRequest, Transport};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What one load or fetch delivers to every caller waiting on it.
pub(crate) type FlightResult = Result<Option<Fetched>, RequestError>;
type Waiter = oneshot::Sender<FlightResult>;
type Flights = Mutex<SingleFlight<Bytes, Waiter>>;

/// A bounded cache of values owned by other nodes.
#[derive(Debug)]
pub(crate) struct HotCache {
    store: ShardedStore,
    lifetime: Duration,
}

impl HotCache {
    pub(crate) fn new(store: ShardedStore, lifetime: Duration) -> Self {
        HotCache { store, lifetime }
    }

    /// Every hot copy's key and value length (for [`crate::NodeProbe::entries`]).
    pub(crate) fn entries(&self) -> Vec<(Bytes, usize)> {
        self.store.entries()
    }
}

/// The state of one group on this node.
pub(crate) struct GroupState {
    pub(crate) name: String,
    pub(crate) default_ttl: Option<Duration>,
    /// Values of keys this node owns.
    pub(crate) store: ShardedStore,
    pub(crate) hot: Option<HotCache>,
    pub(crate) loader: Option<Arc<dyn Loader>>,
    /// Loads on this node (as owner, or as fallback when the owner is unreachable).
    loads: Flights,
    /// Fetches from owners.
    fetches: Flights,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GroupState {
    pub(crate) fn new(
        name: String,
        default_ttl: Option<Duration>,
        store: ShardedStore,
        hot: Option<HotCache>,
        loader: Option<Arc<dyn Loader>>,
        max_waiters_per_key: usize,
    ) -> Self {
        GroupState {
            name,
            default_ttl,
            store,
            hot,
            loader,
            loads: Mutex::new(SingleFlight::new(max_waiters_per_key)),
            fetches: Mutex::new(SingleFlight::new(max_waiters_per_key)),
            counters: Counters::default(),
        }
    }

    /// Counters of this group for a stats report.
    pub(crate) fn stats(&self) -> GroupStats {
        let main = self.store.stats();
        let hot = self
            .hot
            .as_ref()
            .map(|h| h.store.stats())
            .unwrap_or_default();
        let c = &self.counters;
        GroupStats {
            group: self.name.clone(),
            hits: main.hits + hot.hits,
            misses: main.misses + hot.misses,
            loads: Counters::read(&c.loads),
            load_errors: Counters::read(&c.load_errors),
            peer_gets: Counters::read(&c.peer_gets),
            peer_errors: Counters::read(&c.peer_errors),
            local_fallbacks: Counters::read(&c.local_fallbacks),
            inserts: main.inserts + hot.inserts,
            evictions: main.evictions + hot.evictions,
            expirations: main.expirations + hot.expirations,
            bytes: main.bytes + hot.bytes,
            entries: main.entries + hot.entries,
            budget_bytes: self.store.budget() + self.hot.as_ref().map_or(0, |h| h.store.budget()),
            rejected: Counters::read(&c.rejected),
            load_dedups: Counters::read(&c.coalesced),
            hot_hits: hot.hits,
            forwarded_in: Counters::read(&c.forwarded_in),
        }
    }

    /// Bytes held and byte budget of each store: the main store, then the hot cache if any.
    pub(crate) fn store_usage(&self) -> Vec<(u64, u64)> {
        std::iter::once(&self.store)
            .chain(self.hot.as_ref().map(|h| &h.store))
            .map(|store| (store.stats().bytes, store.budget()))
            .collect()
    }

    /// Reclaim up to `max` expired entries from each store.
    pub(crate) fn sweep(&self, now: Timestamp, max: usize) -> usize {
        let mut swept = self.store.sweep_expired(now, max).len();
        if let Some(hot) = &self.hot {
            swept += hot.store.sweep_expired(now, max).len();
        }
        swept
    }

    /// Expiry of a value kept for `ttl` from `now`.
    fn expiry(now: Timestamp, ttl: Option<Duration>) -> Option<Timestamp> {
        ttl.map(|ttl| now.saturating_add(ttl))
    }

    /// Keep a value this node produced or fetched: in the main store if this node owns the key,
    /// else as a hot copy no longer lived than the hot lifetime and the value's own TTL.
    fn keep(&self, owned: bool, key: Bytes, fetched: &Fetched, now: Timestamp) {
        let result = if owned {
            self.store.insert(
                key,
                fetched.value.clone(),
                Self::expiry(now, fetched.ttl),
                now,
            )
        } else if let Some(hot) = &self.hot {
            let lifetime = fetched
                .ttl
                .map_or(hot.lifetime, |ttl| ttl.min(hot.lifetime));
            hot.store.insert(
                key,
                fetched.value.clone(),
                Self::expiry(now, Some(lifetime)),
                now,
            )
        } else {
            return;
        };
        if let Err(err) = result {
            tracing::debug!(group = %self.name, %err, "value not cached");
        }
    }

    /// Drop every local copy of `key`, stop in-flight loads and fetches from caching theirs, and
    /// then apply `write` to the main store — all under the flight locks, so no load that began
    /// before the write can store an older value over it.
    fn write_locally<R>(&self, key: &[u8], write: impl FnOnce(&ShardedStore) -> R) -> R {
        let mut loads = self.loads.lock();
        let mut fetches = self.fetches.lock();
        loads.supersede(key);
        fetches.supersede(key);
        if let Some(hot) = &self.hot {
            hot.store.remove(key);
        }
        write(&self.store)
    }

    /// Drop every local copy of `key`; true if the main store held it.
    fn forget_key(&self, key: &[u8]) -> bool {
        self.write_locally(key, |store| store.remove(key))
    }
}

/// A value as it leaves this node: the bytes and what is left of their lifetime.
fn fetched(lookup: Lookup, now: Timestamp) -> Fetched {
    Fetched {
        value: lookup.value,
        ttl: lookup
            .expires_at
            .map(|at| at.saturating_duration_since(now)),
    }
}

/// Serve a get for `key` in `group`.
pub(crate) async fn get<T: Transport>(
    shared: &Arc<Shared<T>>,
    group: &Arc<GroupState>,
    key: Bytes,
    forwarded: bool,
    deadline: Instant,
) -> FlightResult {
    shared.limits.check_key(&key)?;
    let now = shared.clock.now();
    match shared.route(&key, forwarded) {
        Route::Local => get_local(shared, group, key, deadline, now).await,
        Route::Peer(owner) => {
            if let Some(hot) = &group.hot {
                if let Some(hit) = hot.store.get(&key, now) {
                    return Ok(Some(fetched(hit, now)));
                }
            }
            let lead = {
                let (shared, group, key) = (shared.clone(), group.clone(), key.clone());
                move |id| {
                    tokio::spawn(async move {
                        lead_fetch(shared, group, key, owner, id, deadline).await;
                    });
                }
            };
            join(&group.fetches, &group.counters, key, deadline, lead).await
        }
    }
}

/// The local path: the main store, then one load per key at a time on this node.
async fn get_local<T: Transport>(
    shared: &Arc<Shared<T>>,
    group: &Arc<GroupState>,
    key: Bytes,
    deadline: Instant,
    now: Timestamp,
) -> FlightResult {
    if let Some(hit) = group.store.get(&key, now) {
        return Ok(Some(fetched(hit, now)));
    }
    let lead = {
        let (shared, group, key) = (shared.clone(), group.clone(), key.clone());
        move |id| {
            tokio::spawn(async move {
                lead_load(shared, group, key, id).await;
            });
        }
    };
    join(&group.loads, &group.counters, key, deadline, lead).await
}

/// Join the flight for `key`, starting it with `lead` if there is none, and wait for its result.
///
/// The leader runs as its own task, so a caller that gives up (deadline, disconnect) never
/// strands the others.
async fn join(
    flights: &Flights,
    counters: &Counters,
    key: Bytes,
    deadline: Instant,
    lead: impl FnOnce(FlightId),
) -> FlightResult {
    let (tx, rx) = oneshot::channel();
    let begin = flights.lock().begin(key, tx);
    match begin {
        Begin::Lead(id) => lead(id),
        Begin::Joined => Counters::bump(&counters.coalesced),
        Begin::Full(_) => {
            Counters::bump(&counters.rejected);
            return Err(RequestError::Overloaded(
                "too many callers waiting on one key".into(),
            ));
        }
    }
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RequestError::Load("the load was abandoned".into())),
        Err(_) => Err(RequestError::DeadlineExceeded(
            deadline.saturating_duration_since(Instant::now()),
        )),
    }
}

/// Deliver one result to every waiter of a finished flight.
fn deliver(waiters: Vec<Waiter>, result: &FlightResult) {
    for waiter in waiters {
        // A waiter that gave up has dropped its receiver; nothing to do for it.
        let _ = waiter.send(result.clone());
    }
}

/// Lead a load: re-check the store, call the loader, keep the value unless a write superseded it.
async fn lead_load<T: Transport>(
    shared: Arc<Shared<T>>,
    group: Arc<GroupState>,
    key: Bytes,
    id: FlightId,
) {
    let result = load(&shared, &group, &key).await;
    let waiters = {
        let mut loads = group.loads.lock();
        if let Ok(Some(value)) = &result {
            if !loads.is_superseded(&key, id) {
                let owned = matches!(shared.route(&key, false), Route::Local);
                group.keep(owned, key.clone(), value, shared.clock.now());
            }
        }
        loads.complete(&key, id)
    };
    deliver(waiters, &result);
}

/// Produce `key`'s value on this node: from the store if it arrived meanwhile, else the loader.
async fn load<T: Transport>(shared: &Shared<T>, group: &GroupState, key: &Bytes) -> FlightResult {
    let now = shared.clock.now();
    if let Some(hit) = group.store.peek(key, now) {
        return Ok(Some(fetched(hit, now)));
    }
    let Some(loader) = &group.loader else {
        return Ok(None);
    };
    Counters::bump(&group.counters.loads);
    let outcome = tokio::time::timeout(shared.load_timeout, loader.load(key)).await;
    let failure = match outcome {
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(loaded))) => match shared.limits.check_value(&loaded.value) {
            Ok(()) => {
                return Ok(Some(Fetched {
                    value: loaded.value,
                    ttl: loaded.ttl.or(group.default_ttl),
                }))
            }
            Err(err) => format!("loader returned an unusable value: {err}"),
        },
        Ok(Err(err)) => err.0,
        Err(_) => format!("loader timed out after {:?}", shared.load_timeout),
    };
    Counters::bump(&group.counters.load_errors);
    tracing::warn!(group = %group.name, error = %failure, "load failed");
    Err(RequestError::Load(failure))
}

/// Lead a fetch from the owner; if the owner is unreachable, load locally instead.
async fn lead_fetch<T: Transport>(
    shared: Arc<Shared<T>>,
    group: Arc<GroupState>,
    key: Bytes,
    owner: lcache_core::member::Member,
    id: FlightId,
    deadline: Instant,
) {
    Counters::bump(&group.counters.peer_gets);
    let request = GetRequest {
        group: group.name.clone(),
        key: key.clone(),
        forwarded: true,
    };
    let timeout = shared.peer_budget(deadline);
    let asked = Instant::now();
    let (result, from_owner) = match shared.transport.get(&owner, request, timeout).await {
        Ok(found) => (Ok(found), true),
        Err(err) if err.is_retryable_elsewhere() => {
            Counters::bump(&group.counters.peer_errors);
            Counters::bump(&group.counters.local_fallbacks);
            tracing::warn!(group = %group.name, owner = %owner.id, error = %err,
                "owner unreachable, loading locally");
            let now = shared.clock.now();
            let local = get_local(&shared, &group, key.clone(), deadline, now).await;
            (local, false)
        }
        Err(err) => {
            Counters::bump(&group.counters.peer_errors);
            (
                Err(RequestError::from_transport(owner.id.as_str(), &err)),
                true,
            )
        }
    };
    // The owner's answer, aged by the whole call, is what the copy keeps and what every waiter
    // gets: a waiter that joined the flight after the owner answered must not be told the value
    // lives longer than it does (found by the simulation, S4).
    let result = match result {
        Ok(Some(value)) if from_owner => Ok(aged(&value, asked.elapsed())),
        other => other,
    };
    let waiters = {
        let mut fetches = group.fetches.lock();
        if let (Ok(Some(copy)), true) = (&result, from_owner) {
            if !fetches.is_superseded(&key, id) {
                group.keep(false, key.clone(), copy, shared.clock.now());
            }
        }
        fetches.complete(&key, id)
    };
    deliver(waiters, &result);
}

/// `fetched` as a copy to keep `elapsed` after the owner was asked: the owner measured the
/// remaining lifetime when it answered, at some instant of the call, so the copy may live only
/// what is left of it after the whole call (else it would outlive the owner's value by up to
/// the call's duration). `None` when nothing is left: the value expired on the way, so the
/// fetch answers a miss rather than a value past its lifetime.
fn aged(fetched: &Fetched, elapsed: Duration) -> Option<Fetched> {
    let ttl = match fetched.ttl {
        Some(ttl) if ttl <= elapsed => return None,
        ttl => ttl.map(|ttl| ttl - elapsed),
    };
    Some(Fetched {
        value: fetched.value.clone(),
        ttl,
    })
}

/// Serve a set: applied on the owner, forwarded there otherwise; local copies are dropped.
pub(crate) async fn set<T: Transport>(
    shared: &Arc<Shared<T>>,
    group: &Arc<GroupState>,
    request: SetRequest,
    deadline: Instant,
) -> Result<(), RequestError> {
    shared.limits.check_key(&request.key)?;
    shared.limits.check_value(&request.value)?;
    if request.ttl == Some(Duration::ZERO) {
        return Err(RequestError::TooLarge {
            group: group.name.clone(),
            reason: "a TTL must be longer than zero".into(),
        });
    }
    let ttl = request.ttl.or(group.default_ttl);
    match shared.route(&request.key, request.forwarded) {
        Route::Local => {
            let now = shared.clock.now();
            let expires_at = GroupState::expiry(now, ttl);
            let (key, value) = (request.key, request.value);
            group
                .write_locally(&key.clone(), |store| {
                    store.insert(key, value, expires_at, now)
                })
                .map(drop)
                .map_err(|err| RequestError::from_store(&group.name, err))
        }
        Route::Peer(owner) => {
            Counters::bump(&group.counters.peer_writes);
            let key = request.key.clone();
            let forward = SetRequest {
                ttl,
                forwarded: true,
                ..request
            };
            let timeout = shared.peer_budget(deadline);
            let outcome = shared.transport.set(&owner, forward, timeout).await;
            group.forget_key(&key);
            outcome.map_err(|err| {
                Counters::bump(&group.counters.peer_errors);
                RequestError::from_transport(owner.id.as_str(), &err)
            })
        }
    }
}

/// Serve a delete: applied on the owner, forwarded there otherwise; local copies are dropped.
pub(crate) async fn delete<T: Transport>(
    shared: &Arc<Shared<T>>,
    group: &Arc<GroupState>,
    request: DeleteRequest,
    deadline: Instant,
) -> Result<bool, RequestError> {
    shared.limits.check_key(&request.key)?;
    match shared.route(&request.key, request.forwarded) {
        Route::Local => Ok(group.forget_key(&request.key)),
        Route::Peer(owner) => {
            Counters::bump(&group.counters.peer_writes);
            let key = request.key.clone();
            let forward = DeleteRequest {
                forwarded: true,
                ..request
            };
            let timeout = shared.peer_budget(deadline);
            let outcome = shared.transport.delete(&owner, forward, timeout).await;
            group.forget_key(&key);
            outcome.map_err(|err| {
                Counters::bump(&group.counters.peer_errors);
                RequestError::from_transport(owner.id.as_str(), &err)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(ttl: Option<Duration>) -> Fetched {
        Fetched {
            value: Bytes::from_static(b"v"),
            ttl,
        }
    }

    /// Found by the simulation (S4): a hot copy kept the owner's remaining lifetime as measured
    /// when the owner answered, so it outlived the owner's value by the call's transit time.
    #[test]
    fn a_hot_copy_lives_only_what_is_left_after_the_fetch() {
        let ms = Duration::from_millis;
        let copy = aged(&fetched(Some(ms(500))), ms(120));
        assert_eq!(copy.map(|c| c.ttl), Some(Some(ms(380))));
        assert!(aged(&fetched(Some(ms(100))), ms(100)).is_none());
        assert!(aged(&fetched(Some(ms(100))), ms(250)).is_none());
        let forever = aged(&fetched(None), ms(250));
        assert_eq!(forever.map(|c| c.ttl), Some(None));
    }
}
