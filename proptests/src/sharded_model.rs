//! A reference model of [`lcache_core::ShardedStore`]: one [`StoreModel`] per shard.
//!
//! It follows the module docs of `lcache_core::sharded`: the budget is split evenly with the
//! remainder going one byte each to the first shards, an entry larger than `budget / shards` is
//! refused for every key, and a sweep visits the shards in turn from a cursor that advances by one
//! shard per call. Which shard holds a key is decided by a routing function the caller supplies
//! (in the tests, `ShardedStore::shard_of` of the store under test).

use std::fmt;

use bytes::Bytes;
use lcache_core::store::entry_size;
use lcache_core::{Eviction, Lookup, Policy, StoreError, StoreStats, Timestamp};

use crate::store_model::StoreModel;

/// Reference model of a sharded store, routing keys with `route`.
pub struct ShardedModel<F> {
    shards: Vec<StoreModel>,
    route: F,
    max_entry: u64,
    /// Number of sweeps so far; sweep number `c` starts at shard `c % shards`.
    sweeps: usize,
}

impl<F> fmt::Debug for ShardedModel<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedModel")
            .field("shards", &self.shards)
            .field("max_entry", &self.max_entry)
            .field("sweeps", &self.sweeps)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(&[u8]) -> usize> ShardedModel<F> {
    /// A model of `shards` shards (`budget >= shards`), sending each key to shard `route(key)`.
    pub fn new(budget: u64, policy: Policy, shards: usize, route: F) -> Self {
        let n = shards as u64;
        let (base, remainder) = (budget / n, budget % n);
        let shards = (0..n)
            .map(|i| {
                let extra = if i < remainder { 1 } else { 0 };
                StoreModel::new(base + extra, policy)
            })
            .collect();
        ShardedModel {
            shards,
            route,
            max_entry: base,
            sweeps: 0,
        }
    }

    /// The per-shard models, in shard order.
    pub fn shards(&self) -> &[StoreModel] {
        &self.shards
    }

    fn shard_mut(&mut self, key: &[u8]) -> &mut StoreModel {
        let index = (self.route)(key);
        &mut self.shards[index]
    }

    /// `ShardedStore::get`.
    pub fn get(&mut self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        self.shard_mut(key).get(key, now)
    }

    /// `ShardedStore::peek`.
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        self.shards[(self.route)(key)].peek(key, now)
    }

    /// `ShardedStore::insert`.
    pub fn insert(
        &mut self,
        key: Bytes,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<Eviction>, StoreError> {
        let size = entry_size(key.len(), value.len());
        if size > self.max_entry {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.max_entry,
            });
        }
        self.shard_mut(&key).insert(key, value, expires_at, now)
    }

    /// `ShardedStore::remove`.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.shard_mut(key).remove(key)
    }

    /// `ShardedStore::sweep_expired`.
    pub fn sweep_expired(&mut self, now: Timestamp, max: usize) -> Vec<Eviction> {
        let mut swept = Vec::new();
        if max == 0 {
            return swept;
        }
        let count = self.shards.len();
        let start = self.sweeps % count;
        self.sweeps += 1;
        for i in 0..count {
            let left = max - swept.len();
            if left == 0 {
                break;
            }
            let shard = &mut self.shards[(start + i) % count];
            swept.extend(shard.sweep_expired(now, left));
        }
        swept
    }

    /// `ShardedStore::retain`.
    pub fn retain(&mut self, keep: impl Fn(&[u8]) -> bool) -> usize {
        self.shards
            .iter_mut()
            .map(|shard| shard.retain(&keep))
            .sum()
    }

    /// `ShardedStore::clear`.
    pub fn clear(&mut self) {
        for shard in &mut self.shards {
            shard.clear();
        }
    }

    /// `ShardedStore::stats`: the sum over shards.
    pub fn stats(&self) -> StoreStats {
        let mut total = StoreStats::default();
        for shard in &self.shards {
            total.merge(&shard.stats());
        }
        total
    }
}
