//! A [`Store`] split into lock-protected shards for concurrent use (segment locking).
//!
//! A key lives in shard `(hash >> 40) & (shards - 1)`, where `hash` is the key's hash in the
//! shards' own index ([`KeyHasher`] with the store's seed; the seed is per process, so crafted
//! keys cannot be aimed at one shard): a read hashes its key once. Bits 40 and up are not the ones
//! that place an entry in a shard's table (its low bits) or tag it there (its top 7), so keys of
//! one shard still spread over its table for up to 2^17 shards. The byte budget is split evenly, the remainder going one byte each to the
//! first shards, and every shard enforces its own part, so the whole never exceeds the budget.
//! Each shard is a [`Store`] behind a read-write lock. [`ShardedStore::get`] takes the read lock
//! and calls [`Store::get_shared`]: under [`Policy::TinyLfu`] a hit or a miss needs nothing more,
//! so reads of a hot shard run in parallel; when the store answers
//! [`SharedGet::Exclusive`](crate::store::SharedGet) (an expired entry to remove, or a hit under
//! LRU or LRU2, whose lists must move) it retries with the write lock ([`Store::get`]), and
//! under LRU and LRU2 a `get` takes the write lock directly. Every other call takes one shard's
//! write lock (`peek` and `stats` its read lock), except [`ShardedStore::sweep_expired`],
//! [`ShardedStore::stats`] and [`ShardedStore::clear`], which lock the shards one after another
//! (never two at once); their result is therefore not an atomic snapshot while other threads
//! write.
//!
//! Because an entry must fit in one shard, the largest entry accepted is
//! [`ShardedStore::max_entry_size`] = `budget / shards` (the smallest shard budget), for every key.
//! Eviction policy and expiry are those of [`Store`], applied per shard.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::store::{
    entry_size, Eviction, Evictions, KeyHasher, Lookup, Policy, SharedGet, Store, StoreConfig,
    StoreError, StoreStats,
};
use crate::time::Timestamp;

/// The shard of a key is taken from its hash's bits from this one up.
const SHARD_HASH_SHIFT: u32 = 40;

/// Shard count of [`ShardedStoreConfig::new`].
pub const DEFAULT_SHARDS: usize = 16;

/// Configuration of a [`ShardedStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardedStoreConfig {
    /// Total byte budget over all shards; must be at least `shards`.
    pub budget_bytes: u64,
    /// Eviction policy of every shard.
    pub policy: Policy,
    /// Number of shards, a power of two `>= 1`.
    pub shards: usize,
    /// Seed of the shard choice and of every shard's hasher (see [`StoreConfig::hash_seed`]).
    pub hash_seed: u64,
}

impl ShardedStoreConfig {
    /// A configuration with [`DEFAULT_SHARDS`] shards and hash seed 0.
    pub fn new(budget_bytes: u64, policy: Policy) -> Self {
        ShardedStoreConfig {
            budget_bytes,
            policy,
            shards: DEFAULT_SHARDS,
            hash_seed: 0,
        }
    }
}

/// A byte-budgeted store shared between threads: shards of [`Store`], each behind its own
/// read-write lock.
pub struct ShardedStore {
    shards: Box<[RwLock<Store>]>,
    policy: Policy,
    /// Whether hits are served under the read lock ([`Policy::shared_hits`]).
    shared_hits: bool,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    budget: u64,
    max_entry: u64,
    hasher: KeyHasher,
    /// Shard where the next sweep starts, so successive sweeps cover every shard.
    sweep_cursor: AtomicUsize,
}

impl fmt::Debug for ShardedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedStore")
            .field("shards", &self.shards.len())
            .field("budget", &self.budget)
            .field("max_entry", &self.max_entry)
            .finish_non_exhaustive()
    }
}

impl ShardedStore {
    /// An empty store; fails with [`StoreError::InvalidConfig`] if `shards` is not a power of two,
    /// if a shard would get a zero budget (`budget_bytes < shards`) or if the policy is invalid.
    pub fn new(config: ShardedStoreConfig) -> Result<Self, StoreError> {
        let count = config.shards;
        if !count.is_power_of_two() {
            return Err(StoreError::InvalidConfig(format!(
                "shards must be a power of two >= 1, got {count}"
            )));
        }
        let n = count as u64;
        let (base, remainder) = (config.budget_bytes / n, config.budget_bytes % n);
        if base == 0 {
            return Err(StoreError::InvalidConfig(format!(
                "budget_bytes {} gives an empty budget to some of {count} shards",
                config.budget_bytes
            )));
        }
        let shards = (0..n)
            .map(|i| {
                let budget_bytes = base + u64::from(i < remainder);
                Store::new(StoreConfig {
                    budget_bytes,
                    policy: config.policy,
                    hash_seed: config.hash_seed,
                })
                .map(RwLock::new)
            })
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(ShardedStore {
            shards,
            policy: config.policy,
            shared_hits: config.policy.shared_hits(),
            mask: count - 1,
            budget: config.budget_bytes,
            max_entry: base,
            hasher: KeyHasher::new(config.hash_seed),
            sweep_cursor: AtomicUsize::new(0),
        })
    }

    /// Index of the shard that holds `key` (see the [module docs](self)).
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.shard_of_hash(self.hasher.hash(key))
    }

    fn shard_of_hash(&self, hash: u64) -> usize {
        // Truncating is fine: only the low bits of the shifted hash are kept.
        (hash >> SHARD_HASH_SHIFT) as usize & self.mask
    }

    /// [`Store::get`] on the key's shard: under the read lock ([`Store::get_shared`]) when the
    /// policy allows, else (or when the store asks for it) under the write lock.
    pub fn get(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let hash = self.hasher.hash(key);
        let shard = &self.shards[self.shard_of_hash(hash)];
        if self.shared_hits {
            match shard.read().get_shared_hashed(key, hash, now) {
                SharedGet::Hit(lookup) => return Some(lookup),
                SharedGet::Miss => return None,
                SharedGet::Exclusive => {}
            }
        }
        shard.write().get(key, now)
    }

    /// [`Store::peek`] on the key's shard, under its read lock.
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        self.shard(key).read().peek(key, now)
    }

    /// [`Store::insert`] on the key's shard. An entry larger than [`ShardedStore::max_entry_size`]
    /// is rejected with `EntryTooLarge { budget: max_entry_size }` whatever its shard, and nothing
    /// changes.
    pub fn insert(
        &self,
        key: Bytes,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Evictions, StoreError> {
        let size = entry_size(key.len(), value.len());
        if size > self.max_entry {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.max_entry,
            });
        }
        let hash = self.hasher.hash(&key);
        let shard = &self.shards[self.shard_of_hash(hash)];
        // What the insert displaced is dropped after the lock is released (a value's last
        // handle may free it).
        let inserted = shard
            .write()
            .insert_hashed(key, hash, value, expires_at, now)?;
        Ok(inserted.evicted)
    }

    /// [`Store::remove`] on the key's shard.
    pub fn remove(&self, key: &[u8]) -> bool {
        self.shard(key).write().remove(key)
    }

    /// Removes up to `max` expired entries in total, visiting shards in turn from a cursor that
    /// advances by one shard per call, so repeated sweeps reach every shard even when `max` is
    /// smaller than the backlog. Locks at most every shard once, one at a time.
    pub fn sweep_expired(&self, now: Timestamp, max: usize) -> Vec<Eviction> {
        let mut swept = Vec::new();
        if max == 0 {
            return swept;
        }
        let start = self.sweep_cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.shards.len() {
            let left = max - swept.len();
            if left == 0 {
                break;
            }
            let shard = &self.shards[start.wrapping_add(i) & self.mask];
            swept.extend(shard.write().sweep_expired(now, left));
        }
        swept
    }

    /// Sum of the shards' stats, read one shard at a time.
    pub fn stats(&self) -> StoreStats {
        let mut total = StoreStats::default();
        for shard in self.shards.iter() {
            total.merge(&shard.read().stats());
        }
        total
    }

    /// The eviction policy of every shard.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Total byte budget over all shards.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Largest entry ([`entry_size`]) accepted: `budget / shards`.
    pub fn max_entry_size(&self) -> u64 {
        self.max_entry
    }

    /// Drops every entry of every shard; counters are kept.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().clear();
        }
    }

    /// Every entry's key and value length, one shard at a time; see [`Store::entries`].
    pub fn entries(&self) -> Vec<(Bytes, usize)> {
        self.shards
            .iter()
            .flat_map(|shard| shard.read().entries())
            .collect()
    }

    /// Removes every entry whose key `keep` rejects, one shard lock at a time; returns how many
    /// went. See [`Store::retain`].
    pub fn retain(&self, mut keep: impl FnMut(&[u8]) -> bool) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.write().retain(&mut keep))
            .sum()
    }

    fn shard(&self, key: &[u8]) -> &RwLock<Store> {
        &self.shards[self.shard_of(key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EvictionReason, ENTRY_OVERHEAD};

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn sharded(budget_bytes: u64, shards: usize) -> ShardedStore {
        ShardedStore::new(ShardedStoreConfig {
            shards,
            ..ShardedStoreConfig::new(budget_bytes, Policy::lru2())
        })
        .unwrap()
    }

    #[test]
    fn entries_list_every_shard_and_add_up_to_the_byte_count() {
        let store = sharded(100_000, 4);
        let keys = one_key_per_shard(&store);
        for (i, key) in keys.iter().enumerate() {
            let value = Bytes::from(vec![b'v'; i + 1]);
            store
                .insert(key.clone(), value, Some(ts(10)), ts(0))
                .unwrap();
        }
        let mut entries = store.entries();
        entries.sort();
        let mut want: Vec<(Bytes, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i + 1))
            .collect();
        want.sort();
        assert_eq!(entries, want);
        let counted: u64 = store
            .entries()
            .iter()
            .map(|(k, len)| crate::store::entry_size(k.len(), *len))
            .sum();
        assert_eq!(counted, store.stats().bytes);
    }

    fn shard_budgets(store: &ShardedStore) -> Vec<u64> {
        store.shards.iter().map(|s| s.read().budget()).collect()
    }

    /// The first key `k<i>` that lands in each shard, in shard order.
    fn one_key_per_shard(store: &ShardedStore) -> Vec<Bytes> {
        let mut found = vec![None; store.shard_count()];
        for i in 0.. {
            let key = Bytes::from(format!("k{i}"));
            let slot = &mut found[store.shard_of(&key)];
            slot.get_or_insert(key);
            if found.iter().all(Option::is_some) {
                return found.into_iter().flatten().collect();
            }
        }
        unreachable!()
    }

    #[test]
    fn budget_is_split_evenly_remainder_first() {
        let s = sharded(103 * 10, 4);
        assert_eq!(shard_budgets(&s), vec![258, 258, 257, 257]);
        assert_eq!(
            (s.budget(), s.max_entry_size(), s.shard_count()),
            (1_030, 257, 4)
        );
        assert_eq!(shard_budgets(&sharded(4, 4)), vec![1, 1, 1, 1]);
        assert_eq!(shard_budgets(&sharded(7, 1)), vec![7]);
        let default = ShardedStoreConfig::new(1 << 20, Policy::Lru);
        assert_eq!(default.shards, DEFAULT_SHARDS);
        assert_eq!(ShardedStore::new(default).unwrap().shard_count(), 16);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let config = |budget_bytes, shards, policy| ShardedStoreConfig {
            shards,
            ..ShardedStoreConfig::new(budget_bytes, policy)
        };
        for bad in [
            config(1_000, 0, Policy::Lru),
            config(1_000, 3, Policy::Lru),
            config(1_000, 12, Policy::Lru),
            config(15, 16, Policy::Lru),
            config(0, 1, Policy::Lru),
            config(
                1_000,
                4,
                Policy::Lru2 {
                    protected_percent: 100,
                },
            ),
        ] {
            let result = ShardedStore::new(bad);
            assert!(
                matches!(result, Err(StoreError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reports_its_configuration() {
        for policy in [Policy::Lru, Policy::lru2(), Policy::TinyLfu] {
            let s = ShardedStore::new(ShardedStoreConfig {
                shards: 4,
                ..ShardedStoreConfig::new(4_003, policy)
            })
            .unwrap();
            assert_eq!(s.policy(), policy);
            assert_eq!(s.shard_count(), 4);
            assert_eq!(s.budget(), 4_003);
            assert_eq!(s.max_entry_size(), 1_000, "the smallest shard's budget");
        }
    }

    #[test]
    fn shard_of_uses_bits_40_and_up_of_the_stores_key_hash() {
        let s = sharded(1 << 20, 8);
        let hasher = KeyHasher::new(0);
        for key in [&b""[..], b"lcache", b"some other key"] {
            assert_eq!(s.shard_of(key), ((hasher.hash(key) >> 40) & 7) as usize);
        }
        assert_eq!(sharded(10, 1).shard_of(b"lcache"), 0);
        let keys = one_key_per_shard(&s);
        assert_eq!(keys.len(), 8);
        // The seed moves keys between shards: crafted keys cannot be aimed at one shard.
        let seeded = ShardedStore::new(ShardedStoreConfig {
            shards: 8,
            hash_seed: 0x5eed,
            ..ShardedStoreConfig::new(1 << 20, Policy::lru2())
        })
        .unwrap();
        let moved = (0..64)
            .map(|i| format!("k{i}"))
            .filter(|k| s.shard_of(k.as_bytes()) != seeded.shard_of(k.as_bytes()))
            .count();
        assert!(moved > 32, "{moved} of 64 keys changed shard with the seed");
    }

    #[test]
    fn operations_route_to_the_key_shard() {
        let s = sharded(8 * 1_000, 8);
        let key = Bytes::from_static(b"lcache");
        let value = Bytes::from_static(b"value");
        assert!(s
            .insert(key.clone(), value.clone(), Some(ts(100)), ts(0))
            .unwrap()
            .is_empty());
        let shard = s.shard_of(&key);
        for (i, m) in s.shards.iter().enumerate() {
            assert_eq!(m.read().len(), usize::from(i == shard));
        }
        assert_eq!(s.peek(&key, ts(1)).unwrap().value, value);
        assert_eq!(s.get(&key, ts(1)).unwrap().expires_at, Some(ts(100)));
        assert_eq!(s.get(&key, ts(100)), None);
        assert!(s
            .insert(key.clone(), value, None, ts(0))
            .unwrap()
            .is_empty());
        assert!(s.remove(&key));
        assert!(!s.remove(&key));
        let stats = s.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 1, 1));
        assert_eq!((stats.inserts, stats.entries, stats.bytes), (2, 0, 0));
    }

    #[test]
    fn too_large_reports_max_entry_size_for_every_shard() {
        let s = sharded(4 * 400 + 3, 4);
        assert_eq!(s.max_entry_size(), 400);
        let fits = Bytes::from(vec![0u8; 400 - ENTRY_OVERHEAD as usize - 2]);
        let too_big = Bytes::from(vec![0u8; 400 - ENTRY_OVERHEAD as usize - 1]);
        for key in one_key_per_shard(&s) {
            let err = s
                .insert(key.clone(), too_big.clone(), None, ts(0))
                .unwrap_err();
            assert_eq!(
                err,
                StoreError::EntryTooLarge {
                    size: 401,
                    budget: 400
                }
            );
            assert!(s
                .insert(key.clone(), fits.clone(), None, ts(0))
                .unwrap()
                .is_empty());
            assert!(s.insert(key.clone(), too_big.clone(), None, ts(0)).is_err());
            assert_eq!(s.peek(&key, ts(0)).unwrap().value, fits, "old entry kept");
        }
        assert_eq!(s.stats().bytes, 4 * 400);
    }

    #[test]
    fn repeated_small_sweeps_cover_every_shard() {
        let s = sharded(8 * 10_000, 8);
        let keys = one_key_per_shard(&s);
        for key in &keys {
            for j in 0..3 {
                let k = Bytes::from(format!("{}-{j}", String::from_utf8_lossy(key)));
                s.insert(k, Bytes::new(), Some(ts(10)), ts(0)).unwrap();
            }
        }
        let total = s.stats().entries as usize;
        assert!(total >= 8, "{total}");
        assert!(
            s.sweep_expired(ts(9), 100).is_empty(),
            "nothing expired yet"
        );
        assert!(s.sweep_expired(ts(10), 0).is_empty());

        let mut visited = std::collections::BTreeSet::new();
        let mut swept = 0;
        for _ in 0..s.shard_count() {
            let batch = s.sweep_expired(ts(10), 1);
            assert_eq!(batch.len(), 1, "bounded by max");
            assert_eq!(batch[0].reason, EvictionReason::Expired);
            visited.insert(s.shard_of(&batch[0].key));
            swept += 1;
        }
        assert_eq!(visited.len(), s.shard_count(), "every shard reached");
        let rest = s.sweep_expired(ts(10), usize::MAX);
        assert_eq!(swept + rest.len(), total);
        let stats = s.stats();
        assert_eq!((stats.entries, stats.expirations), (0, total as u64));
    }

    #[test]
    fn clear_empties_every_shard() {
        let s = sharded(16 * 1_000, 16);
        for key in one_key_per_shard(&s) {
            s.insert(key, Bytes::from_static(b"v"), None, ts(0))
                .unwrap();
        }
        assert_eq!(s.stats().entries, 16);
        s.clear();
        assert_eq!(
            (s.stats().entries, s.stats().bytes, s.stats().inserts),
            (0, 0, 16)
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ShardedStore>();
    }

    /// Several threads hammer one store; the budget holds at every observation and the counters
    /// add up to what the threads did.
    #[test]
    fn concurrent_use_keeps_budget_and_counts() {
        for policy in [Policy::TinyLfu, Policy::lru2(), Policy::Lru] {
            concurrent_use_keeps_budget_and_counts_under(policy);
        }
    }

    fn concurrent_use_keeps_budget_and_counts_under(policy: Policy) {
        const THREADS: u64 = 4;
        const OPS: u64 = 5_000;
        let s = ShardedStore::new(ShardedStoreConfig {
            shards: 16,
            ..ShardedStoreConfig::new(16 * 2_000, policy)
        })
        .unwrap();
        let totals = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let s = &s;
                    scope.spawn(move || {
                        let (mut gets, mut inserts, mut evictions, mut expirations) = (0, 0, 0, 0);
                        let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ (t + 1);
                        for op in 0..OPS {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let now = ts(op);
                            let key = Bytes::from(format!("k{}", rng % 200));
                            match rng % 7 {
                                0..=2 => {
                                    let len = usize::try_from(rng % 500).unwrap();
                                    let expires =
                                        rng.is_multiple_of(2).then(|| ts(op + 1 + rng % 30));
                                    let value = Bytes::from(vec![0u8; len]);
                                    let evicted = s.insert(key, value, expires, now).unwrap();
                                    inserts += 1;
                                    for e in &evicted {
                                        match e.reason {
                                            EvictionReason::Capacity => evictions += 1,
                                            EvictionReason::Expired => expirations += 1,
                                        }
                                    }
                                }
                                3..=5 => {
                                    gets += 1;
                                    if let Some(found) = s.get(&key, now) {
                                        assert!(found.expires_at.is_none_or(|at| at > now));
                                    }
                                }
                                _ => expirations += s.sweep_expired(now, 4).len() as u64,
                            }
                            assert!(s.stats().bytes <= s.budget());
                        }
                        (gets, inserts, evictions, expirations)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .fold((0, 0, 0, 0), |a, b| {
                    (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
                })
        });
        let stats = s.stats();
        assert_eq!(stats.hits + stats.misses, totals.0);
        assert_eq!(stats.inserts, totals.1);
        assert_eq!(stats.evictions, totals.2);
        assert!(stats.expirations >= totals.3);
        assert!(stats.hits > 0 && stats.evictions > 0);
        let (mut bytes, mut entries) = (0, 0);
        for shard in s.shards.iter() {
            let shard = shard.read();
            assert!(shard.bytes() <= shard.budget());
            bytes += shard.bytes();
            entries += shard.len() as u64;
        }
        assert_eq!((stats.bytes, stats.entries), (bytes, entries));
    }
}
