//! Replays request traces (libCacheSim's oracleGeneral format) through LCache's store policies
//! and prints their hit ratios; `scripts/hit-ratio.sh` runs it next to libCacheSim on the same
//! files (not a timed benchmark).
//!
//! `cargo bench -p lcache-core --bench replay -- MANIFEST` reads MANIFEST, one trace a line:
//! `name<TAB>entries<TAB>path`, and prints `ratio<TAB>name<TAB>entries<TAB>policy<TAB>hit ratio`
//! for every policy, the default first. A trace file is a sequence of 24-byte little-endian
//! records (u32 time, u64 object id, u32 size, i64 next access); only the id is used. Every
//! request is a `get`; a miss inserts the key (demand fill). A cache of `entries` entries is a
//! one-shard store whose budget holds exactly `entries` entries of this workload (8-byte keys,
//! [`VALUE_LEN`]-byte values). Every request is counted.
//!
//! Under `cargo test` (no manifest) it replays two small synthetic traces instead and checks the
//! behaviours the policies promise: TinyLFU keeps most of a loop slightly larger than the cache
//! (LRU keeps none of it), and keeps the popular keys of a Zipf workload through scans better
//! than LRU.

// Setup panics on impossible configurations or unreadable input, and printing is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::time::Instant;

use bytes::Bytes;
use lcache_core::store::{entry_size, Policy, Store, StoreConfig};
use lcache_core::Timestamp;

/// Bytes of every value.
const VALUE_LEN: usize = 100;

/// Bytes of one oracleGeneral record.
const RECORD_LEN: usize = 24;

/// Time is irrelevant to these traces (no expiry); every call uses the epoch.
const NOW: Timestamp = Timestamp::from_millis(0);

/// The policies compared, the default first.
const POLICIES: [(&str, Policy); 3] = [
    ("TinyLFU", Policy::TinyLfu),
    ("LRU2", Policy::lru2()),
    ("LRU", Policy::Lru),
];

/// Hit ratio of a fresh store of `entries` entries under `policy` on the requests `ids`.
fn hit_ratio(policy: Policy, entries: u64, ids: &[u64]) -> f64 {
    static VALUE: [u8; VALUE_LEN] = [7; VALUE_LEN];
    let budget = entries * entry_size(8, VALUE_LEN);
    let mut store = Store::new(StoreConfig::new(budget, policy)).expect("valid store config");
    let value = Bytes::from_static(&VALUE);
    let mut hits = 0u64;
    for &id in ids {
        let key = id.to_be_bytes();
        if store.get(&key, NOW).is_some() {
            hits += 1;
        } else {
            store
                .insert(Bytes::copy_from_slice(&key), value.clone(), None, NOW)
                .expect("entry fits");
        }
    }
    hits as f64 / ids.len().max(1) as f64
}

/// The object ids of an oracleGeneral trace file.
fn read_trace(path: &str) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    assert!(
        bytes.len().is_multiple_of(RECORD_LEN),
        "{path}: not a whole number of {RECORD_LEN}-byte records"
    );
    bytes
        .chunks_exact(RECORD_LEN)
        .map(|record| u64::from_le_bytes(record[4..12].try_into().expect("8 bytes")))
        .collect()
}

fn replay_manifest(manifest: &str) {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|err| panic!("reading {manifest}: {err}"));
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, entries, path] = fields[..] else {
            panic!("{manifest}: expected name<TAB>entries<TAB>path, got {line:?}");
        };
        let entries: u64 = entries.parse().expect("entries is a number");
        let ids = read_trace(path);
        for (label, policy) in POLICIES {
            let start = Instant::now();
            let ratio = hit_ratio(policy, entries, &ids);
            println!("ratio\t{name}\t{entries}\t{label}\t{ratio:.6}");
            eprintln!(
                "{name} {entries} {label}: {:.2}% in {:.2}s",
                ratio * 100.0,
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// A small xorshift stream for the smoke test's synthetic traces.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn smoke_test() {
    // A loop over 110 keys with room for 100: LRU misses every request, TinyLFU keeps most keys.
    let looped: Vec<u64> = (0..20_000u64).map(|i| i % 110).collect();
    let (lfu, lru) = (
        hit_ratio(Policy::TinyLfu, 100, &looped),
        hit_ratio(Policy::Lru, 100, &looped),
    );
    println!("loop: TinyLFU {lfu:.3}, LRU {lru:.3}");
    assert_eq!(lru, 0.0);
    assert!(
        lfu > 0.8,
        "TinyLFU keeps a loop slightly larger than the cache: {lfu}"
    );

    // Skewed requests over 2,000 keys (a key's id is the smaller of two uniform draws, squared
    // skew) with a one-pass scan of 500 new keys every 2,000 requests; room for 100 keys.
    let mut state = 0x2545_f491_4f6c_dd1d;
    let mut ids = Vec::new();
    let mut fresh = 1_000_000;
    for i in 0..40_000 {
        if i % 2_000 == 1_000 {
            ids.extend(fresh..fresh + 500);
            fresh += 500;
        }
        let (a, b) = (xorshift(&mut state) % 2_000, xorshift(&mut state) % 2_000);
        ids.push((a * b) / 2_000);
    }
    let (lfu, lru) = (
        hit_ratio(Policy::TinyLfu, 100, &ids),
        hit_ratio(Policy::Lru, 100, &ids),
    );
    println!("skew+scan: TinyLFU {lfu:.3}, LRU {lru:.3}");
    assert!(
        lfu > lru,
        "TinyLFU resists scans better than LRU: {lfu} <= {lru}"
    );
}

fn main() {
    // `cargo bench` passes `--bench` before our arguments; `cargo test` passes no manifest.
    let manifest = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    match manifest {
        Some(manifest) => replay_manifest(&manifest),
        None => smoke_test(),
    }
}
