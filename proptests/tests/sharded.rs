//! `ShardedStore`: sequentially against one store model per shard, and concurrently from several
//! threads against invariants (budget, byte accounting, counters).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use lcache_core::store::entry_size;
use lcache_core::{
    EvictionReason, Evictions, Policy, ShardedStore, ShardedStoreConfig, StoreError, Timestamp,
};
use lcache_proptests::sharded_model::ShardedModel;
use proptest::prelude::*;

const KEYS: usize = 24;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key-{i}"))
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Peek(usize),
    /// Key, value length, deadline relative to now (`None`: never; `Some(0)`: already expired).
    Insert(usize, usize, Option<u64>),
    Remove(usize),
    Sweep(usize),
    Advance(u64),
    /// `retain` keeping the keys whose bit is set.
    Retain(u32),
    Clear,
}

/// Value lengths up to 400 bytes: with shard budgets from 128 bytes, some do not fit.
fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        20 => k.clone().prop_map(Op::Get),
        4 => k.clone().prop_map(Op::Peek),
        28 => (k.clone(), prop_oneof![9 => 0usize..150, 1 => 150usize..400], prop::option::of(0u64..40))
            .prop_map(|(k, len, ttl)| Op::Insert(k, len, ttl)),
        8 => k.prop_map(Op::Remove),
        4 => (0usize..6).prop_map(Op::Sweep),
        8 => (0u64..25).prop_map(Op::Advance),
        2 => any::<u32>().prop_map(Op::Retain),
        1 => Just(Op::Clear),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        2 => Just(Policy::TinyLfu),
        1 => Just(Policy::Lru),
        1 => prop::sample::select(&[10u8, 50, 80][..])
            .prop_map(|protected_percent| Policy::Lru2 { protected_percent }),
    ]
}

fn shards() -> impl Strategy<Value = usize> {
    prop::sample::select(&[1usize, 2, 4, 8][..])
}

fn value(len: usize, tag: usize) -> Bytes {
    let mut v = vec![b'v'; len];
    for (byte, digit) in v.iter_mut().zip(tag.to_le_bytes()) {
        *byte = digit;
    }
    Bytes::from(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every call on the sharded store gives what the per-shard models routed by `shard_of` give.
    #[test]
    fn sharded_store_matches_per_shard_models(
        shards in shards(),
        per_shard in 128u64..700,
        extra in 0u64..8,
        policy in policy(),
        ops in prop::collection::vec(op(), 1..250),
    ) {
        let budget = per_shard * shards as u64 + extra;
        let store = ShardedStore::new(ShardedStoreConfig { shards, ..ShardedStoreConfig::new(budget, policy) })
            .unwrap();
        let mut model = ShardedModel::new(budget, policy, shards, |k: &[u8]| store.shard_of(k));
        prop_assert_eq!(store.max_entry_size(), budget / shards as u64);
        let mut now_ms = 1_000u64;
        for (step, op) in ops.iter().enumerate() {
            let now = Timestamp::from_millis(now_ms);
            match *op {
                Op::Get(k) => {
                    let got = store.get(&key(k), now);
                    prop_assert_eq!(&got, &model.get(&key(k), now), "step {}: get", step);
                }
                Op::Peek(k) => {
                    prop_assert_eq!(store.peek(&key(k), now), model.peek(&key(k), now));
                }
                Op::Insert(k, len, ttl) => {
                    let at = ttl.map(|ms| Timestamp::from_millis(now_ms + ms));
                    let v = value(len, step);
                    let got = store.insert(key(k), v.clone(), at, now).map(Evictions::into_vec);
                    let want = model.insert(key(k), v, at, now);
                    prop_assert_eq!(got, want, "step {}: insert", step);
                }
                Op::Remove(k) => {
                    prop_assert_eq!(store.remove(&key(k)), model.remove(&key(k)));
                }
                Op::Sweep(max) => {
                    prop_assert_eq!(
                        store.sweep_expired(now, max),
                        model.sweep_expired(now, max),
                        "step {}: sweep",
                        step
                    );
                }
                Op::Advance(ms) => now_ms += ms,
                Op::Retain(mask) => {
                    let keep = |k: &[u8]| (0..KEYS).any(|i| mask & (1 << i) != 0 && key(i) == k);
                    prop_assert_eq!(store.retain(keep), model.retain(keep));
                }
                Op::Clear => {
                    store.clear();
                    model.clear();
                }
            }
            let now = Timestamp::from_millis(now_ms);
            let stats = store.stats();
            prop_assert_eq!(stats, model.stats(), "step {}: stats", step);
            prop_assert!(stats.bytes <= budget);
            for k in 0..KEYS {
                prop_assert_eq!(store.peek(&key(k), now), model.peek(&key(k), now));
            }
        }
        for (i, shard) in model.shards().iter().enumerate() {
            prop_assert!(shard.bytes() <= shard.budget(), "shard {}", i);
        }
    }
}

/// What one worker thread does.
#[derive(Debug, Clone)]
enum ThreadOp {
    Get(usize),
    /// Key, value length, deadline relative to the thread's now.
    Insert(usize, usize, Option<u64>),
    Remove(usize),
    Sweep(usize),
    Advance(u64),
}

fn thread_op() -> impl Strategy<Value = ThreadOp> {
    let k = 0..KEYS;
    prop_oneof![
        6 => k.clone().prop_map(ThreadOp::Get),
        8 => (k.clone(), 0usize..300, prop::option::of(0u64..30))
            .prop_map(|(k, len, ttl)| ThreadOp::Insert(k, len, ttl)),
        2 => k.prop_map(ThreadOp::Remove),
        1 => (0usize..4).prop_map(ThreadOp::Sweep),
        2 => (0u64..10).prop_map(ThreadOp::Advance),
    ]
}

/// What one worker counted.
#[derive(Debug, Default)]
struct Tally {
    gets: u64,
    stored: u64,
    evictions: u64,
    swept: u64,
    /// Expired entries an insert removed to make room (TinyLFU).
    expired_by_insert: u64,
}

/// Whether `store` runs TinyLFU: it alone reports expired entries removed by an insert.
fn store_policy_is_tinylfu(store: &ShardedStore) -> bool {
    store.policy() == Policy::TinyLfu
}

fn run_worker(store: &ShardedStore, ops: &[ThreadOp]) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut now_ms = 1_000u64;
    for (step, op) in ops.iter().enumerate() {
        let now = Timestamp::from_millis(now_ms);
        match *op {
            ThreadOp::Get(k) => {
                tally.gets += 1;
                if let Some(lookup) = store.get(&key(k), now) {
                    if lookup.expires_at.is_some_and(|at| at <= now) {
                        return Err(format!("step {step}: expired value returned"));
                    }
                }
            }
            ThreadOp::Insert(k, len, ttl) => {
                let at = ttl.map(|ms| Timestamp::from_millis(now_ms + ms));
                match store.insert(key(k), value(len, step), at, now) {
                    Ok(evicted) => {
                        if at.is_none_or(|at| at > now) {
                            tally.stored += 1;
                        } else if !evicted.is_empty() {
                            return Err(format!("step {step}: expired insert evicted"));
                        }
                        for e in &evicted {
                            match e.reason {
                                EvictionReason::Capacity => tally.evictions += 1,
                                // Only TinyLFU removes expired entries to make room.
                                EvictionReason::Expired if store_policy_is_tinylfu(store) => {
                                    tally.expired_by_insert += 1;
                                }
                                EvictionReason::Expired => {
                                    return Err(format!("step {step}: insert reported {e:?}"));
                                }
                            }
                        }
                    }
                    Err(StoreError::EntryTooLarge { size, budget }) => {
                        if size <= budget || budget != store.max_entry_size() {
                            return Err(format!("step {step}: bad refusal {size} > {budget}"));
                        }
                    }
                    Err(e) => return Err(format!("step {step}: {e}")),
                }
            }
            ThreadOp::Remove(k) => {
                store.remove(&key(k));
            }
            ThreadOp::Sweep(max) => {
                let swept = store.sweep_expired(now, max);
                if swept.len() > max {
                    return Err(format!("step {step}: swept {} > {max}", swept.len()));
                }
                tally.swept += swept.len() as u64;
            }
            ThreadOp::Advance(ms) => now_ms += ms,
        }
    }
    Ok(tally)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Threads hammer one store; a checker thread watches the budget meanwhile; afterwards the
    /// counters add up to what the threads did and the bytes to what the store holds.
    #[test]
    fn concurrent_use_keeps_budget_and_counters(
        shards in prop::sample::select(&[2usize, 4, 8][..]),
        per_shard in 200u64..900,
        policy in policy(),
        streams in prop::collection::vec(prop::collection::vec(thread_op(), 100..600), 2..5),
    ) {
        let budget = per_shard * shards as u64;
        let store = ShardedStore::new(ShardedStoreConfig { shards, ..ShardedStoreConfig::new(budget, policy) })
            .unwrap();
        let done = AtomicBool::new(false);
        let (tallies, observations) = std::thread::scope(|scope| {
            let checker = scope.spawn(|| {
                let mut observations = 0u64;
                let mut worst = 0u64;
                loop {
                    // Read `done` first so at least one full check follows the last write.
                    let finished = done.load(Ordering::Acquire);
                    worst = worst.max(store.stats().bytes);
                    observations += 1;
                    if finished {
                        return (observations, worst);
                    }
                    std::thread::yield_now();
                }
            });
            let workers: Vec<_> = streams
                .iter()
                .map(|ops| {
                    let store = &store;
                    scope.spawn(move || run_worker(store, ops))
                })
                .collect();
            let tallies: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
            done.store(true, Ordering::Release);
            (tallies, checker.join().unwrap())
        });
        let (observations, worst) = observations;
        prop_assert!(observations > 0);
        prop_assert!(worst <= budget, "checker saw {} bytes > budget {}", worst, budget);
        let mut total = Tally::default();
        for tally in tallies {
            let tally = tally.map_err(TestCaseError::fail)?;
            total.gets += tally.gets;
            total.stored += tally.stored;
            total.evictions += tally.evictions;
            total.swept += tally.swept;
            total.expired_by_insert += tally.expired_by_insert;
        }

        let stats = store.stats();
        prop_assert!(stats.bytes <= budget);
        prop_assert_eq!(stats.hits + stats.misses, total.gets);
        prop_assert_eq!(stats.inserts, total.stored);
        prop_assert_eq!(stats.evictions, total.evictions);
        prop_assert!(stats.expirations >= total.swept + total.expired_by_insert);
        // Every stored deadline is after the epoch, so peeking at time zero shows every entry.
        let (mut bytes, mut entries) = (0u64, 0u64);
        for k in 0..KEYS {
            if let Some(lookup) = store.peek(&key(k), Timestamp::ZERO) {
                bytes += entry_size(key(k).len(), lookup.value.len());
                entries += 1;
            }
        }
        prop_assert_eq!(stats.bytes, bytes);
        prop_assert_eq!(stats.entries, entries);
    }
}
