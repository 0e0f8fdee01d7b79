//! `Store` against the naive `StoreModel`: random operation sequences, compared after every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use lcache_core::store::{entry_size, ENTRY_OVERHEAD};
use lcache_core::{Evictions, Policy, SharedGet, Store, StoreConfig, Timestamp};
use lcache_proptests::store_model::StoreModel;
use proptest::prelude::*;

/// Number of distinct keys operations draw from: small, so keys are reused, replaced and evicted.
const KEYS: usize = 9;

/// Key `i`: `k<i>` repeated 1 to 3 times, so keys differ in size too.
fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i}").repeat(1 + i % 3))
}

/// How large a value to insert.
#[derive(Debug, Clone, Copy)]
enum ValueSize {
    /// This many bytes.
    Small(usize),
    /// So that the entry costs `budget + delta` bytes (clamped at an empty value): probes the
    /// "fits exactly" and "too large" boundaries.
    NearBudget(i64),
}

/// When an inserted entry expires, relative to `now`.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    Never,
    /// `now + ms`; 0 means already expired.
    In(u64),
    /// `now - ms`: already expired.
    Ago(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    /// `get_shared`, falling back to `get` when it answers `Exclusive`.
    GetShared(usize),
    Peek(usize),
    Insert(usize, ValueSize, Expiry),
    Remove(usize),
    Sweep(usize),
    Advance(u64),
    /// `retain` keeping the keys whose bit is set.
    Retain(u16),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    op_over(KEYS, 160)
}

/// Operations on keys `0..keys` with small values up to `max_value` bytes.
fn op_over(keys: usize, max_value: usize) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    let size = prop_oneof![
        9 => (0usize..max_value).prop_map(ValueSize::Small),
        1 => (-30i64..=3).prop_map(ValueSize::NearBudget),
    ];
    let expiry = prop_oneof![
        4 => Just(Expiry::Never),
        5 => (0u64..40).prop_map(Expiry::In),
        1 => (1u64..20).prop_map(Expiry::Ago),
    ];
    prop_oneof![
        16 => k.clone().prop_map(Op::Get),
        8 => k.clone().prop_map(Op::GetShared),
        8 => k.clone().prop_map(Op::Peek),
        32 => (k.clone(), size, expiry).prop_map(|(k, s, e)| Op::Insert(k, s, e)),
        8 => k.prop_map(Op::Remove),
        4 => (0usize..4).prop_map(Op::Sweep),
        8 => (0u64..25).prop_map(Op::Advance),
        2 => any::<u16>().prop_map(Op::Retain),
        1 => Just(Op::Clear),
    ]
}

fn value_len(size: ValueSize, key_len: usize, budget: u64) -> usize {
    match size {
        ValueSize::Small(n) => n,
        ValueSize::NearBudget(delta) => {
            let target = budget as i64 + delta - ENTRY_OVERHEAD as i64 - key_len as i64;
            target.max(0) as usize
        }
    }
}

fn deadline(expiry: Expiry, now: u64) -> Option<Timestamp> {
    match expiry {
        Expiry::Never => None,
        Expiry::In(ms) => Some(Timestamp::from_millis(now + ms)),
        Expiry::Ago(ms) => Some(Timestamp::from_millis(now.saturating_sub(ms))),
    }
}

/// Runs `ops` on a real store and on the model, checking they agree after every step.
fn check_against_model(budget: u64, policy: Policy, ops: &[Op]) -> Result<(), TestCaseError> {
    check_seeded(budget, policy, 0, KEYS, ops)
}

/// [`check_against_model`] for a store with hash seed `seed` and keys `0..keys`.
fn check_seeded(
    budget: u64,
    policy: Policy,
    seed: u64,
    keys: usize,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let config = StoreConfig {
        hash_seed: seed,
        ..StoreConfig::new(budget, policy)
    };
    let mut store = Store::new(config).unwrap();
    let mut model = StoreModel::with_seed(budget, policy, seed);
    let mut now_ms = 1_000u64;
    for (step, op) in ops.iter().enumerate() {
        let now = Timestamp::from_millis(now_ms);
        match *op {
            Op::Get(k) => {
                let got = store.get(&key(k), now);
                prop_assert_eq!(&got, &model.get(&key(k), now), "step {}: get", step);
                if let Some(lookup) = &got {
                    prop_assert!(lookup.expires_at.is_none_or(|at| at > now), "expired hit");
                }
            }
            Op::GetShared(k) => {
                let shared = store.get_shared(&key(k), now);
                prop_assert_eq!(&shared, &model.get_shared(&key(k), now), "step {}", step);
                if shared == SharedGet::Exclusive {
                    let got = store.get(&key(k), now);
                    prop_assert_eq!(&got, &model.get(&key(k), now), "step {}: get", step);
                }
                if policy.shared_hits() {
                    prop_assert!(
                        shared != SharedGet::Exclusive || store.peek(&key(k), now).is_none()
                    );
                }
            }
            Op::Peek(k) => {
                prop_assert_eq!(
                    store.peek(&key(k), now),
                    model.peek(&key(k), now),
                    "step {}: peek",
                    step
                );
            }
            Op::Insert(k, size, expiry) => {
                let key = key(k);
                let len = value_len(size, key.len(), budget);
                // The step number in the value tells inserts apart.
                let mut value = vec![b'v'; len];
                for (byte, digit) in value.iter_mut().zip(step.to_le_bytes()) {
                    *byte = digit;
                }
                let value = Bytes::from(value);
                let at = deadline(expiry, now_ms);
                let got = store
                    .insert(key.clone(), value.clone(), at, now)
                    .map(Evictions::into_vec);
                let want = model.insert(key, value, at, now);
                prop_assert_eq!(got, want, "step {}: insert", step);
            }
            Op::Remove(k) => {
                prop_assert_eq!(
                    store.remove(&key(k)),
                    model.remove(&key(k)),
                    "step {}: remove",
                    step
                );
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
                let keep = |k: &[u8]| (0..keys).any(|i| mask & (1 << (i % 16)) != 0 && key(i) == k);
                prop_assert_eq!(
                    store.retain(keep),
                    model.retain(keep),
                    "step {}: retain",
                    step
                );
            }
            Op::Clear => {
                store.clear();
                model.clear();
            }
        }
        let now = Timestamp::from_millis(now_ms);
        prop_assert_eq!(store.stats(), model.stats(), "step {}: stats", step);
        prop_assert!(store.bytes() <= budget, "step {}: over budget", step);
        prop_assert_eq!(store.len(), model.len());
        for k in 0..keys {
            let seen = store.peek(&key(k), now);
            prop_assert_eq!(&seen, &model.peek(&key(k), now), "step {}: contents", step);
            if let Some(lookup) = seen {
                prop_assert!(lookup.expires_at.is_none_or(|at| at > now));
            }
        }
    }
    // The model's own bookkeeping agrees with entry_size.
    for (key_len, value_len, size) in model.entry_sizes() {
        prop_assert_eq!(size, entry_size(key_len, value_len));
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..250)
}

/// Budgets from about two to about fifteen typical entries.
fn budget() -> impl Strategy<Value = u64> {
    130u64..1_500
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn lru_store_matches_model(budget in budget(), ops in ops()) {
        check_against_model(budget, Policy::Lru, &ops)?;
    }

    #[test]
    fn tinylfu_store_matches_model(budget in budget(), seed in any::<u64>(), ops in ops()) {
        check_seeded(budget, Policy::TinyLfu, seed, KEYS, &ops)?;
    }

    #[test]
    fn lru2_store_matches_model(
        budget in budget(),
        protected_percent in prop::sample::select(&[1u8, 10, 25, 50, 80, 99][..]),
        ops in ops(),
    ) {
        check_against_model(budget, Policy::Lru2 { protected_percent }, &ops)?;
    }
}

/// Keys of the large-store test: enough that the 1 % window holds several entries.
const MANY_KEYS: usize = 300;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A store large enough for the TinyLFU window to hold several entries (second chances,
    /// several candidates per insert), over many keys, with a skew towards a few hot keys.
    #[test]
    fn tinylfu_large_store_matches_model(
        budget in 7_000u64..20_000,
        seed in any::<u64>(),
        ops in prop::collection::vec(
            prop_oneof![
                3 => op_over(MANY_KEYS, 24),
                2 => op_over(12, 24),
            ],
            200..1_500,
        ),
    ) {
        check_seeded(budget, Policy::TinyLfu, seed, MANY_KEYS, &ops)?;
    }
}

/// Operations of a demand-filled cache that churns: reads and fills over `keys` keys, a few of
/// them hot, values without deadlines, time moving on.
fn churn_op(keys: usize) -> impl Strategy<Value = Op> {
    let fill =
        (0..keys, 0usize..24).prop_map(|(k, n)| Op::Insert(k, ValueSize::Small(n), Expiry::Never));
    prop_oneof![
        4 => (0..keys).prop_map(Op::Get),
        3 => (0usize..6).prop_map(Op::Get),
        2 => (0usize..6).prop_map(Op::GetShared),
        4 => fill,
        1 => (0u64..25).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A store a fraction of its key space churns long enough for evicted keys to come back
    /// (which moves the dead horizon) and for keys seen several times to go idle past it: the
    /// dead rules and the reuse-gap admission are exercised.
    #[test]
    fn tinylfu_churning_store_matches_model(
        budget in 1_500u64..4_000,
        seed in any::<u64>(),
        ops in prop::collection::vec(churn_op(24), 4_000..8_000),
    ) {
        check_seeded(budget, Policy::TinyLfu, seed, 24, &ops)?;
    }
}
