//! Hit ratios of LCache's policies against moka and quick_cache (not a timed benchmark).
//!
//! Prints a markdown table. Workloads, all from one fixed seed:
//! - **zipf**: requests for [`KEYS`] keys drawn Zipf(s = [`ZIPF_S`]);
//! - **zipf+scan**: the same requests with, after every [`SCAN_EVERY`] of them, a one-pass scan of
//!   [`SCAN_LEN`] keys never requested before or after. Only the Zipf requests are counted, so the
//!   column shows how much of the popular set survives the scans.
//!
//! Every miss is followed by an insert of the key (demand fill). The first [`WARMUP`] Zipf
//! requests fill the cache and are not counted. Every cache charges [`common::item_weight`] per
//! entry against the same byte budget, so all hold the same number of entries. For a policy
//! comparison the stores run unsharded: LCache with one shard, quick_cache with one shard, moka
//! (whose policy is global anyway) with `run_pending_tasks()` every [`MAINTAIN_EVERY`] requests,
//! since it applies admission and eviction asynchronously and would otherwise run over budget.
//!
//! Run with `cargo bench -p lcache-core --bench hit_ratio`. Under `cargo test` (no `--bench`
//! argument) it runs a tenth of the requests as a smoke test and checks that LRU2 resists the
//! scans better than LRU.

// Setup panics on impossible configurations, and printing the table is the point of this binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use lcache_core::store::Policy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use common::{item_weight, key, value, zipf_ids, BenchCache, Lcache, Moka, QuickCache, SEED};

/// Distinct keys of the Zipf workload.
const KEYS: u64 = 100_000;
/// Zipf exponent.
const ZIPF_S: f64 = 1.0;
/// Uncounted Zipf requests that fill the cache first.
const WARMUP: usize = 200_000;
/// Counted Zipf requests (a tenth of them under `cargo test`).
const REQUESTS: usize = 1_000_000;
/// Zipf requests between two scans.
const SCAN_EVERY: usize = 50_000;
/// Keys in one scan; each is requested exactly once.
const SCAN_LEN: u64 = 20_000;
/// Requests between two `run_pending_tasks()` of moka.
const MAINTAIN_EVERY: u64 = 1_000;
/// Cache sizes, in percent of the key space.
const SIZES_PERCENT: [u64; 2] = [5, 20];

/// The caches compared, one row each.
#[derive(Clone, Copy)]
enum Contender {
    LcacheTinyLfu,
    LcacheLru,
    LcacheLru2,
    Moka,
    QuickCache,
}

impl Contender {
    const ALL: [Contender; 5] = [
        Contender::LcacheTinyLfu,
        Contender::LcacheLru,
        Contender::LcacheLru2,
        Contender::Moka,
        Contender::QuickCache,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::LcacheTinyLfu => "TinyLFU (lcache, default)",
            Contender::LcacheLru => "LRU (lcache)",
            Contender::LcacheLru2 => "LRU2 (lcache, 80% protected)",
            Contender::Moka => "moka (TinyLFU)",
            Contender::QuickCache => "quick_cache (S3-FIFO-like)",
        }
    }

    /// Hit ratio of a fresh cache of `entries` entries on `ids` (see [`measure`]).
    fn hit_ratio(self, entries: u64, ids: &[u64], scans: bool) -> f64 {
        let budget = entries * item_weight();
        match self {
            Contender::LcacheTinyLfu => {
                measure(&Lcache::new(budget, Policy::TinyLfu, 1), ids, scans)
            }
            Contender::LcacheLru => measure(&Lcache::new(budget, Policy::Lru, 1), ids, scans),
            Contender::LcacheLru2 => measure(&Lcache::new(budget, Policy::lru2(), 1), ids, scans),
            Contender::Moka => measure(&Moka::new(budget), ids, scans),
            Contender::QuickCache => {
                let items = usize::try_from(entries).expect("fits usize");
                measure(&QuickCache::new(budget, items, Some(1)), ids, scans)
            }
        }
    }
}

/// Replays the Zipf `ids` (the first [`WARMUP`] uncounted) with demand fill, interleaving scans
/// if `scans`; returns hits / counted Zipf requests.
fn measure(cache: &impl BenchCache, ids: &[u64], scans: bool) -> f64 {
    let mut requests = 0_u64;
    let mut request = |id: u64| {
        let hit = cache.get(&key(id));
        if !hit {
            cache.insert(&key(id), &value(id));
        }
        requests += 1;
        if requests.is_multiple_of(MAINTAIN_EVERY) {
            cache.maintain();
        }
        hit
    };
    let (warmup, counted) = ids.split_at(WARMUP);
    for &id in warmup {
        request(id);
    }
    let mut next_scan_key = KEYS;
    let mut hits = 0_u64;
    for (i, &id) in counted.iter().enumerate() {
        if scans && i > 0 && i % SCAN_EVERY == 0 {
            for scan_id in next_scan_key..next_scan_key + SCAN_LEN {
                request(scan_id);
            }
            next_scan_key += SCAN_LEN;
        }
        hits += u64::from(request(id));
    }
    hits as f64 / counted.len() as f64
}

/// Hit ratio of a cache holding exactly the `entries` most popular keys: the best any policy can
/// do on independent Zipf requests without scans.
fn static_top_k(entries: u64) -> f64 {
    let weight = |rank: u64| (rank as f64).powf(-ZIPF_S);
    let top: f64 = (1..=entries).map(weight).sum();
    let all: f64 = (1..=KEYS).map(weight).sum();
    top / all
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not (then this is a smoke test). Filters
    // are not supported.
    let full = std::env::args().any(|arg| arg == "--bench");
    let requests = if full { REQUESTS } else { REQUESTS / 10 };
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let ids = zipf_ids(&mut rng, KEYS, ZIPF_S, WARMUP + requests);

    println!("## Hit ratio (demand fill)\n");
    println!(
        "seed {SEED:#x}; {KEYS} keys, Zipf s = {ZIPF_S}; {WARMUP} warm-up + {requests} counted \
         requests; values {} B, every entry charged {} B by every cache; zipf+scan: after every \
         {SCAN_EVERY} requests a one-pass scan of {SCAN_LEN} new keys, hits counted on the Zipf \
         requests only; moka: run_pending_tasks() every {MAINTAIN_EVERY} requests; lcache and \
         quick_cache unsharded (1 shard).\n",
        common::VALUE_LEN,
        item_weight(),
    );
    let mut header = String::from("| cache |");
    let mut rule = String::from("|---|");
    for pct in SIZES_PERCENT {
        header.push_str(&format!(" zipf {pct}% | zipf+scan {pct}% |"));
        rule.push_str("---:|---:|");
    }
    println!("{header}\n{rule}");
    let mut with_scans = Vec::new();
    for contender in Contender::ALL {
        let mut row = format!("| {} |", contender.label());
        for pct in SIZES_PERCENT {
            let entries = KEYS * pct / 100;
            for scans in [false, true] {
                let ratio = contender.hit_ratio(entries, &ids, scans);
                row.push_str(&format!(" {:.2}% |", ratio * 100.0));
                if scans {
                    with_scans.push((contender.label(), pct, ratio));
                }
            }
        }
        println!("{row}");
    }
    let mut row = String::from("| ideal: top-k keys pinned (IRM bound) |");
    for pct in SIZES_PERCENT {
        let bound = static_top_k(KEYS * pct / 100) * 100.0;
        row.push_str(&format!(" {bound:.2}% | {bound:.2}% |"));
    }
    println!("{row}");
    for pct in SIZES_PERCENT {
        let ratio = |label: &str| {
            with_scans
                .iter()
                .find(|(l, p, _)| *l == label && *p == pct)
                .map(|&(_, _, r)| r)
                .expect("every contender was measured")
        };
        let (lru, lru2) = (
            ratio(Contender::LcacheLru.label()),
            ratio(Contender::LcacheLru2.label()),
        );
        assert!(
            lru2 > lru,
            "LRU2 should resist scans better than LRU at {pct}%: {lru2:.4} <= {lru:.4}"
        );
    }
}
