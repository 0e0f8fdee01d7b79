//! A long deterministic mixed workload checking invariants after every call.

use super::*;

/// A deterministic mixed workload (fixed xorshift seed) over both policies, checking every
/// invariant and the counters after each call.
#[test]
fn mixed_workload_keeps_invariants() {
    for policy in [
        Policy::TinyLfu,
        Policy::Lru,
        Policy::lru2(),
        Policy::Lru2 {
            protected_percent: 7,
        },
    ] {
        let mut s = Store::new(StoreConfig::new(2_000, policy)).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut gets, mut stored, mut evictions, mut expirations) = (0, 0, 0, 0);
        for step in 0..5_000u64 {
            let now = ts(step);
            let key = Bytes::from(format!("k{}", next() % 40));
            match next() % 6 {
                0..=2 => {
                    let value = Bytes::from(vec![0u8; usize::try_from(next() % 400).unwrap()]);
                    let expires_at = match next() % 3 {
                        0 => None,
                        _ => Some(ts(step + next() % 50)),
                    };
                    let before = s.bytes();
                    let result = s.insert(key.clone(), value, expires_at, now).unwrap();
                    if expires_at.is_some_and(|at| at <= now) {
                        assert!(result.is_empty() && s.peek(&key, now).is_none());
                        assert!(s.bytes() <= before);
                    } else {
                        stored += 1;
                        assert!(s.peek(&key, now).is_some(), "just stored");
                    }
                    for eviction in &result {
                        match eviction.reason {
                            EvictionReason::Capacity => evictions += 1,
                            // TinyLFU removes expired entries before choosing capacity victims.
                            EvictionReason::Expired => {
                                assert_eq!(policy, Policy::TinyLfu);
                                expirations += 1;
                            }
                        }
                    }
                }
                3 | 4 => {
                    gets += 1;
                    if let Some(found) = s.get(&key, now) {
                        assert!(found.expires_at.is_none_or(|at| at > now));
                    }
                }
                _ => {
                    let swept = s.sweep_expired(now, 3);
                    assert!(swept.len() <= 3);
                    expirations += swept.len() as u64;
                }
            }
            check(&s);
            let stats = s.stats();
            assert_eq!(stats.hits + stats.misses, gets);
            assert_eq!((stats.inserts, stats.evictions), (stored, evictions));
            assert!(stats.expirations >= expirations);
        }
        assert!(
            s.stats().evictions > 0 && s.stats().expirations > 0,
            "{policy:?}"
        );
    }
}
