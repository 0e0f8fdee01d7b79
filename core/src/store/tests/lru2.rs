//! LRU2: promotion, demotion, victim choice, scan resistance.

use super::*;

#[test]
fn lru2_second_access_promotes() {
    let mut s = store(10, Policy::lru2());
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    assert_eq!(order(&s), (names(&["a", "b", "c"]), vec![]));
    s.get(b"b", T0);
    assert_eq!(order(&s), (names(&["a", "c"]), names(&["b"])));
    s.get(b"a", T0);
    s.get(b"b", T0);
    assert_eq!(order(&s), (names(&["c"]), names(&["a", "b"])));
    // A replace is an access too: it promotes c.
    put(&mut s, "c");
    assert_eq!(order(&s), (vec![], names(&["a", "b", "c"])));
}

#[test]
fn lru2_demotes_protected_overflow_to_probation_front() {
    // Budget 5 units, protected 40% = 2 units.
    let mut s = store(
        5,
        Policy::Lru2 {
            protected_percent: 40,
        },
    );
    for k in ["a", "b", "c", "d"] {
        put(&mut s, k);
    }
    for k in ["a", "b", "c"] {
        s.get(k.as_bytes(), T0);
        check(&s);
    }
    // c's promotion pushed a (protected LRU) back to probation's MRU end.
    assert_eq!(order(&s), (names(&["d", "a"]), names(&["b", "c"])));
    assert_eq!(s.stats().evictions, 0, "demotion is not eviction");
    // Probation LRU goes first: d, then a.
    assert!(put(&mut s, "e").is_empty());
    assert_eq!(keys(&put(&mut s, "f")), vec![b"d"]);
    assert_eq!(keys(&put(&mut s, "g")), vec![b"a"]);
    assert_eq!(order(&s).1, names(&["b", "c"]));
}

#[test]
fn lru2_single_protected_entry_may_exceed_protected_budget() {
    // Protected budget 1% of 3 units = 3 bytes: smaller than any entry.
    let mut s = store(
        3,
        Policy::Lru2 {
            protected_percent: 1,
        },
    );
    put(&mut s, "a");
    put(&mut s, "b");
    s.get(b"a", T0);
    assert_eq!(order(&s), (names(&["b"]), names(&["a"])));
    s.get(b"b", T0);
    check(&s);
    assert_eq!(order(&s), (names(&["a"]), names(&["b"])));
}

#[test]
fn lru2_scan_does_not_evict_protected_entries() {
    let mut s = store(10, Policy::lru2());
    let hot = ["h0", "h1", "h2", "h3", "h4", "h5"];
    for k in hot {
        put(&mut s, k);
        s.get(k.as_bytes(), T0);
    }
    for i in 0..1_000 {
        let evicted = put(&mut s, &format!("scan{i}"));
        assert!(
            evicted.iter().all(|e| e.key.starts_with(b"scan")),
            "{evicted:?}"
        );
    }
    for k in hot {
        assert!(
            s.get(k.as_bytes(), T0).is_some(),
            "{k} was flushed by the scan"
        );
    }
    assert_eq!(s.stats().evictions, 1_000 - 4);

    // The same scan flushes a plain LRU store.
    let mut plain = store(10, Policy::Lru);
    for k in hot {
        put(&mut plain, k);
        plain.get(k.as_bytes(), T0);
    }
    for i in 0..20 {
        put(&mut plain, &format!("scan{i}"));
    }
    assert!(hot.iter().all(|k| plain.peek(k.as_bytes(), T0).is_none()));
}

#[test]
fn lru2_victim_comes_from_protected_when_probation_holds_only_the_new_entry() {
    // Budget 4 units, protected 75% = 3 units.
    let mut s = store(
        4,
        Policy::Lru2 {
            protected_percent: 75,
        },
    );
    for k in ["a", "b", "c"] {
        put(&mut s, k);
        s.get(k.as_bytes(), T0);
    }
    assert_eq!(order(&s), (vec![], names(&["a", "b", "c"])));
    // Probation holds only the new entry: protected's LRU a goes.
    let evicted = s
        .insert(b("big"), value_for("big", 2 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"a"]);
    assert_eq!(order(&s), (names(&["big"]), names(&["b", "c"])));
    // Probation holds more: its LRU big goes.
    assert_eq!(keys(&put(&mut s, "n")), vec![b"big"]);
    // Probation's n first, then (probation holding only x) protected's LRU b.
    let evicted = s
        .insert(b("x"), value_for("x", 3 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"n", b"b"]);
    assert_eq!(order(&s), (names(&["x"]), names(&["c"])));
}

#[test]
fn lru2_growing_replace_in_protected_evicts_probation_first() {
    let mut s = store(
        4,
        Policy::Lru2 {
            protected_percent: 50,
        },
    );
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    s.get(b"a", T0);
    // a grows to two units (its own protected budget) and stays protected.
    let evicted = s
        .insert(b("a"), value_for("a", 2 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert!(evicted.is_empty());
    assert_eq!(order(&s), (names(&["b", "c"]), names(&["a"])));
    let evicted = s
        .insert(b("a"), value_for("a", 4 * UNIT), None, T0)
        .unwrap();
    check(&s);
    assert_eq!(keys(&evicted), vec![b"b", b"c"]);
    assert_eq!(order(&s), (vec![], names(&["a"])));
}

#[test]
fn lru2_reading_an_expired_probation_entry_moves_no_other_entry() {
    // Budget 5 units, protected 40% = 2 units, already full.
    let mut s = store(
        5,
        Policy::Lru2 {
            protected_percent: 40,
        },
    );
    for k in ["a", "b", "c"] {
        put(&mut s, k);
    }
    s.insert(b("x"), value_for("x", UNIT), Some(ts(10)), T0)
        .unwrap();
    s.get(b"a", T0);
    s.get(b"b", T0);
    assert_eq!(order(&s), (names(&["c", "x"]), names(&["a", "b"])));
    // An expired x is removed; it is not promoted first, which would push a back to probation.
    assert!(s.get(b"x", ts(10)).is_none());
    assert_eq!(order(&s), (names(&["c"]), names(&["a", "b"])));
    assert_eq!(s.stats().expirations, 1);
    check(&s);
}
