//! Throughput of the sharded store against moka and quick_cache on a mixed Zipf workload.
//!
//! Workload: [`KEYS`] keys drawn Zipf(s = [`ZIPF_S`]), values of 100 bytes, a byte budget that
//! holds half the key space, 90% gets (a miss is followed by an insert, demand fill) and 10%
//! unconditional inserts. The op sequence is generated once from a fixed seed; each cache is
//! warmed with one pass before measuring. An "element" is one op of the sequence (a get, a get
//! plus its fill, or an insert). The 2-thread variants split the sequence into two halves that
//! run at once on the same cache.
//!
//! Benchmarks are named `store_mixed/<threads>t/<cache>`.
//!
//! Before them (under `cargo bench`, with no filter or one matching `paired`), a paired run
//! prints the ratio that decides the store's goal, TinyLFU / quick_cache, in a form that holds on
//! a noisy machine: the two caches run alternately, [`PAIRED_ROUNDS`] rounds of [`PAIRED_PASSES`]
//! passes each, and the ratio is taken round by round, so a drift of the machine's speed moves
//! both sides of a ratio alike. It prints the median and the spread of the rounds' ratios.
//!
//! With `LCACHE_THROUGHPUT_PROFILE=lcache_tinylfu` (or `quick_cache`) it runs one cache's passes
//! without timing them, for an instruction count that does not depend on the machine's load:
//! `LCACHE_THROUGHPUT_PROFILE=lcache_tinylfu valgrind --tool=callgrind
//! --toggle-collect='*measured_passes*' target/release/deps/throughput-<hash>` (instructions
//! per op = the total / 300,000).

// Benchmark setup panics on impossible configurations; that is the right failure in a bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use lcache_core::sharded::DEFAULT_SHARDS;
use lcache_core::store::Policy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::{item_weight, key, value, zipf_ids, BenchCache, Lcache, Moka, QuickCache, SEED};

/// Distinct keys of the workload.
const KEYS: u64 = 100_000;
/// Zipf exponent.
const ZIPF_S: f64 = 1.0;
/// Ops in one pass of the sequence (one criterion iteration).
const OPS: usize = 100_000;
/// Share of ops that are unconditional inserts.
const INSERT_SHARE: f64 = 0.10;

/// One pre-generated operation.
#[derive(Clone, Copy)]
struct Op {
    /// Index into the key and value tables.
    id: u32,
    /// An unconditional insert; otherwise a get with fill on miss.
    insert: bool,
}

/// Keys, values and the op sequence, generated once.
struct Workload {
    keys: Vec<bytes::Bytes>,
    values: Vec<bytes::Bytes>,
    ops: Vec<Op>,
}

impl Workload {
    fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let ids = zipf_ids(&mut rng, KEYS, ZIPF_S, OPS);
        let ops = ids
            .into_iter()
            .map(|id| Op {
                id: u32::try_from(id).expect("KEYS fits u32"),
                insert: rng.random_bool(INSERT_SHARE),
            })
            .collect();
        Workload {
            keys: (0..KEYS).map(key).collect(),
            values: (0..KEYS).map(value).collect(),
            ops,
        }
    }

    /// Byte budget holding half the key space.
    fn budget(&self) -> u64 {
        KEYS / 2 * item_weight()
    }

    /// Runs `ops` against `cache`; returns the hit count so the work cannot be optimised away.
    fn run(&self, cache: &impl BenchCache, ops: &[Op]) -> u64 {
        let mut hits = 0;
        for op in ops {
            let i = op.id as usize;
            let (k, v) = (&self.keys[i], &self.values[i]);
            if op.insert {
                cache.insert(k, v);
            } else if cache.get(k) {
                hits += 1;
            } else {
                cache.insert(k, v);
            }
        }
        hits
    }

    /// Wall time of `iters` passes, the sequence split evenly over `threads` threads.
    fn time(&self, cache: &impl BenchCache, threads: usize, iters: u64) -> Duration {
        let chunk = self.ops.len().div_ceil(threads);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for ops in self.ops.chunks(chunk) {
                scope.spawn(move || {
                    for _ in 0..iters {
                        black_box(self.run(cache, ops));
                    }
                });
            }
        });
        start.elapsed()
    }
}

/// One benchmark: warm the cache with a pass, then time passes.
fn bench_cache(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    workload: &Workload,
    threads: usize,
    name: &str,
    cache: &impl BenchCache,
) {
    workload.run(cache, &workload.ops);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| workload.time(cache, threads, iters));
    });
}

fn store_mixed(c: &mut Criterion) {
    let workload = Workload::new();
    let budget = workload.budget();
    let items = (KEYS / 2) as usize;
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("store_mixed/{threads}t"));
        group.throughput(Throughput::Elements(OPS as u64));
        let tinylfu = Lcache::new(budget, Policy::TinyLfu, DEFAULT_SHARDS);
        bench_cache(&mut group, &workload, threads, "lcache_tinylfu", &tinylfu);
        drop(tinylfu);
        let lru = Lcache::new(budget, Policy::Lru, DEFAULT_SHARDS);
        bench_cache(&mut group, &workload, threads, "lcache_lru", &lru);
        drop(lru);
        let lru2 = Lcache::new(budget, Policy::lru2(), DEFAULT_SHARDS);
        bench_cache(&mut group, &workload, threads, "lcache_lru2", &lru2);
        drop(lru2);
        let moka = Moka::new(budget);
        bench_cache(&mut group, &workload, threads, "moka", &moka);
        drop(moka);
        let quick = QuickCache::new(budget, items, None);
        bench_cache(&mut group, &workload, threads, "quick_cache", &quick);
        drop(quick);
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // 10 benchmarks of ~5 s each on a 2-core machine: well under a minute in all.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = store_mixed
}
/// Rounds of the paired run (each gives one ratio).
const PAIRED_ROUNDS: usize = 41;
/// Passes of the op sequence per cache and round.
const PAIRED_PASSES: u64 = 3;

/// The paired TinyLFU / quick_cache throughput ratio at 1 and 2 threads (see the module docs).
fn paired_ratios(workload: &Workload) {
    let budget = workload.budget();
    let items = (KEYS / 2) as usize;
    for threads in [1, 2] {
        let tinylfu = Lcache::new(budget, Policy::TinyLfu, DEFAULT_SHARDS);
        let quick = QuickCache::new(budget, items, None);
        workload.run(&tinylfu, &workload.ops);
        workload.run(&quick, &workload.ops);
        let mut ratios: Vec<f64> = (0..PAIRED_ROUNDS)
            .map(|round| {
                // Alternate which goes first, so neither always runs on a warmer machine.
                let (ours, theirs) = if round % 2 == 0 {
                    let ours = workload.time(&tinylfu, threads, PAIRED_PASSES);
                    (ours, workload.time(&quick, threads, PAIRED_PASSES))
                } else {
                    let theirs = workload.time(&quick, threads, PAIRED_PASSES);
                    (workload.time(&tinylfu, threads, PAIRED_PASSES), theirs)
                };
                theirs.as_secs_f64() / ours.as_secs_f64()
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "paired store_mixed/{threads}t lcache_tinylfu / quick_cache throughput: median {:.2} \
             (rounds {PAIRED_ROUNDS}, min {:.2}, max {:.2})",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

/// The passes a [`PROFILE_ENV`] run measures: a function of its own, so that
/// `valgrind --tool=callgrind --toggle-collect='*measured_passes*'` counts only them.
#[inline(never)]
fn measured_passes(workload: &Workload, cache: &impl BenchCache) {
    for _ in 0..PROFILE_PASSES {
        black_box(workload.run(cache, &workload.ops));
    }
}

/// Environment variable that turns the bench into a profiling run of one cache
/// (`lcache_tinylfu` or `quick_cache`): one warm-up pass, then [`PROFILE_PASSES`] passes in
/// [`measured_passes`], no timing. Counting instructions this way (callgrind) gives the same
/// figure on every run, where times on this shared machine move by tens of percent.
const PROFILE_ENV: &str = "LCACHE_THROUGHPUT_PROFILE";
/// Passes of a profiling run after its warm-up.
const PROFILE_PASSES: usize = 3;

/// A profiling run (see [`PROFILE_ENV`]).
fn profile(cache: &str) {
    let workload = Workload::new();
    let budget = workload.budget();
    match cache {
        "lcache_tinylfu" => {
            let tinylfu = Lcache::new(budget, Policy::TinyLfu, DEFAULT_SHARDS);
            workload.run(&tinylfu, &workload.ops);
            measured_passes(&workload, &tinylfu);
        }
        "quick_cache" => {
            let quick = QuickCache::new(budget, (KEYS / 2) as usize, None);
            workload.run(&quick, &workload.ops);
            measured_passes(&workload, &quick);
        }
        other => panic!("{PROFILE_ENV}={other}: expected lcache_tinylfu or quick_cache"),
    }
}

fn main() {
    if let Ok(cache) = std::env::var(PROFILE_ENV) {
        profile(&cache);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if benchmarking && filter.is_none_or(|f| "paired".contains(f.as_str())) {
        paired_ratios(&Workload::new());
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
