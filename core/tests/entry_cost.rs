//! What a stored entry really costs in memory, against what the store charges for it
//! ([`ENTRY_OVERHEAD`]): the allocator is instrumented and a store is filled.
//!
//! The budget promise ("a node's memory is its budgets plus a constant") holds only if the
//! per-entry charge is at least what an entry takes beyond its key and value: list and hash-table
//! slots, the expiry index, the shared headers of its `Bytes`. This test measures that for small
//! entries with and without a lifetime and fails if the charge is below it.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::alloc::System;

use bytes::Bytes;
use lcache_core::owned::owned;
use lcache_core::store::{Policy, Store, StoreConfig, ENTRY_OVERHEAD};
use lcache_core::Timestamp;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes held per entry beyond its key and value, in a store of `budget` bytes filled past its
/// budget with 16 B keys and 17 B values (`n` inserts, then one read of each, which is how a value
/// gets shared with a caller): everything the store holds, over the entries it holds.
fn overhead_per_entry(policy: Policy, ttl: bool, budget: u64, n: usize) -> f64 {
    let region = Region::new(GLOBAL);
    let mut store = Store::new(StoreConfig::new(budget, policy)).unwrap();
    let now = Timestamp::from_millis(1);
    let expiry = ttl.then(|| Timestamp::from_millis(1_000_000));
    for i in 0..n {
        let key = Bytes::copy_from_slice(format!("key-{i:012}").as_bytes());
        // 17 bytes, as a node stores a value (`owned`): the worst rounding of its size class.
        let value = owned(format!("val-{i:013}").as_bytes());
        store.insert(key, value, expiry, now).unwrap();
    }
    for i in 0..n {
        let key = format!("key-{i:012}");
        // A read hands out a clone of the value: the first one makes its buffer shared.
        drop(store.get(key.as_bytes(), now));
    }
    let stats = region.change();
    let held = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
    let payload = (16 + 17) as f64;
    let entries = store.len();
    assert!(entries < n, "the store was filled past its budget");
    let per_entry = held / entries as f64 - payload;
    drop(store);
    per_entry
}

#[test]
fn the_per_entry_charge_covers_what_an_entry_really_takes() {
    let mut worst: f64 = 0.0;
    // Budgets for about 5k, 20k and 70k entries: where growing tables happen to stand differs.
    for budget in [2 << 20, 8 << 20, 24 << 20] {
        let n = (budget / 300) as usize * 3 / 2;
        for policy in [Policy::Lru, Policy::lru2(), Policy::default()] {
            for ttl in [false, true] {
                let cost = overhead_per_entry(policy, ttl, budget, n);
                println!(
                    "budget {} MiB, {policy:?}, ttl {ttl}: {cost:.1} B per entry beyond key and value",
                    budget >> 20
                );
                worst = worst.max(cost);
            }
        }
    }
    assert!(
        worst <= ENTRY_OVERHEAD as f64,
        "an entry takes {worst:.1} B beyond its key and value, the store charges {ENTRY_OVERHEAD}"
    );
    // The charge is honest, not padded: within 2x of the worst case measured.
    assert!(
        ENTRY_OVERHEAD as f64 <= 2.0 * worst,
        "the store charges {ENTRY_OVERHEAD} B for entries that take {worst:.1} B"
    );
}
