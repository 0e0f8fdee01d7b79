//! A byte-budgeted cache store with LRU or LRU2 eviction and per-entry expiry.
//!
//! [`Store`] is a single-threaded state machine: every call takes `now` explicitly and returns its
//! effects (values, [`Eviction`]s) as values. It never reads a clock and never iterates in an order
//! chosen by a randomly seeded hasher, so the same calls give the same results in every process.
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
//!   3. otherwise the entry is stored (`inserts += 1`). A new key goes to the most-recently-used
//!      (MRU) end of the probation list; an existing key has its value and expiry replaced and the
//!      replacement counts as an access (below). Then, while bytes `>` budget, a victim is evicted
//!      (`evictions += 1`) and returned, in eviction order. The entry just stored is never a victim.
//! - **get.** Absent: `misses += 1`, `None`. Present but expired: removed, `expirations += 1`,
//!   `misses += 1`, `None`. Present and valid: `hits += 1`, counts as an access, returns a
//!   [`Lookup`].
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
//! - [`Policy::Lru`]: one recency list. An access moves the entry to the MRU end; the victim is
//!   the least-recently-used (LRU) entry.
//! - [`Policy::Lru2`]: a probation list P and a protected list Q, with a protected budget of
//!   `budget * protected_percent / 100` bytes (integer division). New keys enter P. An access to
//!   an entry of P moves it to the MRU end of Q; an access to an entry of Q moves it to the MRU end
//!   of Q. After every access or replacement in Q, while Q's bytes exceed the protected budget and
//!   Q holds more than one entry, Q's LRU entry is demoted to the MRU end of P (a demotion is not
//!   an eviction). The capacity victim is P's LRU entry, unless P is empty or holds only the entry
//!   just stored, in which case it is Q's LRU entry. One-touch keys (a scan) therefore only churn
//!   P and never flush Q.

mod expiry;
mod stats;
mod tiers;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

use crate::time::Timestamp;
use expiry::ExpiryIndex;
pub use stats::StoreStats;
use tiers::{Access, Entry, Tiers};

/// Fixed bytes charged per entry on top of key and value, for the bookkeeping the store keeps
/// about it (list links, hash slot, expiry record). An estimate, constant so that accounting is
/// identical on every platform.
pub const ENTRY_OVERHEAD: u64 = 64;

/// Default share of the budget, in percent, reserved for the protected list of [`Policy::Lru2`].
pub const DEFAULT_PROTECTED_PERCENT: u8 = 80;

/// Bytes charged for an entry: `key_len + value_len + ENTRY_OVERHEAD` (saturating).
pub fn entry_size(key_len: usize, value_len: usize) -> u64 {
    (key_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(ENTRY_OVERHEAD)
}

/// Which entry a full store evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
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

    /// Checks the policy's parameters.
    fn validate(self) -> Result<(), StoreError> {
        match self {
            Policy::Lru => Ok(()),
            Policy::Lru2 {
                protected_percent: 1..=99,
            } => Ok(()),
            Policy::Lru2 { protected_percent } => Err(StoreError::InvalidConfig(format!(
                "protected_percent must be in 1..=99, got {protected_percent}"
            ))),
        }
    }

    /// Byte budget of the protected tier, `None` for plain LRU.
    fn protected_budget(self, budget: u64) -> Option<u64> {
        match self {
            Policy::Lru => None,
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
    /// Seed of the hasher of the store's maps. Keys are chosen by clients, so a node seeds it per
    /// process (from the OS; a simulation from its run seed) to keep crafted keys from colliding
    /// on purpose. Any value is valid; the seed changes no observable result, only memory layout.
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

/// Why an entry left the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// Removed to make room within the byte budget (even if it happened to be expired).
    Capacity,
    /// Removed by a sweep because its deadline had passed.
    Expired,
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

/// A byte-budgeted map from keys to values with expiry and LRU/LRU2 eviction.
///
/// Not synchronised; see [`crate::sharded::ShardedStore`] for concurrent use. Semantics are in
/// the [module docs](self).
pub struct Store {
    budget: u64,
    policy: Policy,
    tiers: Tiers,
    expiry: ExpiryIndex,
    /// Sequence number of the next stored entry; orders equal deadlines.
    next_seq: u64,
    /// Event counters; `bytes` and `entries` are filled in by [`Store::stats`].
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
        config.policy.validate()?;
        Ok(Store {
            budget: config.budget_bytes,
            policy: config.policy,
            tiers: Tiers::new(
                config.policy.protected_budget(config.budget_bytes),
                config.hash_seed,
            ),
            expiry: ExpiryIndex::default(),
            next_seq: 0,
            counters: StoreStats::default(),
        })
    }

    /// The valid value under `key`, counting a hit or a miss; a hit is an access for the eviction
    /// policy, and an expired entry found here is removed.
    pub fn get(&mut self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        match self.tiers.access(key, now) {
            Access::Hit { value, expires_at } => {
                self.counters.hits += 1;
                Some(Lookup { value, expires_at })
            }
            Access::Expired => {
                self.remove(key);
                self.counters.expirations += 1;
                self.counters.misses += 1;
                None
            }
            Access::Missing => {
                self.counters.misses += 1;
                None
            }
        }
    }

    /// The valid value under `key` without any effect: no counters, no recency change, and an
    /// expired entry is left in place (but not returned).
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let entry = self.tiers.peek(key).filter(|e| !e.is_expired(now))?;
        Some(Lookup {
            value: entry.value.clone(),
            expires_at: entry.expires_at,
        })
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
    ) -> Result<Vec<Eviction>, StoreError> {
        let size = entry_size(key.len(), value.len());
        if size > self.budget {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.budget,
            });
        }
        if expires_at.is_some_and(|at| at <= now) {
            self.remove(&key);
            return Ok(Vec::new());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            value,
            expires_at,
            size,
            seq,
        };
        self.expiry.insert(expires_at, seq, key.clone());
        if let Some(old) = self.tiers.insert(key.clone(), entry) {
            self.expiry.remove(old.expires_at, old.seq);
        }
        self.counters.inserts += 1;
        Ok(self.evict_to_budget(&key))
    }

    /// Removes the entry under `key`; returns whether one was present (expired or not).
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.tiers.remove(key) {
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
        self.tiers
            .keys()
            .filter_map(|key| Some((key.clone(), self.tiers.peek(key)?.value.len())))
            .collect()
    }

    /// Removes every entry whose key `keep` rejects and returns how many went; used to hand off
    /// keys this node no longer owns after the ring changes. Not counted as evictions. `O(n)`.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) -> usize {
        let doomed: Vec<Bytes> = self.tiers.keys().filter(|k| !keep(k)).cloned().collect();
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
            let Some(key) = self.expiry.pop_expired(now) else {
                break;
            };
            let Some((key, entry)) = self.tiers.remove(&key) else {
                debug_assert!(false, "expiry index names an absent key");
                continue;
            };
            self.counters.expirations += 1;
            swept.push(Eviction {
                key,
                bytes: entry.size,
                reason: EvictionReason::Expired,
            });
        }
        swept
    }

    /// Counters since creation plus the current bytes and entries.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            bytes: self.bytes(),
            entries: self.len() as u64,
            ..self.counters
        }
    }

    /// Number of entries, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged for the current entries; never above [`Store::budget`].
    pub fn bytes(&self) -> u64 {
        self.tiers.bytes()
    }

    /// The byte budget; also the largest entry the store accepts.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Drops every entry; event counters are kept.
    pub fn clear(&mut self) {
        self.tiers.clear();
        self.expiry.clear();
    }

    /// Evicts capacity victims until the store fits its budget, never the entry under `keep`.
    fn evict_to_budget(&mut self, keep: &[u8]) -> Vec<Eviction> {
        let mut evicted = Vec::new();
        while self.tiers.bytes() > self.budget {
            let Some((key, entry)) = self.tiers.pop_victim(keep) else {
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
}
