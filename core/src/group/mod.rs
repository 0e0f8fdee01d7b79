//! The group state machine: every decision a cache group makes about a key, with no IO.
//!
//! A [`Group`] is one named cache group on one node. It holds the main store (values of keys the
//! node owns), the hot cache (bounded-lifetime copies of values other nodes own), the remembered
//! loader misses, the flights (loads and fetches in progress, with their waiters) and the ring it
//! routes by. The runtime feeds it inputs — [`Group::get`], [`Group::loaded`], [`Group::fetched`],
//! [`Group::set`], [`Group::delete`], [`Group::invalidate`], [`Group::forget`],
//! [`Group::ring_changed`], [`Group::fence`] — each with `now`, and carries out the steps it gets
//! back ([`GetStep`], [`Completion`], [`WriteStep`]). Like quinn-proto's `Connection`, it never
//! waits, reads a clock or touches a socket; the same inputs give the same outputs anywhere.
//!
//! # The rules (DESIGN.md's consistency model)
//!
//! - **Route.** The owner serves from its main store, then a remembered miss, then one load at a
//!   time per key (singleflight). Another node serves from its hot cache, else one fetch per key
//!   from the owner. A forwarded get is never forwarded again: a node that does not own the key
//!   in its own view serves it with a local load kept only as a hot copy.
//! - **Writes** are applied only by a node that owns the key in its own view; a forwarded write
//!   reaching any other node is refused ([`WriteStep::NotOwner`]), so no write ever lands where it
//!   would sit unseen and come back when ownership returns. The owner then invalidates every
//!   other live member, and acknowledges after that: without faults, a write acknowledged at `t`
//!   is what every node returns for a get that starts after `t`.
//! - **Supersede.** A write (or invalidation) of a key detaches its flight in progress: the
//!   flight's waiters still get its result, but no later caller joins it and its result is not
//!   kept. A load decided while a detached load of the same key still runs waits for it, so a
//!   key's loader never runs twice at once on a node.
//! - **Keep.** A loaded value goes to the main store only if the node owns the key when the load
//!   ends; otherwise, like every fetched value, it is kept only as a hot copy, living
//!   `min(remaining lifetime aged by the whole call, hot lifetime)`.
//! - **Ring change.** Keys the node no longer owns leave the main store, and hot copies of keys it
//!   now owns are dropped, under the same lock as the keep decision, so a load that decided under
//!   the old ring cannot slip its value in after the sweep.
//! - **Fencing.** A node that learns it was out of the membership drops everything
//!   ([`Group::fence`]) before it serves as an owner again.
//! - **Penetration.** A loader's miss on the owner is remembered for the miss TTL; a write of the
//!   key forgets it at once.
//!
//! # Concurrency
//!
//! Keys are split over shards by a per-process seeded hash; each shard (`shard`) holds its keys'
//! stores, flights and counters behind one lock, so every decision about a key is atomic and
//! different keys proceed in parallel.

mod flights;
mod load_slots;
mod shard;
mod stats;
mod steps;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

pub use flights::FlightId;
pub use load_slots::{LoadPermit, LoadSlots};
pub use stats::{AtomicGroupCounters, GroupCounters, GroupStats, NodeStats, Tier, TierStats};
pub use steps::{
    Completion, Delivery, FetchOutcome, Fetched, FlightRef, GetStep, LoadOutcome, Refusal, Reply,
    UnappliedSet, Work, WriteStep,
};

use crate::hash::shard_hash_seeded;
use crate::router::Router;
use crate::store::{Policy, Store, StoreConfig, StoreError, StoreStats};
use crate::time::Timestamp;
use shard::{Rules, Shard};

/// Hot cache settings of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotSettings {
    /// Byte budget of the hot cache.
    pub budget_bytes: u64,
    /// Longest a copy is served (also never past the owner's remaining lifetime).
    pub lifetime: Duration,
}

/// Remembered-miss settings of a group (penetration protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissSettings {
    /// Byte budget of the remembered misses (each costs its key plus the entry overhead).
    pub budget_bytes: u64,
    /// How long a loader's miss is remembered.
    pub ttl: Duration,
}

/// Everything a [`Group`] is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// The group's name.
    pub name: String,
    /// Byte budget of the main store.
    pub budget_bytes: u64,
    /// Eviction policy of the main store.
    pub policy: Policy,
    /// Shards (a power of two); every tier's budget is split evenly over them.
    pub shards: usize,
    /// Lifetime of values set or loaded without one; `None` keeps them until evicted.
    pub default_ttl: Option<Duration>,
    /// The hot cache, if any.
    pub hot: Option<HotSettings>,
    /// Remembered misses, if any.
    pub misses: Option<MissSettings>,
    /// Callers that may wait on one key's flight at once.
    pub max_waiters_per_key: usize,
    /// Whether the group has a loader. Without one, a key nobody set is a miss at once: no
    /// load is started, counted or remembered.
    pub has_loader: bool,
    /// Seed of the shard choice and of the stores' hashers (per process; see
    /// [`StoreConfig::hash_seed`]).
    pub hash_seed: u64,
}

/// One cache group on one node; see the [module docs](self). `W` is the runtime's waiter (what
/// it needs to answer one caller later), `E` its error type.
pub struct Group<W, E> {
    name: String,
    rules: Rules,
    shards: Box<[Mutex<Shard<W>>]>,
    mask: usize,
    hash_seed: u64,
    budgets: Vec<(Tier, u64)>,
    max_entry: u64,
    slots: Arc<LoadSlots>,
    /// Counters of events the runtime reports (outside any shard lock).
    runtime_counters: AtomicGroupCounters,
    _error: std::marker::PhantomData<fn() -> E>,
}

impl<W, E> fmt::Debug for Group<W, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("shards", &self.shards.len())
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

/// `total` split over `shards`: equal parts, the remainder one byte each to the first shards.
fn split(total: u64, shards: usize) -> Result<Vec<u64>, StoreError> {
    let n = shards as u64;
    let (base, remainder) = (total / n, total % n);
    if base == 0 {
        return Err(StoreError::InvalidConfig(format!(
            "a budget of {total} bytes gives an empty budget to some of {shards} shards"
        )));
    }
    Ok((0..n).map(|i| base + u64::from(i < remainder)).collect())
}

impl<W, E> Group<W, E> {
    /// A group routing by `router` and taking load permits from `slots` (shared by the node's
    /// groups). Fails if `shards` is not a power of two or a tier's budget cannot give every
    /// shard at least one byte.
    pub fn new(
        settings: GroupSettings,
        router: Arc<Router>,
        slots: Arc<LoadSlots>,
    ) -> Result<Self, StoreError> {
        let count = settings.shards;
        if !count.is_power_of_two() {
            return Err(StoreError::InvalidConfig(format!(
                "shards must be a power of two >= 1, got {count}"
            )));
        }
        let seed = settings.hash_seed;
        let store = |budget: u64, policy: Policy, tweak: u64| {
            Store::new(StoreConfig {
                budget_bytes: budget,
                policy,
                hash_seed: seed ^ tweak,
            })
        };
        let main = split(settings.budget_bytes, count)?;
        let hot = settings
            .hot
            .map(|h| split(h.budget_bytes, count))
            .transpose()?;
        let misses = settings
            .misses
            .map(|m| split(m.budget_bytes, count))
            .transpose()?;
        let mut shards = Vec::with_capacity(count);
        for i in 0..count {
            let main = store(main[i], settings.policy, 1)?;
            let hot = hot
                .as_ref()
                .map(|b| store(b[i], Policy::Lru, 2))
                .transpose()?;
            let misses = misses
                .as_ref()
                .map(|b| store(b[i], Policy::Lru, 3))
                .transpose()?;
            shards.push(Mutex::new(Shard::new(main, hot, misses, router.clone())));
        }
        let mut budgets = vec![(Tier::Main, settings.budget_bytes)];
        budgets.extend(settings.hot.map(|h| (Tier::Hot, h.budget_bytes)));
        budgets.extend(settings.misses.map(|m| (Tier::Misses, m.budget_bytes)));
        Ok(Group {
            rules: Rules {
                default_ttl: settings.default_ttl,
                hot_lifetime: settings.hot.map_or(Duration::ZERO, |h| h.lifetime),
                miss_ttl: settings.misses.map_or(Duration::ZERO, |m| m.ttl),
                max_waiters_per_key: settings.max_waiters_per_key.max(1),
                has_loader: settings.has_loader,
            },
            name: settings.name,
            shards: shards.into_boxed_slice(),
            mask: count - 1,
            hash_seed: seed,
            max_entry: settings.budget_bytes / count as u64,
            budgets,
            slots,
            runtime_counters: AtomicGroupCounters::default(),
            _error: std::marker::PhantomData,
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lifetime of values written or loaded without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.rules.default_ttl
    }

    /// Largest entry (key + value + overhead, see [`crate::store::entry_size`]) the main store
    /// accepts: its budget over the shard count.
    pub fn max_entry_size(&self) -> u64 {
        self.max_entry
    }

    /// Counters the runtime bumps itself (forwarded writes, invalidations sent, refusals before
    /// the group is reached…); see [`GroupCounters`] for which is which.
    pub fn runtime_counters(&self) -> &AtomicGroupCounters {
        &self.runtime_counters
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard<W>> {
        // Truncating the hash is fine: only the low bits are kept.
        &self.shards[shard_hash_seeded(key, self.hash_seed) as usize & self.mask]
    }

    /// A get of `key` (`forwarded`: sent by a peer). `waiter` is called only when the caller must
    /// wait (the step is [`GetStep::Wait`] or [`GetStep::Start`]).
    pub fn get(
        &self,
        key: &Bytes,
        forwarded: bool,
        now: Timestamp,
        waiter: impl FnOnce() -> W,
    ) -> GetStep<E>
    where
        E: From<Refusal>,
    {
        self.shard(key)
            .lock()
            .get(&self.rules, &self.slots, key, forwarded, now, waiter)
    }

    /// The load of `flight` ended with `outcome`, just now.
    pub fn loaded(
        &self,
        flight: &FlightRef,
        outcome: LoadOutcome<E>,
        now: Timestamp,
    ) -> Completion<W, E>
    where
        E: Clone + From<Refusal>,
    {
        self.loaded_at(flight, outcome, now, now, |_| false)
    }

    /// The load of `flight` ended with `outcome` at `returned`, reported at `now` (later, if
    /// the runtime was held up in between): the value's lifetime started when the loader
    /// returned, so what passed since is taken off it. If nothing is left, the key is asked
    /// again — only for callers still waiting (`gave_up` tells which stopped), and not at all
    /// when none is.
    pub fn loaded_at(
        &self,
        flight: &FlightRef,
        outcome: LoadOutcome<E>,
        returned: Timestamp,
        now: Timestamp,
        gave_up: impl Fn(&W) -> bool,
    ) -> Completion<W, E>
    where
        E: Clone + From<Refusal>,
    {
        let when = shard::Reported {
            late: now.saturating_duration_since(returned),
            now,
        };
        self.shard(&flight.key).lock().loaded(
            &self.rules,
            &self.slots,
            flight,
            outcome,
            when,
            gave_up,
        )
    }

    /// The fetch of `flight` ended with `outcome`.
    pub fn fetched(
        &self,
        flight: &FlightRef,
        outcome: FetchOutcome<E>,
        now: Timestamp,
    ) -> Completion<W, E>
    where
        E: Clone + From<Refusal>,
    {
        self.fetched_for(flight, outcome, now, |_| false)
    }

    /// [`Group::fetched`], told which waiters gave up (their caller stopped waiting): when the
    /// fetch needs a second try — ask again, or load locally because the owner was unreachable —
    /// it is made only for callers still waiting, and not at all when none is.
    pub fn fetched_for(
        &self,
        flight: &FlightRef,
        outcome: FetchOutcome<E>,
        now: Timestamp,
        gave_up: impl Fn(&W) -> bool,
    ) -> Completion<W, E>
    where
        E: Clone + From<Refusal>,
    {
        self.shard(&flight.key).lock().fetched(
            &self.rules,
            &self.slots,
            flight,
            outcome,
            now,
            gave_up,
        )
    }

    /// A set of `key` (`ttl` `None`: the group's default; `forwarded`: sent by a peer, or by a
    /// client claiming to be one — treated alike).
    pub fn set(
        &self,
        key: Bytes,
        value: Bytes,
        ttl: Option<Duration>,
        forwarded: bool,
        now: Timestamp,
    ) -> WriteStep<UnappliedSet> {
        let ttl = ttl.or(self.rules.default_ttl);
        self.shard(&key).lock().set(key, value, ttl, forwarded, now)
    }

    /// A delete of `key`.
    pub fn delete(&self, key: &Bytes, forwarded: bool, now: Timestamp) -> WriteStep {
        self.shard(key).lock().delete(key, forwarded, now)
    }

    /// A peer applied a write of `key`: drop every copy of it here and detach its flight.
    pub fn invalidate(&self, key: &[u8]) {
        let mut shard = self.shard(key).lock();
        shard.counters.invalidations_received += 1;
        shard.forget(key);
    }

    /// A write of `key` this node forwarded has ended (acknowledged or not): drop every copy of
    /// it here and detach its flight, so this node's next get of it asks the owner afresh.
    pub fn forget(&self, key: &[u8]) {
        self.shard(key).lock().forget(key);
    }

    /// Routes by `router` from now on (see the module docs); returns how many entries were
    /// dropped. Locks the shards one at a time.
    pub fn ring_changed(&self, router: &Arc<Router>) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().ring_changed(router.clone()))
            .sum()
    }

    /// This node learned it had been out of the membership (its lease lost, its own departure
    /// seen): drops every entry of every tier and detaches every flight.
    pub fn fence(&self) {
        for shard in self.shards.iter() {
            shard.lock().fence();
        }
        crate::counters::bump(&self.runtime_counters.fenced);
    }

    /// Reclaims up to `max` expired entries per store and shard; returns how many.
    pub fn sweep(&self, now: Timestamp, max: usize) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().sweep(now, max))
            .sum()
    }

    /// Flights (loads and fetches) in progress.
    pub fn flights(&self) -> usize {
        self.shards.iter().map(|s| s.lock().flights()).sum()
    }

    /// Counters and tiers, summed over shards (one shard locked at a time).
    pub fn stats(&self) -> GroupStats {
        let mut counters = self.runtime_counters.snapshot();
        let mut tiers: Vec<TierStats> = self
            .budgets
            .iter()
            .map(|&(tier, budget_bytes)| TierStats {
                tier,
                budget_bytes,
                store: StoreStats::default(),
            })
            .collect();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            counters.merge(&shard.counters);
            for tier in &mut tiers {
                let store = match tier.tier {
                    Tier::Main => Some(&shard.main),
                    Tier::Hot => shard.hot.as_ref(),
                    Tier::Misses => shard.misses.as_ref(),
                };
                if let Some(store) = store {
                    tier.store.merge(&store.stats());
                }
            }
        }
        GroupStats {
            group: self.name.clone(),
            counters,
            tiers,
        }
    }

    /// Calls `visit` with every entry held, tier by tier and shard by shard: what the entries
    /// really are, so a test can count bytes independently of the stores' own accounting.
    pub fn visit_entries(&self, mut visit: impl FnMut(Tier, &[u8], &[u8])) {
        for shard in self.shards.iter() {
            let shard = shard.lock();
            shard.main.visit(|k, v| visit(Tier::Main, k, v));
            if let Some(hot) = &shard.hot {
                hot.visit(|k, v| visit(Tier::Hot, k, v));
            }
            if let Some(misses) = &shard.misses {
                misses.visit(|k, v| visit(Tier::Misses, k, v));
            }
        }
    }
}

#[cfg(test)]
mod tests;
