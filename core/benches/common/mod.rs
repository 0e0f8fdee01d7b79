//! Workloads and cache adapters shared by the store benchmarks (`throughput`, `hit_ratio`).
//!
//! Every cache under test is charged the same per-entry weight, [`entry_size`] (key + value +
//! [`lcache_core::store::ENTRY_OVERHEAD`]), against the same byte budget, so all of them hold the
//! same number of entries and the comparison is about policy and implementation, not accounting.
//! Workloads come from a [`ChaCha8Rng`] with a fixed seed, so every run sees the same requests.

use bytes::Bytes;
use foldhash::fast::FixedState;
use lcache_core::sharded::{ShardedStore, ShardedStoreConfig};
use lcache_core::store::{entry_size, Policy};
use lcache_core::Timestamp;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

/// Root seed of every workload; printed by `hit_ratio`.
pub const SEED: u64 = 0x1CAC_4E00_5EED_0001;

/// Bytes of every value.
pub const VALUE_LEN: usize = 100;

/// The key of item `id`: its 8 big-endian bytes.
pub fn key(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// A value for item `id`: [`VALUE_LEN`] bytes in an allocation of its own (a shared value would
/// turn every `Bytes` clone into a contended refcount on one cache line).
pub fn value(id: u64) -> Bytes {
    Bytes::from(vec![id.to_le_bytes()[0]; VALUE_LEN])
}

/// Bytes charged for one entry of this workload, by every cache under test.
pub fn item_weight() -> u64 {
    entry_size(key(0).len(), VALUE_LEN)
}

/// `count` item ids in `0..keys`, Zipf-distributed with exponent `s` (id 0 the most popular).
pub fn zipf_ids(rng: &mut ChaCha8Rng, keys: u64, s: f64, count: usize) -> Vec<u64> {
    let zipf = Zipf::new(keys as f64, s).expect("valid Zipf parameters");
    (0..count)
        // Samples are integral floats in `1..=keys`; the cast is exact.
        .map(|_| zipf.sample(rng) as u64 - 1)
        .collect()
}

/// The operations both benches need from a cache.
pub trait BenchCache: Sync {
    /// Whether `key` was found (a hit).
    fn get(&self, key: &Bytes) -> bool;
    /// Stores `value` under `key`.
    fn insert(&self, key: &Bytes, value: &Bytes);
    /// Runs deferred bookkeeping, for caches that have any.
    #[allow(dead_code)] // `throughput` leaves caches to their own maintenance.
    fn maintain(&self) {}
}

/// Time is irrelevant to these workloads (no expiry); every call uses the epoch.
const NOW: Timestamp = Timestamp::from_millis(0);

/// LCache's [`ShardedStore`].
pub struct Lcache(ShardedStore);

impl Lcache {
    /// A store of `budget` bytes over `shards` shards.
    pub fn new(budget: u64, policy: Policy, shards: usize) -> Self {
        let config = ShardedStoreConfig {
            shards,
            ..ShardedStoreConfig::new(budget, policy)
        };
        Lcache(ShardedStore::new(config).expect("valid store config"))
    }
}

impl BenchCache for Lcache {
    fn get(&self, key: &Bytes) -> bool {
        self.0.get(key, NOW).is_some()
    }

    fn insert(&self, key: &Bytes, value: &Bytes) {
        self.0
            .insert(key.clone(), value.clone(), None, NOW)
            .expect("entry fits a shard");
    }
}

/// `moka::sync::Cache` (TinyLFU admission, LRU eviction), weighed like the store.
pub struct Moka(moka::sync::Cache<Bytes, Bytes, FixedState>);

impl Moka {
    /// A cache of `budget` bytes; the fixed hasher keeps its frequency sketch reproducible.
    pub fn new(budget: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|k: &Bytes, v: &Bytes| {
                u32::try_from(entry_size(k.len(), v.len())).unwrap_or(u32::MAX)
            })
            .build_with_hasher(FixedState::default());
        Moka(cache)
    }
}

impl BenchCache for Moka {
    fn get(&self, key: &Bytes) -> bool {
        self.0.get(key).is_some()
    }

    fn insert(&self, key: &Bytes, value: &Bytes) {
        self.0.insert(key.clone(), value.clone());
    }

    fn maintain(&self) {
        self.0.run_pending_tasks();
    }
}

/// Weighs a `quick_cache` entry like the store does.
#[derive(Debug, Clone, Copy)]
pub struct EntryWeighter;

impl quick_cache::Weighter<Bytes, Bytes> for EntryWeighter {
    fn weight(&self, key: &Bytes, value: &Bytes) -> u64 {
        entry_size(key.len(), value.len())
    }
}

/// `quick_cache::sync::Cache` (S3-FIFO-like hot/cold queues with ghost entries).
pub struct QuickCache(quick_cache::sync::Cache<Bytes, Bytes, EntryWeighter, FixedState>);

impl QuickCache {
    /// A cache of `budget` bytes expected to hold `items` entries, over `shards` shards (`None`:
    /// quick_cache's default, 4 per core).
    pub fn new(budget: u64, items: usize, shards: Option<usize>) -> Self {
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .estimated_items_capacity(items)
            .weight_capacity(budget);
        if let Some(shards) = shards {
            options.shards(shards);
        }
        let options = options.build().expect("valid quick_cache options");
        QuickCache(quick_cache::sync::Cache::with_options(
            options,
            EntryWeighter,
            FixedState::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        ))
    }
}

impl BenchCache for QuickCache {
    fn get(&self, key: &Bytes) -> bool {
        self.0.get(key).is_some()
    }

    fn insert(&self, key: &Bytes, value: &Bytes) {
        self.0.insert(key.clone(), value.clone());
    }
}
