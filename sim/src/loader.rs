//! The simulated source behind the cache: a loader whose every value names its key, node,
//! incarnation and call, and which records each call (and how many run at once per key) in the
//! history.

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

/// Keys the source never fails for (the verifier's data-path probes start with `p`).
fn is_probe_key(key: &str) -> bool {
    key.starts_with('p')
}

/// Whether the source lacks `key` (a fixed share of keys, the same on every node).
pub fn is_missing(key: &str, options: &LoaderOptions) -> bool {
    !is_probe_key(key) && xxh3_64(key.as_bytes()) % 100 < options.missing_pct
}

/// The loader of one node incarnation.
#[derive(Debug)]
pub struct SimLoader {
    node: String,
    inc: u64,
    options: LoaderOptions,
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
        rng: ChaCha8Rng,
        history: History,
    ) -> Self {
        SimLoader {
            node: node.to_owned(),
            inc,
            options,
            rng: Mutex::new(rng),
            calls: AtomicU64::new(0),
            running: Arc::new(Mutex::new(BTreeMap::new())),
            history,
        }
    }

    /// Counts a running call of `key` until the guard drops (also when the node abandons the
    /// call at its load timeout); returns the guard and how many calls of `key` now run.
    fn enter(&self, key: &str) -> (Running, u32) {
        let mut running = self.running.lock();
        let count = running.entry(key.to_owned()).or_insert(0);
        *count += 1;
        let now = *count;
        drop(running);
        let guard = Running {
            key: key.to_owned(),
            running: self.running.clone(),
        };
        (guard, now)
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
        let (_running, concurrent) = self.enter(&key);
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let (latency, fails, ttl) = {
            let mut rng = self.rng.lock();
            let max = u64::try_from(self.options.max_latency.as_micros()).unwrap_or(u64::MAX);
            let latency = Duration::from_micros(rng.random_range(0..=max));
            let fails = !is_probe_key(&key) && rng.random_range(0..100) < self.options.error_pct;
            let ttl = LOAD_TTLS[rng.random_range(0..LOAD_TTLS.len())];
            (latency, fails, ttl)
        };
        self.history.record(Event::LoadStart {
            node: self.node.clone(),
            inc: self.inc,
            key: key.clone(),
            concurrent,
        });
        tokio::time::sleep(latency).await;
        let (result, recorded) = if fails {
            (
                Err(LoadError("source unavailable".into())),
                LoadResult::Failed,
            )
        } else if is_missing(&key, &self.options) {
            (Ok(None), LoadResult::Missing)
        } else {
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
        };
        self.history.record(Event::LoadEnd {
            node: self.node.clone(),
            inc: self.inc,
            key,
            result: recorded,
        });
        result
    }
}
