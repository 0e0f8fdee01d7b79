//! Behaviour tests of [`Store`]: LRU order, replace and byte accounting, too-large inserts; the
//! submodules cover expiry, the LRU2 tiers and a long mixed workload.

use super::*;

mod expiry;
mod lru2;
mod tinylfu;
mod workload;

const T0: Timestamp = Timestamp::ZERO;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A value such that `key` with it costs exactly `size` bytes.
fn value_for(key: &str, size: u64) -> Bytes {
    let len = size - ENTRY_OVERHEAD - key.len() as u64;
    Bytes::from(vec![b'v'; usize::try_from(len).unwrap()])
}

/// The entry size used by most tests.
const UNIT: u64 = 400;

fn store(budget_units: u64, policy: Policy) -> Store {
    Store::new(StoreConfig::new(budget_units * UNIT, policy)).unwrap()
}

fn put(store: &mut Store, key: &str) -> Vec<Eviction> {
    let evicted = store
        .insert(b(key), value_for(key, UNIT), None, T0)
        .unwrap();
    check(store);
    evicted.into_vec()
}

fn keys(evictions: &[Eviction]) -> Vec<&[u8]> {
    evictions.iter().map(|e| e.key.as_ref()).collect()
}

fn order(store: &Store) -> (Vec<Bytes>, Vec<Bytes>) {
    store.tiers().order()
}

fn names(list: &[&str]) -> Vec<Bytes> {
    list.iter().map(|s| b(s)).collect()
}

/// Checks the store's internal invariants: budget, byte counts, expiry index agreement.
fn check(store: &Store) {
    let entries = store.check_engine();
    assert!(store.bytes() <= store.budget(), "over budget");
    let sum: u64 = entries.iter().map(|(_, e)| e.size).sum();
    assert_eq!(sum, store.bytes());
    assert_eq!(entries.len(), store.len());
    let mut with_deadline = 0;
    for (key, entry) in &entries {
        assert_eq!(entry.size, entry_size(key.len(), entry.value.len()));
        if let Some(at) = entry.expires_at {
            with_deadline += 1;
            assert!(
                store.expiry.contains(at, entry.seq, key),
                "entry missing from expiry index"
            );
        }
    }
    assert_eq!(
        store.expiry.len(),
        with_deadline,
        "stale records in expiry index"
    );
    let stats = store.stats();
    assert_eq!(
        (stats.bytes, stats.entries),
        (store.bytes(), store.len() as u64)
    );
}

#[test]
fn entry_size_adds_overhead() {
    assert_eq!(entry_size(0, 0), ENTRY_OVERHEAD);
    assert_eq!(entry_size(3, 10), 13 + ENTRY_OVERHEAD);
    assert_eq!(entry_size(usize::MAX, usize::MAX), u64::MAX);
}

#[test]
fn config_is_validated() {
    let config = StoreConfig::new;
    assert!(matches!(
        Store::new(config(0, Policy::Lru)),
        Err(StoreError::InvalidConfig(_))
    ));
    // A budget that could hold 2^32 - 1 entries of the smallest charge is refused (entry
    // indices are 32-bit), whatever the policy.
    for policy in [Policy::TinyLfu, Policy::Lru, Policy::lru2()] {
        for budget in [MAX_STORE_BUDGET + 1, u64::MAX] {
            let err = Store::new(config(budget, policy)).expect_err("budget over the bound");
            assert!(
                matches!(&err, StoreError::InvalidConfig(m) if m.contains("per shard")),
                "{err}"
            );
        }
    }
    assert_eq!(
        (MAX_STORE_BUDGET + 1) / ENTRY_OVERHEAD,
        MAX_STORE_ENTRIES as u64
    );
    for bad in [0, 100, 255] {
        let policy = Policy::Lru2 {
            protected_percent: bad,
        };
        assert!(matches!(
            Store::new(config(10, policy)),
            Err(StoreError::InvalidConfig(_))
        ));
    }
    for good in [1, 50, 99] {
        assert!(Store::new(config(
            1,
            Policy::Lru2 {
                protected_percent: good
            }
        ))
        .is_ok());
    }
    assert_eq!(
        Policy::lru2(),
        Policy::Lru2 {
            protected_percent: DEFAULT_PROTECTED_PERCENT
        }
    );
    assert_eq!(Policy::lru2().protected_budget(1_000), Some(800));
    assert_eq!(
        Policy::Lru2 {
            protected_percent: 33
        }
        .protected_budget(10),
        Some(3)
    );
    assert_eq!(
        Policy::lru2().protected_budget(u64::MAX),
        Some(u64::MAX / 100 * 80 + 12)
    );
    let s = Store::new(config(5, Policy::Lru)).unwrap();
    assert!(s.is_empty());
    assert_eq!((s.len(), s.bytes(), s.budget()), (0, 0, 5));
}

#[test]
fn lru_evicts_least_recently_used_first() {
    let mut s = store(3, Policy::Lru);
    for k in ["a", "b", "c"] {
        assert!(put(&mut s, k).is_empty());
    }
    assert_eq!(s.bytes(), 3 * UNIT);
    assert!(s.get(b"a", T0).is_some());

    let evicted = put(&mut s, "d");
    assert_eq!(
        evicted,
        vec![Eviction {
            key: b("b"),
            bytes: UNIT,
            reason: EvictionReason::Capacity
        }]
    );
    assert_eq!(keys(&put(&mut s, "e")), vec![b"c"]);
    assert_eq!(keys(&put(&mut s, "f")), vec![b"a"]);
    assert_eq!(order(&s).0, names(&["d", "e", "f"]));
    assert_eq!(s.stats().evictions, 3);
}

#[test]
fn large_insert_evicts_several_in_order() {
    let mut s = store(4, Policy::Lru);
    for k in ["a", "b", "c", "d"] {
        put(&mut s, k);
    }
    s.get(b"a", T0);
    // Needs three units: evicts b, c, d (least recent first), keeps a.
    let evicted = s
        .insert(b("x"), value_for("x", 3 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"b", b"c", b"d"]);
    assert_eq!(order(&s).0, names(&["a", "x"]));
    assert_eq!(s.bytes(), 4 * UNIT);
}

#[test]
fn entry_of_exactly_budget_fits_and_evicts_the_rest() {
    let mut s = store(3, Policy::lru2());
    for k in ["a", "b"] {
        put(&mut s, k);
    }
    s.get(b"a", T0);
    let evicted = s
        .insert(b("x"), value_for("x", 3 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"b", b"a"]);
    assert_eq!((s.len(), s.bytes()), (1, 3 * UNIT));
}

#[test]
fn peek_changes_neither_recency_nor_stats() {
    let mut s = store(3, Policy::Lru);
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    let before = s.stats();
    assert_eq!(s.peek(b"a", T0).unwrap().value, value_for("a", UNIT));
    assert_eq!(s.peek(b"zz", T0), None);
    assert_eq!(s.stats(), before);
    assert_eq!(
        keys(&put(&mut s, "d")),
        vec![b"a"],
        "peek did not refresh a"
    );
}

#[test]
fn replace_counts_as_access_and_updates_accounting() {
    let mut s = store(3, Policy::Lru);
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    let evicted = s
        .insert(b("a"), Bytes::from_static(b"tiny"), Some(ts(50)), T0)
        .unwrap();
    check(&s);
    assert!(evicted.is_empty());
    assert_eq!(s.len(), 3);
    assert_eq!(s.bytes(), 2 * UNIT + entry_size(1, 4));
    let found = s.get(b"a", T0).unwrap();
    assert_eq!(
        found,
        Lookup {
            value: Bytes::from_static(b"tiny"),
            expires_at: Some(ts(50))
        }
    );
    assert_eq!(s.stats().inserts, 4);
    // a was refreshed by the replace, so b is the oldest.
    assert_eq!(keys(&put(&mut s, "d")), vec![b"b"]);

    // Replacing with no deadline drops the old deadline from the expiry index.
    s.insert(b("a"), value_for("a", UNIT), None, T0).unwrap();
    check(&s);
    assert!(s.sweep_expired(ts(1_000), 10).is_empty());
    assert!(s.get(b"a", ts(1_000)).is_some());
}

#[test]
fn insert_hashed_hands_back_the_replaced_value_and_the_evictions() {
    for policy in [Policy::Lru, Policy::lru2(), Policy::TinyLfu] {
        let mut s = store(2, policy);
        let hash = |s: &Store, key: &str| s.hash_key(key.as_bytes());
        let first = s
            .insert_hashed(b("a"), hash(&s, "a"), value_for("a", UNIT), None, T0)
            .unwrap();
        assert!(
            first.replaced.is_none() && first.evicted.is_empty(),
            "{policy:?}"
        );
        let newer = Bytes::from(vec![b'2'; 7]);
        let second = s
            .insert_hashed(b("a"), hash(&s, "a"), newer.clone(), None, T0)
            .unwrap();
        let replaced = second.replaced.as_ref().map(|old| old.value.clone());
        assert_eq!(replaced, Some(value_for("a", UNIT)), "{policy:?}");
        assert!(second.replaced_valid(T0));
        assert!(second.evicted.is_empty());
        assert_eq!(s.peek(b"a", T0).map(|l| l.value), Some(newer));
        put(&mut s, "b");
        let evicting = s
            .insert_hashed(b("c"), hash(&s, "c"), value_for("c", UNIT), None, T0)
            .unwrap();
        assert!(evicting.replaced.is_none());
        assert_eq!(evicting.evicted.len(), 1, "{policy:?}");
        check(&s);
    }
}

#[test]
fn growing_replace_evicts_others_never_itself() {
    let mut s = store(3, Policy::Lru);
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    let evicted = s
        .insert(b("a"), value_for("a", 3 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"b", b"c"]);
    assert_eq!((s.len(), s.bytes()), (1, 3 * UNIT));
    assert_eq!(s.stats().evictions, 2);
}

#[test]
fn too_large_insert_leaves_store_unchanged() {
    let mut s = store(2, Policy::lru2());
    put(&mut s, "a");
    s.get(b"a", T0);
    put(&mut s, "b");
    let (before_stats, before_order) = (s.stats(), order(&s));

    let value = value_for("a", 2 * UNIT + 1);
    let err = s.insert(b("a"), value.clone(), None, T0).unwrap_err();
    assert_eq!(
        err,
        StoreError::EntryTooLarge {
            size: 2 * UNIT + 1,
            budget: 2 * UNIT
        }
    );
    // Checked before expiry: an already-expired oversized insert does not remove `a` either.
    let err = s.insert(b("a"), value, Some(T0), T0).unwrap_err();
    assert!(matches!(err, StoreError::EntryTooLarge { .. }));
    check(&s);
    assert_eq!((s.stats(), order(&s)), (before_stats, before_order));
    assert_eq!(s.peek(b"a", T0).unwrap().value, value_for("a", UNIT));
}

#[test]
fn clear_drops_entries_keeps_counters() {
    let mut s = store(3, Policy::lru2());
    put(&mut s, "a");
    s.insert(b("e"), value_for("e", UNIT), Some(ts(5)), T0)
        .unwrap();
    s.get(b"a", T0);
    s.get(b"zz", T0);
    s.clear();
    check(&s);
    assert!(s.is_empty());
    let stats = s.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.inserts, stats.bytes),
        (1, 1, 2, 0)
    );
    assert!(s.sweep_expired(ts(10), 10).is_empty());
    put(&mut s, "a");
    assert_eq!(s.len(), 1);
    assert!(!s.is_empty());
    assert_eq!(s.policy(), Policy::lru2(), "not the default policy");
}

#[test]
fn retain_drops_rejected_keys_from_both_tiers_without_counting_evictions() {
    let mut s = store(10, Policy::lru2());
    for key in ["a1", "a2", "b1", "b2"] {
        put(&mut s, key);
    }
    s.get(b"a1", T0); // promoted to the protected tier
    s.get(b"b1", T0);
    let before = s.stats();
    let dropped = s.retain(|key| key.starts_with(b"a"));
    assert_eq!(dropped, 2);
    assert_eq!(s.len(), 2);
    assert_eq!(s.bytes(), 2 * UNIT);
    assert!(s.peek(b"a1", T0).is_some() && s.peek(b"a2", T0).is_some());
    assert!(s.peek(b"b1", T0).is_none() && s.peek(b"b2", T0).is_none());
    assert_eq!(s.stats().evictions, before.evictions);
    // The expiry index forgot them too: a sweep finds nothing to reclaim.
    assert!(s.sweep_expired(ts(u64::MAX), 10).is_empty());
}
