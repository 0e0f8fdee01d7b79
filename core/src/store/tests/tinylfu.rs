//! Behaviour tests of [`Policy::TinyLfu`]: admission by frequency (scans and loops), shared reads,
//! expired entries removed before capacity victims, and the bound on the sketch.

use super::*;

fn lfu(budget_units: u64) -> Store {
    store(budget_units, Policy::TinyLfu)
}

/// Requests `key` with demand fill; returns whether it was a hit.
fn request(store: &mut Store, key: &str) -> bool {
    if store.get(key.as_bytes(), T0).is_some() {
        return true;
    }
    put(store, key);
    false
}

#[test]
fn popular_keys_survive_a_scan() {
    let mut s = lfu(50);
    let hot: Vec<String> = (0..20).map(|i| format!("hot{i}")).collect();
    for _ in 0..20 {
        for key in &hot {
            request(&mut s, key);
        }
    }
    // A scan ten times the store's size (a much longer one would make the popular keys idle for
    // long enough to lose their history, by design).
    for i in 0..500 {
        request(&mut s, &format!("scan{i}"));
    }
    let kept = hot
        .iter()
        .filter(|k| s.peek(k.as_bytes(), T0).is_some())
        .count();
    // The sketch is approximate (a collision can cost a key); nearly all must survive.
    assert!(
        kept * 10 >= hot.len() * 9,
        "a one-pass scan evicted {} of {} popular keys",
        hot.len() - kept,
        hot.len()
    );
    // Under LRU the same scan flushes every popular key.
    let mut lru = store(50, Policy::Lru);
    for key in &hot {
        request(&mut lru, key);
    }
    for i in 0..500 {
        request(&mut lru, &format!("scan{i}"));
    }
    assert!(hot.iter().all(|k| lru.peek(k.as_bytes(), T0).is_none()));
}

#[test]
fn a_loop_slightly_larger_than_the_store_keeps_hitting() {
    let mut s = lfu(100);
    let mut hits = 0;
    for round in 0..50 {
        for i in 0..110 {
            let hit = request(&mut s, &format!("loop{i}"));
            if round >= 10 {
                hits += u32::from(hit);
            }
        }
    }
    // LRU would hit never; keeping a fixed subset hits 100 / 110 at best.
    assert!(hits > 40 * 85, "{hits} hits of {}", 40 * 110);
}

#[test]
fn shared_reads_count_and_leave_expired_entries_to_exclusive_access() {
    let mut s = lfu(10);
    s.insert(b("a"), value_for("a", UNIT), None, T0).unwrap();
    s.insert(b("old"), value_for("old", UNIT), Some(ts(5)), T0)
        .unwrap();
    match s.get_shared(b"a", ts(1)) {
        SharedGet::Hit(lookup) => assert_eq!(lookup.value, value_for("a", UNIT)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get_shared(b"nope", ts(1)), SharedGet::Miss);
    assert!(matches!(s.get_shared(b"old", ts(4)), SharedGet::Hit(_)));
    assert_eq!(s.get_shared(b"old", ts(5)), SharedGet::Exclusive);
    let stats = s.stats();
    assert_eq!((stats.hits, stats.misses, stats.expirations), (2, 1, 0));
    assert_eq!(s.len(), 2, "the expired entry is still there");
    assert_eq!(s.get(b"old", ts(5)), None);
    let stats = s.stats();
    assert_eq!((stats.misses, stats.expirations, stats.entries), (2, 1, 1));
    check(&s);

    // LRU and LRU2 must move an entry on a hit, so they ask for exclusive access.
    for policy in [Policy::Lru, Policy::lru2()] {
        let mut s = store(10, policy);
        put(&mut s, "a");
        assert_eq!(s.get_shared(b"a", T0), SharedGet::Exclusive);
        assert_eq!(s.get_shared(b"b", T0), SharedGet::Miss);
        assert_eq!((s.stats().hits, s.stats().misses), (0, 1));
    }
    assert!(Policy::TinyLfu.shared_hits() && !Policy::Lru.shared_hits());
    assert_eq!(Policy::default(), Policy::TinyLfu);
}

#[test]
fn expired_entries_go_before_capacity_victims() {
    let mut s = lfu(4);
    for key in ["a", "b", "c"] {
        s.insert(b(key), value_for(key, UNIT), None, T0).unwrap();
    }
    s.insert(b("x"), value_for("x", UNIT), Some(ts(10)), T0)
        .unwrap();
    check(&s);
    let evicted = s
        .insert(b("d"), value_for("d", UNIT), None, ts(10))
        .unwrap();
    assert_eq!(
        evicted.into_vec(),
        vec![Eviction {
            key: b("x"),
            bytes: UNIT,
            reason: EvictionReason::Expired,
        }]
    );
    assert_eq!((s.stats().expirations, s.stats().evictions), (1, 0));
    for key in ["a", "b", "c", "d"] {
        assert!(s.peek(key.as_bytes(), ts(10)).is_some(), "{key}");
    }
    check(&s);
}

#[test]
fn a_store_exactly_at_its_budget_evicts_nothing_not_even_an_expired_entry() {
    let mut s = lfu(2);
    s.insert(b("x"), value_for("x", UNIT), Some(ts(10)), T0)
        .unwrap();
    put(&mut s, "a");
    assert_eq!(s.bytes(), s.budget());
    // Replacing `a` with a value of the same size keeps the store at its budget: nothing goes,
    // and the expired `x` waits for a sweep or a read.
    let evicted = s
        .insert(b("a"), value_for("a", UNIT), None, ts(20))
        .unwrap();
    assert!(evicted.is_empty());
    assert_eq!((s.len(), s.stats().expirations), (2, 0));
    check(&s);
}

#[test]
fn the_entry_just_stored_is_never_its_own_victim() {
    // Entries far larger than the 1 % window, and one that takes the whole budget.
    let mut s = lfu(5);
    for i in 0..50 {
        let key = format!("k{i}");
        put(&mut s, &key);
        assert!(
            s.peek(key.as_bytes(), T0).is_some(),
            "{key} was dropped at once"
        );
    }
    let whole = value_for("big", 5 * UNIT);
    let evicted = s.insert(b("big"), whole, None, T0).unwrap();
    assert_eq!(evicted.len(), 5);
    assert_eq!((s.len(), s.bytes()), (1, 5 * UNIT));
    check(&s);
    // Replacing a popular entry with a larger value keeps it too.
    for _ in 0..5 {
        s.get(b"big", T0);
    }
    let evicted = s
        .insert(b("big"), value_for("big", 4 * UNIT), None, T0)
        .unwrap();
    assert!(evicted.is_empty());
    put(&mut s, "small");
    assert!(s.peek(b"small", T0).is_some());
    check(&s);
}

#[test]
fn sketch_stays_within_its_share_of_the_budget() {
    // Tiny entries: the sketch would want 16 bytes per entry; it is capped at budget / 16.
    let budget = 64 * 1_000;
    let mut s = Store::new(StoreConfig::new(budget, Policy::TinyLfu)).unwrap();
    for i in 0..5_000u32 {
        s.insert(
            Bytes::from(i.to_be_bytes().to_vec()),
            Bytes::new(),
            None,
            T0,
        )
        .unwrap();
    }
    assert!(s.len() as u64 > budget / crate::store::entry_size(4, 0) * 9 / 10);
    // The sketch (at most budget / 16) plus the ghost (about 21 bytes per entry held).
    let overhead = s.policy_overhead_bytes() as u64;
    let ghost_bound = 24 * s.len() as u64;
    assert!(
        overhead > 0 && overhead <= budget / 16 + ghost_bound,
        "{overhead}"
    );
    assert_eq!(store(10, Policy::Lru).policy_overhead_bytes(), 0);
    check(&s);
}

#[test]
fn same_calls_same_results_and_seed_changes_only_collisions() {
    let run = |seed: u64| {
        let mut s = Store::new(StoreConfig {
            hash_seed: seed,
            ..StoreConfig::new(30 * UNIT, Policy::TinyLfu)
        })
        .unwrap();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut evicted = Vec::new();
        for _ in 0..3_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = format!("k{}", (state % 97) * (state % 7) / 6);
            if s.get(key.as_bytes(), T0).is_none() {
                evicted.extend(put(&mut s, &key).into_iter().map(|e| e.key));
            }
        }
        (evicted, s.stats())
    };
    assert_eq!(run(1), run(1));
    let (a, b) = (run(1).1, run(2).1);
    assert_eq!(a.hits + a.misses, b.hits + b.misses);
}
