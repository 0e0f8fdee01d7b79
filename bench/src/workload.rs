//! What the load generator sends: scenarios (key distribution, value size, read/write mix), the
//! key set, and the seeded per-worker operation streams.
//!
//! Every backend sees the same scenario with the same seed, so worker `i` of every backend draws
//! the same sequence of operations.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use std::fmt;

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `s` over the key ranks (key 0 is the most popular).
    Zipf(f64),
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Uniform => f.write_str("uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf {s}"),
        }
    }
}

/// One workload: run against every backend in turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Key distribution.
    pub dist: KeyDist,
    /// Size of every value written (and preloaded), in bytes.
    pub value_bytes: usize,
    /// Fraction of operations that are GETs (the rest are SETs), in `0.0..=1.0`.
    pub read_ratio: f64,
}

impl Scenario {
    /// The default Zipf exponent (YCSB's).
    pub const DEFAULT_ZIPF_S: f64 = 0.99;

    /// Parses `dist=uniform|zipf[:S],value=100|4KiB,read=0.9` (any order, every part optional).
    pub fn parse(spec: &str) -> Result<Scenario> {
        let mut scenario = Scenario {
            dist: KeyDist::Uniform,
            value_bytes: 100,
            read_ratio: 1.0,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                bail!("scenario part {part:?} is not NAME=VALUE");
            };
            match name.trim() {
                "dist" => scenario.dist = parse_dist(value.trim())?,
                "value" => {
                    let bytes = value
                        .trim()
                        .parse::<bytesize::ByteSize>()
                        .map_err(|err| anyhow::anyhow!(err))
                        .with_context(|| format!("bad value size {value:?}"))?
                        .as_u64();
                    scenario.value_bytes = usize::try_from(bytes)?;
                }
                "read" => {
                    let ratio: f64 = value
                        .trim()
                        .parse()
                        .with_context(|| format!("bad read ratio {value:?}"))?;
                    if !(0.0..=1.0).contains(&ratio) {
                        bail!("read ratio {ratio} is not within 0..=1");
                    }
                    scenario.read_ratio = ratio;
                }
                other => bail!("unknown scenario part {other:?} (expected dist, value, read)"),
            }
        }
        if scenario.value_bytes == 0 {
            bail!("value size must be at least 1 byte");
        }
        Ok(scenario)
    }

    /// A short human-readable name, e.g. `zipf 0.99, 100 B, 90% GET`.
    pub fn name(&self) -> String {
        format!(
            "{}, {}, {}",
            self.dist,
            human_bytes(self.value_bytes),
            mix(self.read_ratio)
        )
    }
}

fn parse_dist(value: &str) -> Result<KeyDist> {
    match value.split_once(':') {
        None if value == "uniform" => Ok(KeyDist::Uniform),
        None if value == "zipf" => Ok(KeyDist::Zipf(Scenario::DEFAULT_ZIPF_S)),
        Some(("zipf", s)) => {
            let s: f64 = s
                .parse()
                .with_context(|| format!("bad zipf exponent {s:?}"))?;
            if !(s.is_finite() && s >= 0.0) {
                bail!("zipf exponent {s} must be finite and >= 0");
            }
            Ok(KeyDist::Zipf(s))
        }
        _ => bail!("unknown key distribution {value:?} (expected uniform, zipf or zipf:S)"),
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn mix(read_ratio: f64) -> String {
    if read_ratio >= 1.0 {
        "GET only".to_owned()
    } else if read_ratio <= 0.0 {
        "SET only".to_owned()
    } else {
        format!("{:.0}% GET", read_ratio * 100.0)
    }
}

/// The keys every backend uses: `key:0000000`, `key:0000001`, ...
///
/// Each is a slice of one buffer kept for the rest of the process (the generator needs its keys
/// until it exits), so handing a key to a client as `Bytes` is a pointer copy, as handing it to
/// another client as `&[u8]` is. Keys that each owned a reference-counted buffer would charge
/// one backend's requests an atomic increment and decrement on a cold cache line that the others
/// do not pay.
pub fn keys(count: usize) -> Vec<Bytes> {
    let mut text = String::new();
    let mut ends = Vec::with_capacity(count);
    for i in 0..count {
        text.push_str(&format!("key:{i:07}"));
        ends.push(text.len());
    }
    let text: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let key = Bytes::from_static(&text[start..end]);
            start = end;
            key
        })
        .collect()
}

/// A value of `len` bytes (printable, so every protocol carries it unchanged).
pub fn value(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// One operation of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read key number `n`.
    Get(usize),
    /// Write key number `n`.
    Set(usize),
}

/// The seeded stream of operations of one worker.
#[derive(Debug)]
pub struct OpStream {
    rng: ChaCha8Rng,
    keys: usize,
    zipf: Option<Zipf<f64>>,
    read_ratio: f64,
}

impl OpStream {
    /// Worker `worker`'s stream for `scenario` over `keys` keys, derived from `seed`.
    pub fn new(seed: u64, worker: usize, scenario: &Scenario, keys: usize) -> Result<OpStream> {
        let zipf = match scenario.dist {
            KeyDist::Uniform => None,
            KeyDist::Zipf(s) => {
                Some(Zipf::new(keys as f64, s).map_err(|e| anyhow::anyhow!("zipf: {e}"))?)
            }
        };
        Ok(OpStream {
            rng: ChaCha8Rng::seed_from_u64(child_seed(seed, worker)),
            keys: keys.max(1),
            zipf,
            read_ratio: scenario.read_ratio,
        })
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let key = match &self.zipf {
            None => self.rng.random_range(0..self.keys),
            // Zipf samples ranks 1..=n (as floats); rank 1 is key 0.
            Some(zipf) => (zipf.sample(&mut self.rng) as usize)
                .saturating_sub(1)
                .min(self.keys - 1),
        };
        if self.read_ratio >= 1.0 || self.rng.random::<f64>() < self.read_ratio {
            Op::Get(key)
        } else {
            Op::Set(key)
        }
    }
}

/// The seed of worker `worker`: the `worker`-th output of a root rng seeded with `seed`, so one
/// seed fixes every worker's stream (and streams of different workers differ).
pub fn child_seed(seed: u64, worker: usize) -> u64 {
    let mut root = ChaCha8Rng::seed_from_u64(seed);
    root.set_stream(worker as u64);
    root.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scenarios() {
        let s = Scenario::parse("dist=zipf,value=4KiB,read=0.9").unwrap();
        assert_eq!(s.dist, KeyDist::Zipf(0.99));
        assert_eq!(s.value_bytes, 4096);
        assert_eq!(s.name(), "zipf 0.99, 4 KiB, 90% GET");
        let s = Scenario::parse("").unwrap();
        assert_eq!(s.name(), "uniform, 100 B, GET only");
        assert_eq!(
            Scenario::parse("dist=zipf:1.2").unwrap().dist,
            KeyDist::Zipf(1.2)
        );
        for bad in [
            "read=2",
            "dist=pareto",
            "value=0",
            "x=1",
            "value",
            "dist=zipf:-1",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn streams_are_seeded_and_in_range() {
        let scenario = Scenario::parse("dist=zipf,read=0.5").unwrap();
        let draw = |seed, worker| {
            let mut s = OpStream::new(seed, worker, &scenario, 1000).unwrap();
            (0..1000).map(|_| s.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 0), draw(7, 0));
        assert_ne!(draw(7, 0), draw(7, 1));
        assert_ne!(draw(7, 0), draw(8, 0));
        let ops = draw(7, 0);
        assert!(ops.iter().all(|op| match op {
            Op::Get(k) | Op::Set(k) => *k < 1000,
        }));
        let gets = ops.iter().filter(|op| matches!(op, Op::Get(_))).count();
        assert!((400..600).contains(&gets), "{gets}");
        let zeros = ops
            .iter()
            .filter(|op| matches!(op, Op::Get(0) | Op::Set(0)))
            .count();
        assert!(zeros > 50, "key 0 is the most popular under zipf: {zeros}");
    }

    /// Counts how often each key comes up in `draws` operations of one stream.
    fn histogram(scenario: &Scenario, keys: usize, draws: usize) -> Vec<usize> {
        let mut stream = OpStream::new(42, 3, scenario, keys).unwrap();
        let mut counts = vec![0; keys];
        for _ in 0..draws {
            let (Op::Get(k) | Op::Set(k)) = stream.next_op();
            counts[k] += 1;
        }
        counts
    }

    #[test]
    fn zipf_follows_the_rank_law() {
        let scenario = Scenario::parse("dist=zipf:0.99").unwrap();
        let (keys, draws) = (1000, 200_000);
        let counts = histogram(&scenario, keys, draws);
        // P(rank r) = r^-s / H(n, s); H(1000, 0.99) is about 7.9.
        let h: f64 = (1..=keys).map(|r| (r as f64).powf(-0.99)).sum();
        for rank in [1usize, 2, 10, 100] {
            let expected = draws as f64 * (rank as f64).powf(-0.99) / h;
            let got = counts[rank - 1] as f64;
            assert!(
                (got - expected).abs() < 0.1 * expected,
                "rank {rank}: {got} draws, expected about {expected:.0}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
        // Same seed, same draws: the exact counts repeat.
        assert_eq!(counts, histogram(&scenario, keys, draws));
    }

    #[test]
    fn uniform_covers_every_key_evenly() {
        let scenario = Scenario::parse("dist=uniform").unwrap();
        let counts = histogram(&scenario, 100, 100_000);
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn read_ratio_sets_the_mix() {
        let count_gets = |spec: &str| {
            let scenario = Scenario::parse(spec).unwrap();
            let mut stream = OpStream::new(1, 0, &scenario, 10).unwrap();
            (0..100_000)
                .filter(|_| matches!(stream.next_op(), Op::Get(_)))
                .count()
        };
        assert_eq!(count_gets("read=1"), 100_000);
        assert_eq!(count_gets("read=0"), 0);
        let gets = count_gets("read=0.9");
        assert!((89_000..91_000).contains(&gets), "{gets}");
    }

    #[test]
    fn child_seeds_are_fixed_and_distinct() {
        assert_eq!(child_seed(1, 0), child_seed(1, 0));
        let seeds: std::collections::BTreeSet<u64> = (0..64).map(|w| child_seed(1, w)).collect();
        assert_eq!(seeds.len(), 64);
        assert_ne!(child_seed(1, 0), child_seed(2, 0));
    }

    #[test]
    fn keys_and_values() {
        let k = keys(3);
        assert_eq!(k[0].as_ref(), b"key:0000000");
        assert_eq!(k[2].as_ref(), b"key:0000002");
        let v = value(4096);
        assert_eq!(v.len(), 4096);
        assert!(v.iter().all(u8::is_ascii_lowercase));
        assert_eq!(&v[..3], b"abc");
    }
}
