//! `Ring`: placement is a function of the member set, balanced, and moves few keys on change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use lcache_core::ring::DEFAULT_VNODES;
use lcache_core::{MemberId, Ring, RingConfig};
use proptest::prelude::*;

fn key(i: usize) -> String {
    format!("key-{i}")
}

/// The owner of each of the keys `key-0 .. key-{n-1}`.
fn owners(ring: &Ring, n: usize) -> Vec<MemberId> {
    (0..n)
        .map(|i| ring.owner(key(i).as_bytes()).unwrap().clone())
        .collect()
}

fn ring_of(ids: &[String], vnodes: u32) -> Ring {
    let mut ring = Ring::new(RingConfig { vnodes });
    ring.set_members(ids.iter().map(|id| (MemberId::new(id.as_str()), 1)))
        .unwrap();
    ring
}

/// Member ids of any shape, `#` included (the separator of virtual-node labels).
fn member_id() -> impl Strategy<Value = String> {
    "[a-z0-9#.:-]{1,12}"
}

fn distinct_ids(
    count: impl Into<prop::collection::SizeRange>,
) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(member_id(), count).prop_map(|set| set.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same member set gives the same owner for every key, however the ring was built:
    /// `set_members` in id order, `add` in a shuffled order, or through unrelated churn.
    #[test]
    fn owner_depends_only_on_the_member_set(
        (ids, shuffled) in distinct_ids(1..8)
            .prop_flat_map(|ids| (Just(ids.clone()), Just(ids).prop_shuffle())),
        strangers in distinct_ids(0..3),
        vnodes in 1u32..48,
        extra_keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..64),
        positions in prop::collection::vec(any::<u64>(), 0..64),
    ) {
        let reference = ring_of(&ids, vnodes);

        let mut added = Ring::new(RingConfig { vnodes });
        for id in &shuffled {
            added.add(MemberId::new(id.as_str()), 1).unwrap();
        }

        let mut churned = Ring::new(RingConfig { vnodes });
        for id in strangers.iter().chain(shuffled.iter().rev()) {
            churned.add(MemberId::new(id.as_str()), 3).unwrap();
        }
        for id in &strangers {
            if !ids.contains(id) {
                churned.remove(&MemberId::new(id.as_str()));
            }
        }
        for id in &ids {
            churned.add(MemberId::new(id.as_str()), 1).unwrap();
        }

        for ring in [&added, &churned] {
            prop_assert_eq!(ring.len(), ids.len());
            prop_assert_eq!(ring.point_count(), reference.point_count());
            prop_assert_eq!(owners(ring, 2_000), owners(&reference, 2_000));
            for k in &extra_keys {
                prop_assert_eq!(ring.owner(k), reference.owner(k));
            }
            for &p in &positions {
                prop_assert_eq!(ring.owner_at(p), reference.owner_at(p));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Ten members with the default vnodes: no member owns more than 1.25 times its fair share
    /// of 100 000 keys.
    #[test]
    fn default_vnodes_balance_ten_members(ids in distinct_ids(10)) {
        const KEYS: usize = 100_000;
        let ring = ring_of(&ids, DEFAULT_VNODES);
        let mut counts: BTreeMap<MemberId, usize> = BTreeMap::new();
        for owner in owners(&ring, KEYS) {
            *counts.entry(owner).or_default() += 1;
        }
        let max = counts.values().copied().max().unwrap_or(0) as f64;
        let mean = KEYS as f64 / ids.len() as f64;
        prop_assert!(max / mean <= 1.25, "max/mean {} for {:?}", max / mean, ids);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Adding an N-th member moves keys only to it, and about 1/N of them.
    #[test]
    fn adding_a_member_moves_about_one_nth_only_to_it(
        ids in distinct_ids(2..12),
        newcomer in member_id(),
    ) {
        const KEYS: usize = 20_000;
        prop_assume!(!ids.contains(&newcomer));
        let before = ring_of(&ids, DEFAULT_VNODES);
        let mut after = before.clone();
        after.add(MemberId::new(newcomer.as_str()), 1).unwrap();
        let n = after.len() as f64;
        let (b, a) = (owners(&before, KEYS), owners(&after, KEYS));
        let mut moved = 0usize;
        for (i, (old, new)) in b.iter().zip(&a).enumerate() {
            if old != new {
                prop_assert_eq!(new.as_str(), newcomer.as_str(), "key {} moved elsewhere", i);
                moved += 1;
            }
        }
        let share = moved as f64 / KEYS as f64;
        prop_assert!(
            (0.5 / n..=2.0 / n).contains(&share),
            "moved share {} with {} members", share, n
        );
    }

    /// Removing a member moves exactly its keys, to the remaining members.
    #[test]
    fn removing_a_member_moves_only_its_keys(
        ids in distinct_ids(2..12),
        which in any::<prop::sample::Index>(),
    ) {
        const KEYS: usize = 20_000;
        let gone = MemberId::new(ids[which.index(ids.len())].as_str());
        let before = ring_of(&ids, DEFAULT_VNODES);
        let mut after = before.clone();
        prop_assert!(after.remove(&gone));
        let (b, a) = (owners(&before, KEYS), owners(&after, KEYS));
        let remaining: BTreeSet<&str> = ids.iter().map(String::as_str).filter(|id| *id != gone.as_str()).collect();
        for (i, (old, new)) in b.iter().zip(&a).enumerate() {
            if *old == gone {
                prop_assert!(new != old && remaining.contains(new.as_str()), "key {}", i);
            } else {
                prop_assert_eq!(old, new, "key {} of a remaining member moved", i);
            }
        }
    }
}
