//! One shard of a group: the stores and flights of the keys that hash to it, and every rule that
//! decides what happens to them. Single-threaded (`&mut self`); [`Group`](super::Group) puts
//! shards behind locks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::flights::{Flight, Flights, Kind, State, Waiters};
use super::load_slots::LoadSlots;
use super::stats::GroupCounters;
use super::steps::{
    Completion, Delivery, FetchOutcome, Fetched, FlightRef, GetStep, LoadOutcome, Refusal, Reply,
    UnappliedSet, Work, WriteStep,
};
use crate::member::Member;
use crate::router::Router;
use crate::store::{entry_size, Lookup, Store, StoreError};
use crate::time::Timestamp;

/// How many times a flight asks the owner again when the value it got expired on its way (the
/// owner's value was at the end of its life). The owner answers with what it holds now, so one
/// more ask nearly always settles it; past the bound the key is answered as a miss.
pub(super) const MAX_REFETCHES: u8 = 2;

/// Settings every shard of a group shares.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    pub(super) default_ttl: Option<Duration>,
    pub(super) hot_lifetime: Duration,
    pub(super) miss_ttl: Duration,
    pub(super) max_waiters_per_key: usize,
    pub(super) has_loader: bool,
}

/// The stores, flights and counters of the keys of one shard.
#[derive(Debug)]
pub(super) struct Shard<W> {
    pub(super) main: Store,
    pub(super) hot: Option<Store>,
    pub(super) misses: Option<Store>,
    flights: Flights<W>,
    router: Arc<Router>,
    pub(super) counters: GroupCounters,
}

/// `lookup` as it leaves this node at `now`.
fn fetched(lookup: Lookup, now: Timestamp) -> Fetched {
    Fetched {
        value: lookup.value,
        ttl: lookup
            .expires_at
            .map(|at| at.saturating_duration_since(now)),
    }
}

/// `value` aged by `elapsed`: the owner measured its remaining lifetime when it answered, at
/// some instant of the call, so a copy may live only what is left after the whole call. `None`
/// when nothing is left (the value expired on the way).
fn aged(value: Fetched, elapsed: Duration) -> Option<Fetched> {
    let ttl = match value.ttl {
        Some(ttl) if ttl <= elapsed => return None,
        ttl => ttl.map(|ttl| ttl - elapsed),
    };
    Some(Fetched { ttl, ..value })
}

/// When a load's end is reported: `late` after the loader returned, at `now`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reported {
    pub(super) late: Duration,
    pub(super) now: Timestamp,
}

fn expiry(now: Timestamp, ttl: Option<Duration>) -> Option<Timestamp> {
    ttl.map(|ttl| now.saturating_add(ttl))
}

impl<W> Shard<W> {
    pub(super) fn new(
        main: Store,
        hot: Option<Store>,
        misses: Option<Store>,
        router: Arc<Router>,
    ) -> Self {
        Shard {
            main,
            hot,
            misses,
            flights: Flights::default(),
            router,
            counters: GroupCounters::default(),
        }
    }

    fn owns(&self, key: &[u8]) -> bool {
        self.router.is_local(key)
    }

    // ---------------------------------------------------------------------------------------
    // Reads
    // ---------------------------------------------------------------------------------------

    /// A get of `key`: served from this node if it can be, else joined to (or started as) a
    /// flight. `forwarded` gets are never forwarded again.
    pub(super) fn get<E: From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        key: &Bytes,
        forwarded: bool,
        now: Timestamp,
        waiter: impl FnOnce() -> W,
    ) -> GetStep<E> {
        let owner = self.router.owner(key);
        if owner.id == *self.router.self_id() {
            if let Some(hit) = self.main.get(key, now) {
                self.counters.hits += 1;
                return GetStep::Reply(Ok(Some(fetched(hit, now))));
            }
            if let Some(misses) = &mut self.misses {
                if misses.get(key, now).is_some() {
                    self.counters.miss_hits += 1;
                    return GetStep::Reply(Ok(None));
                }
            }
            self.counters.misses += 1;
            if !rules.has_loader {
                return GetStep::Reply(Ok(None));
            }
            return self.join(rules, slots, key, Kind::Load, forwarded, now, waiter);
        }
        if let Some(hot) = &mut self.hot {
            if let Some(hit) = hot.get(key, now) {
                self.counters.hot_hits += 1;
                return GetStep::Reply(Ok(Some(fetched(hit, now))));
            }
        }
        self.counters.misses += 1;
        if forwarded {
            // A peer thinks this node owns the key; it does not in its own view. Serve it without
            // a second call (views disagree only for a while): a local load, answered but not
            // kept unless a client of this node waits on it too — or, if a flight of the key
            // already runs here (its clients' fetch from the owner), that flight's answer, the
            // owner's, refusal included (sim seeds 6030, 6039).
            self.counters.stray_gets += 1;
            if !rules.has_loader {
                return GetStep::Reply(Ok(None));
            }
            return self.join(rules, slots, key, Kind::Load, forwarded, now, waiter);
        }
        let owner = owner.clone();
        self.join(
            rules,
            slots,
            key,
            Kind::Fetch { owner },
            forwarded,
            now,
            waiter,
        )
    }

    /// Whether the current flight of `key` is a load running for peers' forwarded gets alone
    /// (on a node that does not own the key, such a load ignores writes on the owner).
    fn stray_load(&mut self, key: &Bytes) -> bool {
        self.flights.current_mut(key).is_some_and(|flight| {
            flight.kind == Kind::Load && !flight.clients() && flight.state == State::Running
        })
    }

    /// Joins the current flight of `key`, or starts one of `kind`, for a caller that is a peer
    /// forwarding (`forwarded`) or a client.
    #[allow(clippy::too_many_arguments)]
    fn join<E: From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        key: &Bytes,
        kind: Kind,
        forwarded: bool,
        now: Timestamp,
        waiter: impl FnOnce() -> W,
    ) -> GetStep<E> {
        if self.stray_load(key) && !forwarded && matches!(kind, Kind::Fetch { .. }) {
            // A load for peers that took this node for the owner ignores writes on the owner:
            // a client of this node asks the owner instead, and that load ends for its peers.
            self.flights.detach(key);
        }
        if let Some(flight) = self.flights.current_mut(key) {
            if flight.waiters.len() >= rules.max_waiters_per_key {
                self.counters.overloaded += 1;
                let max = rules.max_waiters_per_key;
                return GetStep::Reply(Err(Refusal::WaitersFull { max }.into()));
            }
            flight.waiters.push(waiter(), !forwarded);
            self.counters.coalesced += 1;
            return GetStep::Wait;
        }
        let permit = match kind {
            Kind::Load if !self.flights.load_running(key) => match slots.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    self.counters.overloaded += 1;
                    let cap = slots.cap();
                    return GetStep::Reply(Err(Refusal::LoadsFull { cap }.into()));
                }
            },
            _ => None,
        };
        let owner = match &kind {
            Kind::Fetch { owner } => Some(owner.clone()),
            Kind::Load => None,
        };
        let first = Waiters::one(waiter(), !forwarded);
        let (id, state) = self.flights.start(key.clone(), kind, first, now);
        self.flights.check();
        let flight = FlightRef {
            key: key.clone(),
            id,
        };
        match (state, owner, permit) {
            (State::Queued, ..) => GetStep::Wait,
            (State::Running, Some(owner), _) => {
                self.counters.fetches += 1;
                GetStep::Start(Work::Fetch { flight, owner })
            }
            (State::Running, None, Some(permit)) => {
                self.counters.loads += 1;
                GetStep::Start(Work::Load { flight, permit })
            }
            (State::Running, None, None) => {
                debug_assert!(false, "a running load always holds a permit");
                GetStep::Wait
            }
        }
    }

    /// A load ended (`when.late` before `when.now`): keep its value if this node may, answer its
    /// waiters, start the load that waited behind it.
    pub(super) fn loaded<E: Clone + From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        flight: &FlightRef,
        outcome: LoadOutcome<E>,
        when: Reported,
        gave_up: impl Fn(&W) -> bool,
    ) -> Completion<W, E> {
        let Reported { late, now } = when;
        let Some((mut done, detached)) = self.flights.finish(&flight.key, flight.id) else {
            return Completion::default();
        };
        debug_assert_eq!(done.kind, Kind::Load);
        let key = &flight.key;
        let reply = match outcome {
            LoadOutcome::Value(value) => {
                let value = Fetched {
                    ttl: value.ttl.or(rules.default_ttl),
                    ..value
                };
                match aged(value.clone(), late) {
                    // Its whole lifetime passed between the loader's return and now: a caller
                    // that joined meanwhile would get a value dead before it asked. Ask again
                    // (bounded like a fetch's answer that expired on its way).
                    // A peer's forwarded get never hops on, so only a flight with clients or
                    // on the owner asks again.
                    None if !late.is_zero()
                        && !detached
                        && (done.clients() || self.owns(key))
                        && done.refetches < MAX_REFETCHES =>
                    {
                        let mut completion = if done.still_wanted(&gave_up) {
                            self.refetch(rules, slots, done, now)
                        } else {
                            Completion::default()
                        };
                        self.start_queued(slots, key, now, &gave_up, &mut completion);
                        self.flights.check();
                        return completion;
                    }
                    None if !late.is_zero() => Ok(None),
                    // The loader gave it no lifetime: answered once, not kept.
                    None => Ok(Some(Fetched {
                        ttl: Some(Duration::ZERO),
                        ..value
                    })),
                    Some(value) => {
                        if detached {
                            self.counters.superseded += 1;
                        } else if done.clients() || self.owns(key) {
                            self.keep_loaded(rules, key, &value, now);
                        }
                        // Else a load for peers that took this node for the owner: answered,
                        // not kept (no invalidation would reach a copy made after a write).
                        Ok(Some(value))
                    }
                }
            }
            LoadOutcome::Missing => {
                self.counters.load_misses += 1;
                if !detached {
                    self.remember_miss(rules, key, now);
                }
                Ok(None)
            }
            LoadOutcome::Failed(err) => {
                self.counters.load_errors += 1;
                Err(err)
            }
            LoadOutcome::Panicked(err) => {
                self.counters.load_errors += 1;
                self.counters.loader_panics += 1;
                Err(err)
            }
        };
        let mut completion = Completion {
            deliveries: vec![Delivery {
                waiters: done.waiters.into_callers(),
                reply,
            }],
            start: None,
        };
        self.start_queued(slots, key, now, &gave_up, &mut completion);
        self.flights.check();
        completion
    }

    /// A fetch from the owner ended.
    pub(super) fn fetched<E: Clone + From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        flight: &FlightRef,
        outcome: FetchOutcome<E>,
        now: Timestamp,
        gave_up: impl Fn(&W) -> bool,
    ) -> Completion<W, E> {
        let Some((mut done, detached)) = self.flights.finish(&flight.key, flight.id) else {
            return Completion::default();
        };
        let key = &flight.key;
        let reply: Reply<E> = match outcome {
            FetchOutcome::Unreachable(err) if detached => {
                self.counters.fetch_errors += 1;
                Err(err)
            }
            FetchOutcome::Unreachable(err) => {
                self.counters.fetch_errors += 1;
                if !done.still_wanted(&gave_up) {
                    return Completion::default();
                }
                self.counters.fallbacks += 1;
                return self.fall_back(rules, slots, done, err, now);
            }
            FetchOutcome::Answered(Ok(Some(value))) => {
                let elapsed = now.saturating_duration_since(done.started_at);
                match aged(value, elapsed) {
                    None if done.refetches < MAX_REFETCHES => {
                        // Expired on the way: what the owner holds now is the answer.
                        if !done.still_wanted(&gave_up) {
                            return Completion::default();
                        }
                        return self.refetch(rules, slots, done, now);
                    }
                    None => Ok(None),
                    Some(copy) => {
                        if detached {
                            self.counters.superseded += 1;
                        } else if !self.owns(key) {
                            self.keep_hot(rules, key, &copy, now);
                        }
                        Ok(Some(copy))
                    }
                }
            }
            FetchOutcome::Answered(Ok(None)) => Ok(None),
            FetchOutcome::Answered(Err(err)) => {
                self.counters.fetch_errors += 1;
                Err(err)
            }
        };
        Completion {
            deliveries: vec![Delivery {
                waiters: done.waiters.into_callers(),
                reply,
            }],
            start: None,
        }
    }

    /// Asks again for the waiters of `done`, whose answer expired on its way (or, for a load,
    /// before it could be delivered): they join the
    /// key's current flight if there is one (a newer fetch or load), else a new flight routed by
    /// the ring as it is now (the owner may have changed while the answer travelled) — a fetch
    /// only if a client is among them: peers' forwarded gets alone are served here, by a load.
    fn refetch<E: From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        done: Flight<W>,
        now: Timestamp,
    ) -> Completion<W, E> {
        let clients = done.clients();
        let key = done.key;
        let owner = self.router.owner(&key).clone();
        let asks_owner = owner.id != *self.router.self_id() && clients;
        if asks_owner && self.stray_load(&key) {
            // As in `join`: a client never joins a load made for peers that took this node for
            // the owner (it ignores writes on the owner); that load ends for its peers alone
            // (seed 3163).
            self.flights.detach(&key);
        }
        if let Some(current) = self.flights.current_mut(&key) {
            current.waiters.append(done.waiters);
            return Completion::default();
        }
        if asks_owner {
            let (id, _) = self.flights.start_again(
                key.clone(),
                Kind::Fetch {
                    owner: owner.clone(),
                },
                done.waiters,
                now,
                done.refetches + 1,
            );
            self.flights.check();
            self.counters.fetches += 1;
            return Completion {
                deliveries: Vec::new(),
                start: Some(Work::Fetch {
                    flight: FlightRef { key, id },
                    owner,
                }),
            };
        }
        // This node owns the key now, or only peers wait: what it holds, or its loader, is the
        // answer.
        let reply = match self.main.get(&key, now) {
            Some(hit) => Some(Ok(Some(fetched(hit, now)))),
            None if !rules.has_loader => Some(Ok(None)),
            None => None,
        };
        if let Some(reply) = reply {
            return Completion {
                deliveries: vec![Delivery {
                    waiters: done.waiters.into_callers(),
                    reply,
                }],
                start: None,
            };
        }
        let completion = self.start_load(slots, key.clone(), done.waiters, now);
        if let Some(flight) = self.flights.current_mut(&key) {
            flight.refetches = done.refetches + 1;
        }
        completion
    }

    /// Starts a load of `key` for `waiters` (queued behind a detached load of the key if one
    /// runs); refuses them if the node's loads are all taken.
    fn start_load<E: From<Refusal>>(
        &mut self,
        slots: &Arc<LoadSlots>,
        key: Bytes,
        waiters: Waiters<W>,
        now: Timestamp,
    ) -> Completion<W, E> {
        let permit = if self.flights.load_running(&key) {
            None
        } else {
            match slots.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    // Every caller of the flight is refused: each counts.
                    self.counters.overloaded += waiters.len() as u64;
                    let cap = slots.cap();
                    return Completion {
                        deliveries: vec![Delivery {
                            waiters: waiters.into_callers(),
                            reply: Err(Refusal::LoadsFull { cap }.into()),
                        }],
                        start: None,
                    };
                }
            }
        };
        let (id, state) = self.flights.start(key.clone(), Kind::Load, waiters, now);
        self.flights.check();
        let start = match (state, permit) {
            (State::Running, Some(permit)) => {
                self.counters.loads += 1;
                Some(Work::Load {
                    flight: FlightRef { key, id },
                    permit,
                })
            }
            _ => None,
        };
        Completion {
            deliveries: Vec::new(),
            start,
        }
    }

    /// The owner was unreachable: the fetch's waiters get a local load instead (kept only as a
    /// hot copy, since this node does not own the key).
    fn fall_back<E: Clone + From<Refusal>>(
        &mut self,
        rules: &Rules,
        slots: &Arc<LoadSlots>,
        done: Flight<W>,
        unreachable: E,
        now: Timestamp,
    ) -> Completion<W, E> {
        let reply = if !rules.has_loader {
            // Nothing to load locally: without the owner, the key is a miss here.
            Some(Ok(None))
        } else if self.flights.current_mut(&done.key).is_some() {
            // A write detached the fetch and a newer flight exists: nothing to fall back to.
            Some(Err(unreachable))
        } else {
            None
        };
        match reply {
            Some(reply) => Completion {
                deliveries: vec![Delivery {
                    waiters: done.waiters.into_callers(),
                    reply,
                }],
                start: None,
            },
            None => self.start_load(slots, done.key, done.waiters, now),
        }
    }

    /// Starts the load queued behind one that just ended, if any, for its callers still waiting
    /// (none: it is dropped) — unless a set gave the key a value meanwhile, which then answers
    /// the queued callers.
    fn start_queued<E: From<Refusal>>(
        &mut self,
        slots: &Arc<LoadSlots>,
        key: &Bytes,
        now: Timestamp,
        gave_up: &dyn Fn(&W) -> bool,
        completion: &mut Completion<W, E>,
    ) {
        let queued = self
            .flights
            .current_mut(key)
            .is_some_and(|f| f.state == State::Queued);
        if !queued || self.flights.load_running(key) {
            return;
        }
        // Its work is for callers still waiting only: with none left, it never starts.
        if let Some(flight) = self.flights.current_mut(key) {
            if !flight.still_wanted(gave_up) {
                let id = flight.id;
                self.flights.abandon(key, id);
                return;
            }
        }
        if self.owns(key) {
            // A set landed while the load was queued: its value is the answer, and a load now
            // would overwrite it.
            if let Some(hit) = self.main.get(key, now) {
                let id = self.flights.current_mut(key).map(|f| f.id);
                if let Some(flight) = id.and_then(|id| self.flights.abandon(key, id)) {
                    self.counters.hits += 1;
                    completion.deliveries.push(Delivery {
                        waiters: flight.waiters.into_callers(),
                        reply: Ok(Some(fetched(hit, now))),
                    });
                }
                return;
            }
        } else if self.flights.current_mut(key).is_some_and(|f| f.clients()) {
            // The key moved to another node while the load was queued: its clients ask the
            // new owner instead (peers' forwarded gets still load here: they never hop again).
            let id = self.flights.current_mut(key).map(|f| f.id);
            if let Some(flight) = id.and_then(|id| self.flights.abandon(key, id)) {
                let owner = self.router.owner(key).clone();
                let (id, _) = self.flights.start(
                    key.clone(),
                    Kind::Fetch {
                        owner: owner.clone(),
                    },
                    flight.waiters,
                    now,
                );
                self.flights.check();
                self.counters.fetches += 1;
                completion.start = Some(Work::Fetch {
                    flight: FlightRef {
                        key: key.clone(),
                        id,
                    },
                    owner,
                });
            }
            return;
        }
        match slots.try_acquire() {
            Some(permit) => {
                if let Some(id) = self.flights.release_queued(key, now) {
                    self.counters.loads += 1;
                    completion.start = Some(Work::Load {
                        flight: FlightRef {
                            key: key.clone(),
                            id,
                        },
                        permit,
                    });
                }
            }
            None => {
                let id = self.flights.current_mut(key).map(|f| f.id);
                if let Some(flight) = id.and_then(|id| self.flights.abandon(key, id)) {
                    self.counters.overloaded += flight.waiters.len() as u64;
                    let cap = slots.cap();
                    completion.deliveries.push(Delivery {
                        waiters: flight.waiters.into_callers(),
                        reply: Err(Refusal::LoadsFull { cap }.into()),
                    });
                }
            }
        }
    }

    /// Keeps a loaded value: in the main store while this node owns the key, else as a hot copy.
    fn keep_loaded(&mut self, rules: &Rules, key: &Bytes, value: &Fetched, now: Timestamp) {
        if self.owns(key) {
            // A value too large for the store is answered but not kept.
            let _ = self.main.insert(
                key.clone(),
                value.value.clone(),
                expiry(now, value.ttl),
                now,
            );
        } else {
            self.keep_hot(rules, key, value, now);
        }
    }

    /// Keeps a copy of a value this node does not own, no longer than the hot lifetime and the
    /// value's own remaining lifetime.
    fn keep_hot(&mut self, rules: &Rules, key: &Bytes, value: &Fetched, now: Timestamp) {
        let Some(hot) = &mut self.hot else {
            return;
        };
        let lifetime = value
            .ttl
            .map_or(rules.hot_lifetime, |ttl| ttl.min(rules.hot_lifetime));
        if lifetime.is_zero() {
            return;
        }
        let _ = hot.insert(
            key.clone(),
            value.value.clone(),
            expiry(now, Some(lifetime)),
            now,
        );
    }

    /// Remembers that the loader has no value for `key` (owned keys only), for the miss TTL.
    fn remember_miss(&mut self, rules: &Rules, key: &Bytes, now: Timestamp) {
        if rules.miss_ttl.is_zero() || !self.owns(key) {
            return;
        }
        if let Some(misses) = &mut self.misses {
            let _ = misses.insert(
                key.clone(),
                Bytes::new(),
                expiry(now, Some(rules.miss_ttl)),
                now,
            );
        }
    }

    // ---------------------------------------------------------------------------------------
    // Writes
    // ---------------------------------------------------------------------------------------

    /// Where a write of `key` goes, and whether it may be applied here.
    fn write_route(&mut self, key: &[u8], forwarded: bool) -> Result<(), WriteStep> {
        let owner = self.router.owner(key);
        if owner.id == *self.router.self_id() {
            return Ok(());
        }
        if forwarded {
            self.counters.not_owner += 1;
            return Err(WriteStep::NotOwner {
                owner: owner.id.clone(),
            });
        }
        Err(WriteStep::Forward {
            owner: owner.clone(),
            write: (),
        })
    }

    /// The members to invalidate after a write applied here: every other live member.
    fn peers(&self) -> Vec<Member> {
        let me = self.router.self_id();
        self.router
            .members()
            .filter(|m| m.id != *me)
            .cloned()
            .collect()
    }

    /// After a write of `key` applied here: drops every other copy of it, counts the write, and
    /// names the members to invalidate, with the key to name (`Some` iff there are any).
    fn wrote(&mut self, key: &Bytes) -> (Vec<Member>, Option<Bytes>) {
        self.drop_copies(key);
        self.counters.writes += 1;
        let peers = self.peers();
        let named = (!peers.is_empty()).then(|| key.clone());
        (peers, named)
    }

    /// A set of `key` (`ttl` already resolved against the group default): the key and value are
    /// moved into the store, or handed back to be forwarded.
    pub(super) fn set(
        &mut self,
        key: Bytes,
        value: Bytes,
        ttl: Option<Duration>,
        forwarded: bool,
        now: Timestamp,
    ) -> WriteStep<UnappliedSet> {
        if let Err(step) = self.write_route(&key, forwarded) {
            return step.map_write(|()| UnappliedSet { key, value });
        }
        let size = entry_size(key.len(), value.len());
        if size > self.main.budget() {
            return WriteStep::TooLarge(StoreError::EntryTooLarge {
                size,
                budget: self.main.budget(),
            });
        }
        // Copies first, so that the key can move into the store afterwards.
        let (peers, named) = self.wrote(&key);
        let hash = self.main.hash_key(&key);
        match self
            .main
            .insert_hashed(key, hash, value, expiry(now, ttl), now)
        {
            Ok(inserted) => WriteStep::Applied {
                existed: inserted.replaced_valid(now),
                peers,
                key: named,
            },
            // Not expected: the entry was checked to fit the store.
            Err(err) => WriteStep::TooLarge(err),
        }
    }

    /// A delete of `key`.
    pub(super) fn delete(&mut self, key: &Bytes, forwarded: bool, now: Timestamp) -> WriteStep {
        if let Err(step) = self.write_route(key, forwarded) {
            return step;
        }
        let existed = self.main.peek(key, now).is_some();
        self.main.remove(key);
        let (peers, named) = self.wrote(key);
        WriteStep::Applied {
            existed,
            peers,
            key: named,
        }
    }

    /// Drops the hot copy and the remembered miss of `key` and detaches its flight: whatever they
    /// hold predates a write.
    fn drop_copies(&mut self, key: &[u8]) {
        if let Some(hot) = &mut self.hot {
            hot.remove(key);
        }
        if let Some(misses) = &mut self.misses {
            misses.remove(key);
        }
        self.flights.detach(key);
        self.flights.check();
    }

    /// Drops every copy of `key` this node holds, main store included: a write of it was applied
    /// elsewhere (an invalidation from the owner, or a write this node forwarded).
    pub(super) fn forget(&mut self, key: &[u8]) {
        self.main.remove(key);
        self.drop_copies(key);
    }

    // ---------------------------------------------------------------------------------------
    // Membership
    // ---------------------------------------------------------------------------------------

    /// Routes by `router` from now on: drops main-store keys (and remembered misses) this node no
    /// longer owns, and hot copies of keys it now owns. Returns how many entries went.
    pub(super) fn ring_changed(&mut self, router: Arc<Router>) -> usize {
        self.router = router;
        let router = &self.router;
        let mut dropped = self.main.retain(|key| router.is_local(key));
        if let Some(misses) = &mut self.misses {
            dropped += misses.retain(|key| router.is_local(key));
        }
        if let Some(hot) = &mut self.hot {
            dropped += hot.retain(|key| !router.is_local(key));
        }
        dropped
    }

    /// This node was out of the membership: nothing it holds can be trusted. Drops every entry
    /// and detaches every flight.
    pub(super) fn fence(&mut self) {
        self.main.clear();
        if let Some(hot) = &mut self.hot {
            hot.clear();
        }
        if let Some(misses) = &mut self.misses {
            misses.clear();
        }
        self.flights.detach_all();
        self.flights.check();
    }

    /// Reclaims up to `max` expired entries per store.
    pub(super) fn sweep(&mut self, now: Timestamp, max: usize) -> usize {
        let mut swept = self.main.sweep_expired(now, max).len();
        for store in [&mut self.hot, &mut self.misses].into_iter().flatten() {
            swept += store.sweep_expired(now, max).len();
        }
        swept
    }

    /// Flights in progress.
    pub(super) fn flights(&self) -> usize {
        self.flights.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aging_takes_the_whole_call_off_the_lifetime() {
        let ms = Duration::from_millis;
        let value = |ttl| Fetched {
            value: Bytes::from_static(b"v"),
            ttl,
        };
        assert_eq!(
            aged(value(Some(ms(500))), ms(120)).map(|v| v.ttl),
            Some(Some(ms(380)))
        );
        assert!(aged(value(Some(ms(100))), ms(100)).is_none());
        assert!(aged(value(Some(ms(100))), ms(250)).is_none());
        assert_eq!(aged(value(None), ms(250)).map(|v| v.ttl), Some(None));
    }
}
