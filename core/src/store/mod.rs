//! A byte-budgeted cache store with TinyLFU, LRU or LRU2 eviction and per-entry expiry.
//!
//! [`Store`] is a state machine: every call takes `now` explicitly and returns its effects
//! (values, [`Eviction`]s) as values. It never reads a clock, never iterates in an order chosen by
//! a randomly seeded hasher, and its only randomness comes from [`StoreConfig::hash_seed`], so
//! the same calls give the same results in every process. Reads come in two forms:
//! [`Store::get`] (exclusive access) and [`Store::get_shared`] (shared access, for a store behind
//! a read-write lock: under [`Policy::TinyLfu`] a hit changes only atomics).
//! [`crate::sharded::ShardedStore`] puts several stores behind locks for concurrent use.
//!
//! # Semantics
//!
//! - **Size.** An entry costs [`entry_size`]`(key.len(), value.len())` = key + value +
//!   [`ENTRY_OVERHEAD`] bytes. [`Store::bytes`] is the sum over entries and is `<=`
//!   [`Store::budget`] after every call.
//! - **Expiry.** An entry is expired when `expires_at <= now`. Expired entries are never returned.
//!   They are removed lazily (by [`Store::get`]) or actively ([`Store::sweep_expired`]); until
//!   then they still occupy bytes and can be chosen as capacity victims (reported as
//!   [`EvictionReason::Capacity`]).
//! - **insert.** Checked in this order:
//!   1. size `>` budget: `Err(EntryTooLarge)`, and nothing changes (an existing entry under the
//!      key stays, even if the new entry would have been already expired);
//!   2. `expires_at <= now` (already expired): any existing entry under the key is removed, nothing
//!      is stored, `Ok(vec![])`; no counter changes;
//!   3. otherwise the entry is stored (`inserts += 1`). A new key enters the policy's entry queue
//!      (below); an existing key has its value and expiry replaced and the replacement counts as
//!      an access. Then entries are evicted until bytes `<=` budget (`evictions += 1` each) and
//!      returned, in eviction order. The entry just stored is never one of them.
//! - **get.** Absent: `misses += 1`, `None`. Present but expired: removed, `expirations += 1`,
//!   `misses += 1`, `None`. Present and valid: `hits += 1`, counts as an access, returns a
//!   [`Lookup`].
//! - **get_shared.** Like `get` where `get` would change nothing but counters and atomics:
//!   absent: `misses += 1`, [`SharedGet::Miss`]; valid under TinyLFU: `hits += 1`, an access,
//!   [`SharedGet::Hit`]. Otherwise (an expired entry, which must be removed, or a valid entry
//!   under LRU or LRU2, which must move) nothing happens and it answers [`SharedGet::Exclusive`]:
//!   call `get` with exclusive access. So `get_shared`, falling back to `get`, behaves exactly as
//!   `get`.
//! - **peek.** Like `get` without any effect: no counters, no recency change, an expired entry is
//!   left in place but reported as `None`.
//! - **remove.** Drops the entry and returns whether one was present, *including an expired one
//!   not yet removed* (the key was still occupying the store). Counters do not change.
//! - **sweep_expired(now, max).** Removes up to `max` entries with `expires_at <= now`, earliest
//!   deadline first, ties in insertion order (the order of the inserts that stored them); each is
//!   returned as [`EvictionReason::Expired`] and counted in `expirations`. Costs `O(max log n)`.
//! - **clear.** Drops every entry; event counters (hits, misses, …) are kept.
//!
//! # Policies
//!
//! - [`Policy::TinyLfu`] (the default): W-TinyLFU with an adaptive window over CLOCK queues,
//!   specified in [`tinylfu`]. Frequency-aware (a key must be more popular than the entry it
//!   would displace), scan- and loop-resistant, and its hits change only atomics. Before any
//!   capacity victim is chosen, expired entries are removed, earliest deadline first, while the
//!   store is over budget (reported as [`EvictionReason::Expired`], counted in `expirations`).
//! - [`Policy::Lru`]: one recency list. An access moves the entry to the MRU end; the victim is
//!   the least-recently-used (LRU) entry. New keys enter the MRU end.
//! - [`Policy::Lru2`]: a probation list P and a protected list Q, with a protected budget of
//!   `budget * protected_percent / 100` bytes (integer division). New keys enter P's MRU end. An
//!   access to an entry of P moves it to the MRU end of Q; an access to an entry of Q moves it to
//!   the MRU end of Q. After every access or replacement in Q, while Q's bytes exceed the
//!   protected budget and Q holds more than one entry, Q's LRU entry is demoted to the MRU end of
//!   P (a demotion is not an eviction). The capacity victim is P's LRU entry, unless P is empty
//!   or holds only the entry just stored, in which case it is Q's LRU entry. One-touch keys (a
//!   scan) therefore only churn P and never flush Q.

mod counter;
mod expiry;
mod stats;
mod tiers;
pub mod tinylfu;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

use crate::time::Timestamp;
use counter::StripedCounter;
use expiry::ExpiryIndex;
pub use stats::{AtomicStoreStats, StoreStats};
use tiers::{Access, Entry, Tiers};
use tinylfu::TinyLfu;

/// Fixed bytes charged per entry on top of key and value: what the store's bookkeeping about an
/// entry really takes (its list node with both `Bytes` handles and links, its hash-table slot at
/// the table's load factor, its expiry record, the shared headers of its key and value buffers).
///
/// Measured, not guessed: `core/tests/entry_cost.rs` fills stores of every policy past their
/// budgets through an instrumented allocator and fails if an entry takes more than this (worst
/// case measured on x86_64: ≈ 335 B, a TinyLFU entry with a lifetime in a small store); the
/// rest is room for the allocator's size classes. Constant, so accounting is identical on every
/// platform.
pub const ENTRY_OVERHEAD: u64 = 384;

/// Default share of the budget, in percent, reserved for the protected list of [`Policy::Lru2`].
pub const DEFAULT_PROTECTED_PERCENT: u8 = 80;

/// Most entries a store of `budget` bytes can ever hold (each costs at least
/// [`ENTRY_OVERHEAD`]), capped at [`PREALLOCATED_ENTRIES_MAX`]. The TinyLFU policy's entry slab
/// is sized for it up front: it fills from the front, so only the slots in use are ever touched,
/// and one that grew by doubling would move every entry. Hash tables are not (see
/// `tinylfu::INDEX_PRESIZE_DIVISOR` and the LRU lists in `tiers.rs`): keys hash all over a
/// table, so one sized for the smallest entries is sparse for real ones.
fn max_entries(budget: u64) -> usize {
    usize::try_from(budget / ENTRY_OVERHEAD + 1)
        .unwrap_or(usize::MAX)
        .min(PREALLOCATED_ENTRIES_MAX)
}

/// Entries one store can index (32-bit entry indices keep the TinyLFU policy's nodes within
/// two cache lines); a store's budget must not let it reach this many.
pub const MAX_STORE_ENTRIES: usize = u32::MAX as usize;

/// Largest budget of one store (one shard): about 1.5 TiB, so that even entries of the smallest
/// charge stay below [`MAX_STORE_ENTRIES`].
pub const MAX_STORE_BUDGET: u64 = (MAX_STORE_ENTRIES as u64) * ENTRY_OVERHEAD - 1;

/// Largest table a store sizes up front (a store is one shard of a group, so this is per shard).
pub const PREALLOCATED_ENTRIES_MAX: usize = 1 << 20;

/// Bytes charged for an entry: `key_len + value_len + ENTRY_OVERHEAD` (saturating).
pub fn entry_size(key_len: usize, value_len: usize) -> u64 {
    (key_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(ENTRY_OVERHEAD)
}

/// Which entry a full store evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// W-TinyLFU with an adaptive window over CLOCK queues (see [`tinylfu`]): frequency-aware,
    /// scan- and loop-resistant, hits under a shared lock. The default.
    #[default]
    TinyLfu,
    /// Least recently used: one recency list.
    Lru,
    /// Two LRU tiers (probation and protected) that resist scans; see the [module docs](self).
    Lru2 {
        /// Share of the budget, `1..=99` percent, that the protected tier may hold.
        protected_percent: u8,
    },
}

impl Policy {
    /// [`Policy::Lru2`] with [`DEFAULT_PROTECTED_PERCENT`].
    pub const fn lru2() -> Self {
        Policy::Lru2 {
            protected_percent: DEFAULT_PROTECTED_PERCENT,
        }
    }

    /// Whether a hit is served by [`Store::get_shared`] (it changes only atomics), rather than
    /// needing exclusive access to move the entry.
    pub const fn shared_hits(self) -> bool {
        matches!(self, Policy::TinyLfu)
    }

    /// Checks the policy's parameters.
    fn validate(self) -> Result<(), StoreError> {
        match self {
            Policy::TinyLfu | Policy::Lru => Ok(()),
            Policy::Lru2 {
                protected_percent: 1..=99,
            } => Ok(()),
            Policy::Lru2 { protected_percent } => Err(StoreError::InvalidConfig(format!(
                "protected_percent must be in 1..=99, got {protected_percent}"
            ))),
        }
    }

    /// Byte budget of the protected tier of LRU2, `None` for plain LRU.
    fn protected_budget(self, budget: u64) -> Option<u64> {
        match self {
            Policy::TinyLfu | Policy::Lru => None,
            Policy::Lru2 { protected_percent } => {
                let bytes = u128::from(budget) * u128::from(protected_percent) / 100;
                // percent < 100, so the result is below `budget` and fits.
                Some(u64::try_from(bytes).unwrap_or(budget))
            }
        }
    }
}

/// Configuration of a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most bytes the store may hold, counted by [`entry_size`]; must be `> 0`.
    pub budget_bytes: u64,
    /// Eviction policy.
    pub policy: Policy,
    /// Seed of the hasher of the store's maps and of TinyLFU's admission generator. Keys are
    /// chosen by clients, so a node seeds it per process (from the OS; a simulation from its run
    /// seed) to keep crafted keys from colliding on purpose. Any value is valid. Under LRU and
    /// LRU2 the seed changes no observable result; under TinyLFU it changes which keys share
    /// sketch counters, hence some admission decisions (deterministically).
    pub hash_seed: u64,
}

impl StoreConfig {
    /// A configuration with hash seed 0 (tests, benches; a server passes a per-process seed).
    pub fn new(budget_bytes: u64, policy: Policy) -> Self {
        StoreConfig {
            budget_bytes,
            policy,
            hash_seed: 0,
        }
    }
}

/// A value found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The stored value (a cheap reference-counted clone).
    pub value: Bytes,
    /// When the entry expires, if ever; lets a caller pass the remaining lifetime on.
    pub expires_at: Option<Timestamp>,
}

/// What [`Store::get_shared`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedGet {
    /// A valid entry; counted as a hit and an access.
    Hit(Lookup),
    /// No entry under the key; counted as a miss.
    Miss,
    /// Answering needs exclusive access (an expired entry to remove, or a hit that moves the
    /// entry under LRU or LRU2); nothing was counted: call [`Store::get`].
    Exclusive,
}

/// Why an entry left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// Removed to make room within the byte budget (even if it happened to be expired).
    Capacity,
    /// Removed because its deadline had passed (by a sweep, or under TinyLFU to make room).
    Expired,
}

/// The hash a [`Store`] gives a key: foldhash with the store's [`StoreConfig::hash_seed`]. Its
/// index, frequency sketch and ghost use it; a [`crate::sharded::ShardedStore`] chooses a shard
/// from it too, so a read hashes the key once ([`Store::get_shared_hashed`]).
#[derive(Debug, Clone)]
pub struct KeyHasher(foldhash::fast::FixedState);

impl KeyHasher {
    /// The hasher of stores seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        KeyHasher(foldhash::fast::FixedState::with_seed(seed))
    }

    /// The 64-bit hash of `key`.
    pub fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one(key)
    }
}

/// The entries one call removed, in order: one inline (an insert of entries of similar sizes
/// evicts none or one), so reporting them usually costs no heap allocation.
pub type Evictions = smallvec::SmallVec<[Eviction; 1]>;

/// What one insert displaced ([`Store::insert_hashed`]).
#[derive(Debug, Default)]
pub struct Inserted {
    /// The entries evicted to make room, in order.
    pub evicted: Evictions,
    /// The entry the insert replaced (or removed, for a deadline already passed), expired or
    /// not, if the key was present.
    pub replaced: Option<Lookup>,
}

impl Inserted {
    /// Whether the insert displaced an entry still valid at `now`.
    pub fn replaced_valid(&self, now: Timestamp) -> bool {
        self.replaced
            .as_ref()
            .is_some_and(|old| old.expires_at.is_none_or(|at| at > now))
    }
}

/// An entry removed by the store itself, reported so callers can count or log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Key of the removed entry.
    pub key: Bytes,
    /// Bytes the entry was charged ([`entry_size`]).
    pub bytes: u64,
    /// Why it was removed.
    pub reason: EvictionReason,
}

/// Errors of [`Store`] construction and insertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The entry alone is larger than the budget; nothing was changed.
    #[error("entry of {size} bytes exceeds the store budget of {budget} bytes")]
    EntryTooLarge {
        /// Bytes the entry would be charged.
        size: u64,
        /// The budget it had to fit in.
        budget: u64,
    },
    /// The configuration is unusable (zero budget, protected percent out of range, …).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
}

/// The entries and the eviction state of one policy.
#[derive(Debug)]
enum Engine {
    /// LRU and LRU2.
    Tiers(Tiers),
    /// TinyLFU.
    TinyLfu(Box<TinyLfu>),
}

/// A byte-budgeted map from keys to values with expiry and TinyLFU, LRU or LRU2 eviction.
///
/// Not synchronised; see [`crate::sharded::ShardedStore`] for concurrent use, or put it behind a
/// read-write lock and read with [`Store::get_shared`]. Semantics are in the
/// [module docs](self).
pub struct Store {
    /// The hash of keys under this store's seed (see [`KeyHasher`]).
    hasher: KeyHasher,
    budget: u64,
    policy: Policy,
    engine: Engine,
    expiry: ExpiryIndex,
    /// Sequence number of the next stored entry; orders equal deadlines.
    next_seq: u64,
    /// `get` and `get_shared` results, counted under a shared lock too.
    hits: StripedCounter,
    misses: StripedCounter,
    /// The other event counters; `hits`, `misses`, `bytes`, `entries` are filled in by
    /// [`Store::stats`].
    counters: StoreStats,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("budget", &self.budget)
            .field("policy", &self.policy)
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store; fails with [`StoreError::InvalidConfig`] for a zero budget or an LRU2
    /// protected percent outside `1..=99`.
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        if config.budget_bytes == 0 {
            return Err(StoreError::InvalidConfig("budget_bytes must be > 0".into()));
        }
        if config.budget_bytes / ENTRY_OVERHEAD >= MAX_STORE_ENTRIES as u64 {
            return Err(StoreError::InvalidConfig(format!(
                "budget_bytes {} could hold {} entries or more; one store indexes fewer \
                 (at most {} bytes per store, i.e. per shard)",
                config.budget_bytes, MAX_STORE_ENTRIES, MAX_STORE_BUDGET
            )));
        }
        config.policy.validate()?;
        let most = max_entries(config.budget_bytes);
        let engine = match config.policy {
            Policy::TinyLfu => Engine::TinyLfu(Box::new(TinyLfu::new(
                config.budget_bytes,
                config.hash_seed,
                most,
            ))),
            Policy::Lru | Policy::Lru2 { .. } => Engine::Tiers(Tiers::new(
                config.policy.protected_budget(config.budget_bytes),
                config.hash_seed,
            )),
        };
        Ok(Store {
            hasher: KeyHasher::new(config.hash_seed),
            budget: config.budget_bytes,
            policy: config.policy,
            engine,
            expiry: ExpiryIndex::default(),
            next_seq: 0,
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            counters: StoreStats::default(),
        })
    }

    /// The valid value under `key`, counting a hit or a miss; a hit is an access for the eviction
    /// policy, and an expired entry found here is removed.
    pub fn get(&mut self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let access = match &mut self.engine {
            Engine::Tiers(tiers) => tiers.access(key, now),
            Engine::TinyLfu(lfu) => lfu.access(key, now),
        };
        match access {
            Access::Hit { value, expires_at } => {
                self.hits.increment_mut();
                Some(Lookup { value, expires_at })
            }
            Access::Expired => {
                self.remove(key);
                self.counters.expirations += 1;
                self.misses.increment_mut();
                None
            }
            Access::Missing => {
                self.misses.increment_mut();
                None
            }
        }
    }

    /// [`Store::get`] for a caller holding only shared access (a read lock): answers a miss, and
    /// a hit when the policy's hits change only atomics ([`Policy::shared_hits`]); otherwise
    /// changes nothing and answers [`SharedGet::Exclusive`]. See the [module docs](self).
    pub fn get_shared(&self, key: &[u8], now: Timestamp) -> SharedGet {
        self.get_shared_hashed(key, self.hasher.hash(key), now)
    }

    /// [`Store::get_shared`] given the key's hash from a [`KeyHasher`] with this store's
    /// [`StoreConfig::hash_seed`], for a caller that already hashed the key (to choose a shard).
    #[inline]
    pub fn get_shared_hashed(&self, key: &[u8], hash: u64, now: Timestamp) -> SharedGet {
        let access = match &self.engine {
            Engine::TinyLfu(lfu) => lfu.access_hashed(key, hash, now),
            Engine::Tiers(tiers) => match tiers.peek(key) {
                None => Access::Missing,
                Some(_) => return SharedGet::Exclusive,
            },
        };
        match access {
            Access::Hit { value, expires_at } => {
                self.hits.increment();
                SharedGet::Hit(Lookup { value, expires_at })
            }
            Access::Expired => SharedGet::Exclusive,
            Access::Missing => {
                self.misses.increment();
                SharedGet::Miss
            }
        }
    }

    /// The valid value under `key` without any effect: no counters, no recency change, and an
    /// expired entry is left in place (but not returned).
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        match &self.engine {
            Engine::Tiers(tiers) => {
                tiers
                    .peek(key)
                    .filter(|e| !e.is_expired(now))
                    .map(|e| Lookup {
                        value: e.value.clone(),
                        expires_at: e.expires_at,
                    })
            }
            Engine::TinyLfu(lfu) => lfu.peek(key, now),
        }
    }

    /// Stores `value` under `key` until `expires_at` (forever if `None`) and returns the entries
    /// evicted to make room, in eviction order. See the [module docs](self) for the exact rules:
    /// too large → `Err` and no change; already expired → the key is removed and nothing stored.
    pub fn insert(
        &mut self,
        key: Bytes,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Evictions, StoreError> {
        let hash = self.hasher.hash(&key);
        self.insert_hashed(key, hash, value, expires_at, now)
            .map(|inserted| inserted.evicted)
    }

    /// The hash of `key` that [`Store::insert_hashed`] and [`Store::get_shared_hashed`] take.
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    /// [`Store::insert`] given the key's hash from a [`KeyHasher`] with this store's
    /// [`StoreConfig::hash_seed`], for a caller that already hashed the key (to choose a shard).
    /// It also hands back what the insert displaced, for the caller to drop after releasing its
    /// lock on the store.
    pub fn insert_hashed(
        &mut self,
        key: Bytes,
        hash: u64,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Inserted, StoreError> {
        let size = entry_size(key.len(), value.len());
        if size > self.budget {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.budget,
            });
        }
        if expires_at.is_some_and(|at| at <= now) {
            let replaced = self.take(&key).map(|(_, old)| self.retire(old));
            return Ok(Inserted {
                evicted: Evictions::new(),
                replaced,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            value,
            expires_at,
            size,
            seq,
        };
        if let Some(at) = expires_at {
            // Only entries with a deadline are indexed (and pay for a second handle on the key).
            self.expiry.insert(at, seq, key.clone());
        }
        self.counters.inserts += 1;
        match &mut self.engine {
            Engine::Tiers(tiers) => {
                let old = tiers.insert(key.clone(), entry);
                let replaced = old.map(|old| self.retire(old));
                Ok(Inserted {
                    evicted: self.evict_to_budget(&key),
                    replaced,
                })
            }
            Engine::TinyLfu(lfu) => {
                let (keep, old) = lfu.insert(key, hash, entry, self.hits.get());
                let replaced = old.map(|old| self.retire(old));
                Ok(Inserted {
                    evicted: self.evict_tinylfu(keep, now),
                    replaced,
                })
            }
        }
    }

    /// Removes the entry under `key`; returns whether one was present (expired or not).
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.take(key) {
            Some((_, entry)) => {
                self.expiry.remove(entry.expires_at, entry.seq);
                true
            }
            None => false,
        }
    }

    /// Every entry's key and value length, expired ones not yet reclaimed included, in no
    /// particular order: what an observer needs to recount the store's bytes independently of
    /// its own counter. `O(n)`.
    pub fn entries(&self) -> Vec<(Bytes, usize)> {
        let mut entries = Vec::with_capacity(self.len());
        self.visit(|key, value| entries.push((Bytes::copy_from_slice(key), value.len())));
        entries
    }

    /// Removes every entry whose key `keep` rejects and returns how many went; used to hand off
    /// keys this node no longer owns after the ring changes. Not counted as evictions. `O(n)`.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) -> usize {
        let doomed: Vec<Bytes> = match &self.engine {
            Engine::Tiers(tiers) => tiers.keys().filter(|k| !keep(k)).cloned().collect(),
            Engine::TinyLfu(lfu) => lfu.keys().filter(|k| !keep(k)).cloned().collect(),
        };
        for key in &doomed {
            self.remove(key);
        }
        doomed.len()
    }

    /// Removes up to `max` expired entries (`expires_at <= now`), earliest deadline first, and
    /// returns them; call it periodically to reclaim memory of entries nobody reads. `O(max log n)`.
    pub fn sweep_expired(&mut self, now: Timestamp, max: usize) -> Vec<Eviction> {
        let mut swept = Vec::new();
        while swept.len() < max {
            let Some(eviction) = self.pop_expired(now) else {
                break;
            };
            swept.push(eviction);
        }
        swept
    }

    /// Calls `visit` with the key and value of every entry (expired ones not yet removed
    /// included), in an order that depends only on the calls made so far.
    pub fn visit(&self, mut visit: impl FnMut(&[u8], &[u8])) {
        match &self.engine {
            Engine::Tiers(tiers) => {
                for (key, entry) in tiers.entries() {
                    visit(key, &entry.value);
                }
            }
            Engine::TinyLfu(lfu) => {
                for (key, value) in lfu.entries() {
                    visit(key, value);
                }
            }
        }
    }

    /// Counters since creation plus the current bytes and entries.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            bytes: self.bytes(),
            entries: self.len() as u64,
            ..self.counters
        }
    }

    /// Number of entries, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        match &self.engine {
            Engine::Tiers(tiers) => tiers.len(),
            Engine::TinyLfu(lfu) => lfu.len(),
        }
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged for the current entries; never above [`Store::budget`].
    pub fn bytes(&self) -> u64 {
        match &self.engine {
            Engine::Tiers(tiers) => tiers.bytes(),
            Engine::TinyLfu(lfu) => lfu.bytes(),
        }
    }

    /// The byte budget; also the largest entry the store accepts.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Bytes the policy keeps besides the entries (TinyLFU's frequency sketch, at most
    /// `budget / 16`, and its ghost of recent departures, about 21 bytes per entry the store has
    /// held at most; 0 for LRU and LRU2). Not charged to the budget: [`ENTRY_OVERHEAD`] covers
    /// it (`core/tests/entry_cost.rs` measures it).
    pub fn policy_overhead_bytes(&self) -> usize {
        match &self.engine {
            Engine::Tiers(_) => 0,
            Engine::TinyLfu(lfu) => lfu.overhead_bytes(),
        }
    }

    /// Drops every entry; event counters are kept.
    pub fn clear(&mut self) {
        match &mut self.engine {
            Engine::Tiers(tiers) => tiers.clear(),
            Engine::TinyLfu(lfu) => lfu.clear(),
        }
        self.expiry.clear();
    }

    /// Drops an entry the store no longer holds from the expiry index; its value and deadline.
    fn retire(&mut self, old: Entry) -> Lookup {
        self.expiry.remove(old.expires_at, old.seq);
        Lookup {
            value: old.value,
            expires_at: old.expires_at,
        }
    }

    /// Takes the entry under `key` out of the policy (the expiry index is left to the caller).
    fn take(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        if self.is_empty() {
            // Writes drop the key from every tier; most hot and miss stores are empty.
            return None;
        }
        match &mut self.engine {
            Engine::Tiers(tiers) => tiers.remove(key),
            Engine::TinyLfu(lfu) => lfu.remove(key),
        }
    }

    /// Removes the entry with the earliest deadline if it is expired at `now`.
    fn pop_expired(&mut self, now: Timestamp) -> Option<Eviction> {
        loop {
            let key = self.expiry.pop_expired(now)?;
            let Some((key, entry)) = self.take(&key) else {
                debug_assert!(false, "expiry index names an absent key");
                continue;
            };
            self.counters.expirations += 1;
            return Some(Eviction {
                key,
                bytes: entry.size,
                reason: EvictionReason::Expired,
            });
        }
    }

    /// LRU and LRU2: evicts capacity victims until the store fits its budget, never the entry
    /// under `keep`.
    fn evict_to_budget(&mut self, keep: &[u8]) -> Evictions {
        let Engine::Tiers(tiers) = &mut self.engine else {
            return Evictions::new();
        };
        let mut evicted = Evictions::new();
        while tiers.bytes() > self.budget {
            let Some((key, entry)) = tiers.pop_victim(keep) else {
                debug_assert!(
                    false,
                    "over budget with no victim but the entry just stored"
                );
                break;
            };
            self.expiry.remove(entry.expires_at, entry.seq);
            self.counters.evictions += 1;
            evicted.push(Eviction {
                key,
                bytes: entry.size,
                reason: EvictionReason::Capacity,
            });
        }
        evicted
    }

    /// TinyLFU: removes expired entries while over budget, then lets the policy evict; never the
    /// entry `keep` (just stored, so not expired).
    fn evict_tinylfu(&mut self, keep: usize, now: Timestamp) -> Evictions {
        let mut evicted = Evictions::new();
        while self.bytes() > self.budget {
            let Some(eviction) = self.pop_expired(now) else {
                break;
            };
            evicted.push(eviction);
        }
        let Engine::TinyLfu(lfu) = &mut self.engine else {
            return evicted;
        };
        let (expiry, counters) = (&mut self.expiry, &mut self.counters);
        lfu.evict(keep, |key, entry| {
            expiry.remove(entry.expires_at, entry.seq);
            counters.evictions += 1;
            evicted.push(Eviction {
                key,
                bytes: entry.size,
                reason: EvictionReason::Capacity,
            });
        });
        evicted
    }
}

#[cfg(test)]
impl Store {
    /// The LRU/LRU2 lists (tests only; panics under TinyLFU).
    fn tiers(&self) -> &Tiers {
        match &self.engine {
            Engine::Tiers(tiers) => tiers,
            Engine::TinyLfu(_) => panic!("not an LRU store"),
        }
    }

    /// Checks the policy's internal invariants (tests only); returns every entry.
    fn check_engine(&self) -> Vec<(Bytes, Entry)> {
        match &self.engine {
            Engine::Tiers(tiers) => tiers.check_invariants(),
            Engine::TinyLfu(lfu) => lfu.check_invariants(),
        }
    }
}
