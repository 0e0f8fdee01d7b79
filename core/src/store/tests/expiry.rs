//! Expiry: lazy on get, already-expired inserts, bounded earliest-first sweeps.

use super::*;

#[test]
fn already_expired_insert_removes_and_stores_nothing() {
    let mut s = store(3, Policy::Lru);
    put(&mut s, "a");
    let before = s.stats();
    let now = ts(100);
    for expires in [ts(100), ts(99)] {
        let evicted = s
            .insert(b("a"), value_for("a", UNIT), Some(expires), now)
            .unwrap();
        check(&s);
        assert!(evicted.is_empty());
        assert!(s.is_empty());
    }
    let after = s.stats();
    assert_eq!(
        (after.inserts, after.expirations, after.evictions),
        (before.inserts, 0, 0)
    );
}

#[test]
fn expiry_is_lazy_on_get() {
    for policy in [Policy::lru2(), Policy::TinyLfu] {
        let mut s = store(3, policy);
        s.insert(b("a"), value_for("a", UNIT), Some(ts(100)), T0)
            .unwrap();
        let hit = s.get(b"a", ts(99)).unwrap();
        assert_eq!(hit.expires_at, Some(ts(100)));
        assert_eq!(
            s.peek(b"a", ts(99)).map(|l| l.expires_at),
            Some(Some(ts(100)))
        );

        // Expired at its deadline: peek hides it without removing it...
        assert_eq!(s.peek(b"a", ts(100)), None, "{policy:?}");
        assert_eq!(s.len(), 1);
        // ...get removes it and counts an expiration and a miss.
        assert_eq!(s.get(b"a", ts(100)), None);
        check(&s);
        assert!(s.is_empty());
        let stats = s.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 1, 1));
        assert_eq!(s.get(b"a", ts(100)), None);
        assert_eq!((s.stats().misses, s.stats().expirations), (2, 1));
    }
}

#[test]
fn remove_reports_presence_including_expired() {
    let mut s = store(3, Policy::Lru);
    put(&mut s, "a");
    s.insert(b("e"), value_for("e", UNIT), Some(ts(10)), T0)
        .unwrap();
    let before = s.stats();
    assert!(s.remove(b"a"));
    assert!(!s.remove(b"a"));
    assert!(s.remove(b"e"), "expired but still present");
    check(&s);
    assert!(s.is_empty());
    assert_eq!(
        s.stats(),
        StoreStats {
            bytes: 0,
            entries: 0,
            ..before
        }
    );
}

#[test]
fn sweep_is_bounded_and_earliest_first() {
    let mut s = store(10, Policy::Lru);
    for (key, at) in [("d50", Some(50)), ("a10", Some(10)), ("c30", Some(30))] {
        s.insert(b(key), value_for(key, UNIT), at.map(ts), T0)
            .unwrap();
    }
    s.insert(b("b10"), value_for("b10", UNIT), Some(ts(10)), T0)
        .unwrap();
    put(&mut s, "forever");

    let first = s.sweep_expired(ts(40), 2);
    check(&s);
    let expected = |k: &str| Eviction {
        key: b(k),
        bytes: UNIT,
        reason: EvictionReason::Expired,
    };
    assert_eq!(
        first,
        vec![expected("a10"), expected("b10")],
        "ties in insertion order"
    );
    assert_eq!(s.sweep_expired(ts(40), 10), vec![expected("c30")]);
    assert!(s.sweep_expired(ts(40), 10).is_empty());
    assert!(s.sweep_expired(ts(100), 0).is_empty(), "max 0 does nothing");
    assert_eq!(s.len(), 2);
    assert_eq!(s.stats().expirations, 3);
    assert_eq!(
        keys(&s.sweep_expired(ts(u64::MAX), usize::MAX)),
        vec![b"d50"]
    );
    assert_eq!(order(&s).0, names(&["forever"]));
}

#[test]
fn sweep_follows_replaced_deadlines() {
    let mut s = store(10, Policy::lru2());
    s.insert(b("k"), value_for("k", UNIT), Some(ts(10)), T0)
        .unwrap();
    s.insert(b("j"), value_for("j", UNIT), Some(ts(20)), T0)
        .unwrap();
    s.insert(b("k"), value_for("k", UNIT), Some(ts(30)), T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&s.sweep_expired(ts(25), 10)), vec![b"j"]);
    assert_eq!(keys(&s.sweep_expired(ts(30), 10)), vec![b"k"]);
}

#[test]
fn capacity_eviction_of_expired_entry_is_capacity() {
    let mut s = store(2, Policy::Lru);
    s.insert(b("old"), value_for("old", UNIT), Some(ts(5)), T0)
        .unwrap();
    put(&mut s, "a");
    let evicted = s
        .insert(b("b"), value_for("b", UNIT), None, ts(10))
        .unwrap();
    check(&s);
    assert_eq!(
        evicted.into_vec(),
        vec![Eviction {
            key: b("old"),
            bytes: UNIT,
            reason: EvictionReason::Capacity
        }]
    );
    assert_eq!((s.stats().evictions, s.stats().expirations), (1, 0));
}
