//! The simulated source behind the cache: a loader whose every value names its key, node,
//! incarnation and call, and which records each call (and how many run at once per key and per
//! node) in the history.
//!
//! It misbehaves on purpose. Workload keys (`k…`) draw each call's behaviour from the seed's
//! [`LoaderOptions`]: a normal load, a miss (a fixed share of keys), an error, a panic, or a slow
//! load (longer than the peer timeout, sometimes longer than the load timeout and the clients'
//! deadlines). The verifier's keys behave the same on every call, by their first letter:
//! `e…` always fails, `x…` always panics, `s…` is slow (longer than the peer timeout, shorter
//! than the load timeout), `m…` is missing, `p…` (data-path probes) and `v…` are normal and
//! never fail.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lcache_node::{LoadError, Loaded, Loader};
use parking_lot::Mutex;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64;

use crate::history::{millis, Event, History, LoadResult};
use crate::options::LoaderOptions;

/// Lifetimes a loaded value may get; `None` leaves the group default.
const LOAD_TTLS: [Option<Duration>; 4] = [
    None,
    Some(Duration::from_millis(400)),
    Some(Duration::from_millis(1_500)),
    Some(Duration::from_secs(8)),
];

/// Text every deliberate loader panic carries, so the run's panic hook can tell it from a bug.
pub const DELIBERATE_PANIC: &str = "deliberate loader panic (simulated source)";

/// What one loader call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers after a normal latency (a value, or a miss for a missing key).
    Normal,
    /// Fails.
    Error,
    /// Panics.
    Panic,
    /// Answers after a long latency.
    Slow,
}

/// Keys the source never misbehaves for (data-path probes `p…`, verifier keys `v…`).
fn is_tame_key(key: &str) -> bool {
    key.starts_with('p') || key.starts_with('v')
}

/// Whether the source lacks `key` (a fixed share of workload keys, the same on every node).
pub fn is_missing(key: &str, options: &LoaderOptions) -> bool {
    key.starts_with('m')
        || (key.starts_with('k') && xxh3_64(key.as_bytes()) % 100 < options.missing_pct)
}

/// The fixed behaviour of a verifier trouble key, by its first letter.
pub fn fixed_behaviour(key: &str) -> Option<Behaviour> {
    match key.as_bytes().first() {
        Some(b'e') => Some(Behaviour::Error),
        Some(b'x') => Some(Behaviour::Panic),
        Some(b's') => Some(Behaviour::Slow),
        _ if is_tame_key(key) || key.starts_with('m') => Some(Behaviour::Normal),
        _ => None,
    }
}

/// The loader of one node incarnation.
#[derive(Debug)]
pub struct SimLoader {
    node: String,
    inc: u64,
    options: LoaderOptions,
    /// Latency of a fixed slow key (`s…`): past the peer timeout, within the load timeout.
    slow_key_latency: Duration,
    rng: Mutex<ChaCha8Rng>,
    calls: AtomicU64,
    running: Arc<Mutex<BTreeMap<String, u32>>>,
    history: History,
}

impl SimLoader {
    /// The loader of `node`'s incarnation `inc`, drawing from `rng`.
    pub fn new(
        node: &str,
        inc: u64,
        options: LoaderOptions,
        slow_key_latency: Duration,
        rng: ChaCha8Rng,
        history: History,
    ) -> Self {
        SimLoader {
            node: node.to_owned(),
            inc,
            options,
            slow_key_latency,
            rng: Mutex::new(rng),
            calls: AtomicU64::new(0),
            running: Arc::new(Mutex::new(BTreeMap::new())),
            history,
        }
    }

    /// Counts a running call of `key` until the guard drops (also when the node abandons the
    /// call at its load timeout, or the call panics); returns the guard, how many calls of `key`
    /// now run and how many calls run on the node.
    fn enter(&self, key: &str) -> (Running, u32, u32) {
        let mut running = self.running.lock();
        let count = running.entry(key.to_owned()).or_insert(0);
        *count += 1;
        let now = *count;
        let total = running.values().sum();
        drop(running);
        let guard = Running {
            key: key.to_owned(),
            running: self.running.clone(),
        };
        (guard, now, total)
    }

    /// This call's behaviour, latency and lifetime.
    fn draw(&self, key: &str) -> (Behaviour, Duration, Option<Duration>) {
        let mut rng = self.rng.lock();
        let o = &self.options;
        let max = u64::try_from(o.max_latency.as_micros()).unwrap_or(u64::MAX);
        let normal = Duration::from_micros(rng.random_range(0..=max));
        let ttl = LOAD_TTLS[rng.random_range(0..LOAD_TTLS.len())];
        let behaviour = fixed_behaviour(key).unwrap_or_else(|| {
            let roll = rng.random_range(0..100);
            if roll < o.error_pct {
                Behaviour::Error
            } else if roll < o.error_pct + o.panic_pct {
                Behaviour::Panic
            } else if roll < o.error_pct + o.panic_pct + o.slow_pct {
                Behaviour::Slow
            } else {
                Behaviour::Normal
            }
        });
        let latency = match behaviour {
            Behaviour::Slow if key.starts_with('s') => self.slow_key_latency,
            Behaviour::Slow => {
                let max = u64::try_from(o.slow_max.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(rng.random_range(max / 4..=max.max(1)))
            }
            _ => normal,
        };
        (behaviour, latency, ttl)
    }
}

/// Decrements a key's running count when dropped.
#[derive(Debug)]
struct Running {
    key: String,
    running: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        if let Some(count) = running.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

#[async_trait::async_trait]
impl Loader for SimLoader {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let key = String::from_utf8_lossy(key).into_owned();
        let (_running, concurrent, node_concurrent) = self.enter(&key);
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let (behaviour, latency, ttl) = self.draw(&key);
        self.history.record(Event::LoadStart {
            node: self.node.clone(),
            inc: self.inc,
            key: key.clone(),
            concurrent,
            node_concurrent,
            call,
        });
        tokio::time::sleep(latency).await;
        let end = |result| Event::LoadEnd {
            node: self.node.clone(),
            inc: self.inc,
            key: key.clone(),
            call,
            result,
        };
        let (result, recorded) = match behaviour {
            Behaviour::Panic => {
                self.history.record(end(LoadResult::Panicked));
                panic!("{DELIBERATE_PANIC}: {key} on {}", self.node);
            }
            Behaviour::Error => (
                Err(LoadError("source unavailable".into())),
                LoadResult::Failed,
            ),
            _ if is_missing(&key, &self.options) => (Ok(None), LoadResult::Missing),
            _ => {
                let value = format!("L:{key}:{}.{}.{call}", self.node, self.inc);
                let recorded = LoadResult::Value {
                    value: value.clone(),
                    ttl_ms: ttl.map(millis),
                };
                let loaded = Loaded {
                    value: value.into(),
                    ttl,
                };
                (Ok(Some(loaded)), recorded)
            }
        };
        self.history.record(end(recorded));
        result
    }
}
