//! A naive reference model of `lcache_core::Store` under `Policy::TinyLfu`.
//!
//! A literal transcription of the rules in the docs of `lcache_core::store::tinylfu`: the three
//! queues are `Vec`s (index 0 is the head), the sketch is a plain `Vec<u8>` of counters addressed
//! by the documented formula, and every lookup is a linear scan. The only things taken from the
//! core are its documented constants and the key hash (foldhash seeded by the store's seed), which
//! the model must share to make the same admission decisions.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use bytes::Bytes;
use foldhash::fast::FixedState;
use lcache_core::store::entry_size;
use lcache_core::store::tinylfu::{
    ghost_capacity, SplitMix, HORIZON_MAX, HORIZON_MIN, HORIZON_STEP, MAX_COUNT, MAX_HITS,
    PROTECTED_PERCENT, RECENT_TENTHS, REUSE_EVIDENCE, SAMPLE_FACTOR, SKETCH_BUDGET_DIVISOR,
    SKETCH_WORDS_PER_ENTRY, SWEEP_STEPS, TOUCH_DIVISOR, WARM, WINDOW_PERCENT,
};
use lcache_core::{Eviction, EvictionReason, Lookup, SharedGet, StoreError, StoreStats, Timestamp};

/// One entry of the model.
#[derive(Debug, Clone)]
pub struct LfuEntry {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Deadline, if any.
    pub expires_at: Option<Timestamp>,
    /// Bytes charged.
    pub size: u64,
    /// Insert number of the insert that stored it.
    pub seq: u64,
    hash: u64,
    hits: u8,
    /// Tick of the last recorded access.
    seen: u64,
    /// Ticks from the key's last access before it left to the insert that brought it back, if
    /// the ghost remembered it (and the gap is below `u32::MAX`).
    reuse_gap: Option<u64>,
}

impl LfuEntry {
    fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The queues, in the order the model searches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Q {
    Window,
    Probation,
    Protected,
}

/// Reference model of a TinyLFU store.
#[derive(Debug, Clone)]
pub struct TinyLfuModel {
    budget: u64,
    window_budget: u64,
    protected_budget: u64,
    hasher: FixedState,
    window: Vec<LfuEntry>,
    probation: Vec<LfuEntry>,
    protected: Vec<LfuEntry>,
    /// Sketch counters: counter `c` of word `w` is `counters[16 * w + c]`.
    counters: Vec<u8>,
    rng: SplitMix,
    peak: usize,
    aged_at: u64,
    /// Tick `T` of the current insert.
    tick: u64,
    /// `max(1, peak / TOUCH_DIVISOR)`.
    granule: u64,
    /// Dead horizon, in hundredths of `peak`.
    horizon: u64,
    /// Recent departures `(hash, seen, dead)`, oldest first; `None` once taken back.
    ghost: VecDeque<Option<(u64, u64, bool)>>,
    next_seq: u64,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    expirations: u64,
}

/// `percent` % of `bytes`, rounded down.
fn percent(bytes: u64, percent: u64) -> u64 {
    u64::try_from(u128::from(bytes) * u128::from(percent) / 100).unwrap_or(u64::MAX)
}

/// Sketch words for `budget` and `peak`, per the core's docs.
fn sketch_words(budget: u64, peak: usize) -> usize {
    let limit = (budget / SKETCH_BUDGET_DIVISOR / 8).max(1);
    let mut cap = 1u64;
    while cap * 2 <= limit {
        cap *= 2;
    }
    let mut want = 1usize;
    while want < SKETCH_WORDS_PER_ENTRY * peak.max(1) {
        want *= 2;
    }
    want.min(cap as usize).max(8)
}

impl TinyLfuModel {
    /// An empty model of a store of `budget` bytes seeded with `seed`.
    pub fn new(budget: u64, seed: u64) -> Self {
        let window_budget = percent(budget, WINDOW_PERCENT);
        TinyLfuModel {
            budget,
            window_budget,
            protected_budget: percent(budget - window_budget, PROTECTED_PERCENT),
            hasher: FixedState::with_seed(seed),
            window: Vec::new(),
            probation: Vec::new(),
            protected: Vec::new(),
            counters: vec![0; 16 * sketch_words(budget, 0)],
            rng: SplitMix(seed),
            peak: 0,
            aged_at: 0,
            tick: 0,
            granule: 1,
            horizon: HORIZON_MAX,
            ghost: VecDeque::new(),
            next_seq: 0,
            hits: 0,
            misses: 0,
            inserts: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    fn list(&mut self, q: Q) -> &mut Vec<LfuEntry> {
        match q {
            Q::Window => &mut self.window,
            Q::Probation => &mut self.probation,
            Q::Protected => &mut self.protected,
        }
    }

    fn find(&self, key: &[u8]) -> Option<(Q, usize)> {
        for (q, list) in [
            (Q::Window, &self.window),
            (Q::Probation, &self.probation),
            (Q::Protected, &self.protected),
        ] {
            if let Some(i) = list.iter().position(|e| e.key == key) {
                return Some((q, i));
            }
        }
        None
    }

    fn entry(&self, key: &[u8]) -> Option<&LfuEntry> {
        self.window
            .iter()
            .chain(&self.probation)
            .chain(&self.protected)
            .find(|e| e.key == key)
    }

    fn take(&mut self, key: &[u8]) -> Option<LfuEntry> {
        let (q, i) = self.find(key)?;
        Some(self.list(q).remove(i))
    }

    /// Every entry, window then probation then protected.
    pub fn entries(&self) -> impl Iterator<Item = &LfuEntry> + '_ {
        self.window
            .iter()
            .chain(&self.probation)
            .chain(&self.protected)
    }

    /// Bytes of all entries.
    pub fn bytes(&self) -> u64 {
        self.entries().map(|e| e.size).sum()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }

    /// Whether the model is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // --- sketch -------------------------------------------------------------------------

    fn slots(&self, hash: u64) -> [usize; 4] {
        let words = self.counters.len() / 16;
        let block = (hash % (words as u64 / 8)) as usize;
        let c = (hash >> 32).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        std::array::from_fn(|i| {
            let h = (c >> (8 * i)) & 0xff;
            let word = 8 * block + 2 * i + (h & 1) as usize;
            16 * word + ((h >> 1) & 15) as usize
        })
    }

    fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash)
            .iter()
            .map(|&s| self.counters[s])
            .min()
            .unwrap_or(0)
    }

    fn count(&mut self, hash: u64) {
        let min = self.frequency(hash);
        if min < MAX_COUNT {
            for s in self.slots(hash) {
                if self.counters[s] == min {
                    self.counters[s] += 1;
                }
            }
        }
    }

    // --- accesses -----------------------------------------------------------------------

    /// A hit on the entry at `(q, i)`: its last use (at the granule); and, unless `h` is already
    /// `MAX_HITS`, `h + 1` and the sketch.
    fn record_hit(&mut self, q: Q, i: usize) {
        let (tick, granule) = (self.tick, self.granule);
        let entry = &mut self.list(q)[i];
        if tick.saturating_sub(entry.seen) >= granule {
            entry.seen = tick;
        }
        if entry.hits < MAX_HITS {
            entry.hits += 1;
            let hash = entry.hash;
            self.count(hash);
        }
    }

    /// Whether `e` is dead: idle beyond the dead horizon and, if its sketch estimate is at
    /// least `REUSE_EVIDENCE`, idle for longer than `S / estimate`.
    fn dead(&self, e: &LfuEntry) -> bool {
        let idle = self.tick.saturating_sub(e.seen);
        if idle.saturating_mul(100) <= self.horizon.saturating_mul(self.peak as u64) {
            return false;
        }
        let estimate = self.frequency(e.hash);
        let sample = SAMPLE_FACTOR * self.peak.max(1) as u64;
        estimate < REUSE_EVIDENCE || idle.saturating_mul(u64::from(estimate)) > sample
    }

    /// Records the departure of `e` in the ghost.
    fn depart(&mut self, e: &LfuEntry) {
        let dead = self.dead(e);
        self.ghost.push_back(Some((e.hash, e.seen, dead)));
        while self.ghost.len() > ghost_capacity(self.peak) {
            self.ghost.pop_front();
        }
    }

    /// Takes the ghost's record of `hash`, if any, moves the horizon, and returns the record's
    /// last-use tick.
    fn take_ghost(&mut self, hash: u64) -> Option<u64> {
        let slot = self
            .ghost
            .iter_mut()
            .find(|r| r.is_some_and(|(h, _, _)| h == hash))?;
        let (_, seen, was_dead) = slot.take()?;
        let dead = self.ghost.iter().flatten().filter(|r| r.2).count() as u64;
        let other = self.ghost.iter().flatten().count() as u64 - dead;
        if was_dead {
            let step = HORIZON_STEP * (other / dead.max(1)).max(1);
            self.horizon = (self.horizon + step).min(HORIZON_MAX);
        } else {
            let step = HORIZON_STEP * (dead / other.max(1)).max(1);
            self.horizon = self.horizon.saturating_sub(step).max(HORIZON_MIN);
        }
        Some(seen)
    }

    /// `Store::get`.
    pub fn get(&mut self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let Some((q, i)) = self.find(key) else {
            self.misses += 1;
            return None;
        };
        if self.list(q)[i].is_expired(now) {
            self.list(q).remove(i);
            self.expirations += 1;
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        self.record_hit(q, i);
        let e = &self.list(q)[i];
        Some(Lookup {
            value: e.value.clone(),
            expires_at: e.expires_at,
        })
    }

    /// `Store::get_shared`.
    pub fn get_shared(&mut self, key: &[u8], now: Timestamp) -> SharedGet {
        match self.entry(key) {
            None => {
                self.misses += 1;
                SharedGet::Miss
            }
            Some(e) if e.is_expired(now) => SharedGet::Exclusive,
            Some(_) => match self.get(key, now) {
                Some(lookup) => SharedGet::Hit(lookup),
                None => SharedGet::Miss,
            },
        }
    }

    /// `Store::peek`.
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        let e = self.entry(key).filter(|e| !e.is_expired(now))?;
        Some(Lookup {
            value: e.value.clone(),
            expires_at: e.expires_at,
        })
    }

    /// `Store::insert`.
    pub fn insert(
        &mut self,
        key: Bytes,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<Eviction>, StoreError> {
        let size = entry_size(key.len(), value.len());
        if size > self.budget {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.budget,
            });
        }
        if expires_at.is_some_and(|at| at <= now) {
            self.take(&key);
            return Ok(Vec::new());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let tick = self.hits + self.inserts;
        self.tick = tick;
        if tick - self.aged_at >= SAMPLE_FACTOR * self.peak.max(1) as u64 {
            for c in &mut self.counters {
                *c /= 2;
            }
            self.aged_at = tick;
        }
        self.inserts += 1;
        let hash = self.hasher.hash_one(&key[..]);
        if let Some((q, i)) = self.find(&key) {
            let e = &mut self.list(q)[i];
            e.value = value;
            e.expires_at = expires_at;
            e.size = size;
            e.seq = seq;
            e.seen = tick;
            if e.hits < MAX_HITS {
                e.hits += 1;
                self.count(hash);
            }
        } else {
            let reuse_gap = self
                .take_ghost(hash)
                .map(|seen| tick.saturating_sub(seen))
                .filter(|&gap| gap < u64::from(u32::MAX));
            self.window.push(LfuEntry {
                key: key.clone(),
                value,
                expires_at,
                size,
                seq,
                hash,
                hits: 0,
                seen: tick,
                reuse_gap,
            });
            if self.len() > self.peak {
                self.peak = self.len();
                self.granule = (self.peak / TOUCH_DIVISOR).max(1) as u64;
                let words = sketch_words(self.budget, self.peak);
                if 16 * words > self.counters.len() {
                    self.counters = vec![0; 16 * words];
                }
            }
            self.count(hash);
        }
        let mut evicted = Vec::new();
        // Expired entries first, earliest deadline first.
        while self.bytes() > self.budget {
            let Some(e) = self.pop_expired(now) else {
                break;
            };
            evicted.push(e);
        }
        self.evict(&key, &mut evicted);
        Ok(evicted)
    }

    fn pop_expired(&mut self, now: Timestamp) -> Option<Eviction> {
        let (_, _, key) = self
            .entries()
            .filter(|e| e.is_expired(now))
            .filter_map(|e| e.expires_at.map(|at| (at, e.seq, e.key.clone())))
            .min()?;
        let e = self.take(&key)?;
        self.expirations += 1;
        Some(Eviction {
            key: e.key,
            bytes: e.size,
            reason: EvictionReason::Expired,
        })
    }

    fn evict(&mut self, keep: &[u8], evicted: &mut Vec<Eviction>) {
        let mut candidates = self.drain_window(keep);
        let mut capacity = |model: &mut Self, e: LfuEntry| {
            model.depart(&e);
            model.evictions += 1;
            evicted.push(Eviction {
                key: e.key,
                bytes: e.size,
                reason: EvictionReason::Capacity,
            });
        };
        while self.bytes() + candidates.iter().map(|c| c.size).sum::<u64>() > self.budget {
            self.sweep_protected(keep);
            let victim = self.select_victim(keep);
            match (candidates.is_empty(), victim) {
                (true, None) => break,
                (false, None) => {
                    let c = candidates.remove(0);
                    capacity(self, c);
                }
                (true, Some((q, i))) => {
                    let v = self.list(q).remove(i);
                    capacity(self, v);
                }
                (false, Some((q, i))) => {
                    if self.admit(&candidates[0], q, i) {
                        let v = self.list(q).remove(i);
                        capacity(self, v);
                    } else {
                        let c = candidates.remove(0);
                        capacity(self, c);
                        if q == Q::Probation && self.probation.len() > 1 {
                            let v = self.probation.remove(i);
                            self.probation.push(v);
                        }
                    }
                }
            }
        }
        self.probation.extend(candidates);
    }

    fn drain_window(&mut self, keep: &[u8]) -> Vec<LfuEntry> {
        let mut candidates = Vec::new();
        let n = self.window.len();
        let mut moves = 0;
        while self.window.iter().map(|e| e.size).sum::<u64>() > self.window_budget
            && !self.window.is_empty()
        {
            let head = &self.window[0];
            if head.key == keep || (moves < n && head.hits > 0) {
                if self.window.len() == 1 {
                    break;
                }
                moves += 1;
                let mut e = self.window.remove(0);
                e.hits = 0;
                self.window.push(e);
                continue;
            }
            candidates.push(self.window.remove(0));
        }
        candidates
    }

    fn sweep_protected(&mut self, keep: &[u8]) {
        for _ in 0..SWEEP_STEPS {
            match self.protected.first() {
                Some(head) if head.key != keep => {}
                _ => return,
            }
            let e = self.protected.remove(0);
            if self.dead(&e) {
                self.probation.insert(0, e);
            } else {
                self.protected.push(e);
            }
        }
    }

    fn select_victim(&mut self, keep: &[u8]) -> Option<(Q, usize)> {
        loop {
            if let Some(head) = self.probation.first() {
                if head.key == keep || head.hits > 0 {
                    let mut e = self.probation.remove(0);
                    e.hits = 0;
                    self.protected.push(e);
                    self.demote_protected(keep);
                    continue;
                }
                return Some((Q::Probation, 0));
            }
            let only_keep = self.protected.len() == 1 && self.protected[0].key == keep;
            if !self.protected.is_empty() && !only_keep {
                let head = &self.protected[0];
                if head.key != keep && head.hits == 0 {
                    return Some((Q::Protected, 0));
                }
                let mut e = self.protected.remove(0);
                e.hits = e.hits.saturating_sub(1);
                self.protected.push(e);
                continue;
            }
            return match self.window.iter().position(|e| e.key != keep) {
                Some(0) => Some((Q::Window, 0)),
                Some(1) => Some((Q::Window, 1)),
                _ => None,
            };
        }
    }

    fn demote_protected(&mut self, keep: &[u8]) {
        while self.protected.iter().map(|e| e.size).sum::<u64>() > self.protected_budget
            && !self.protected.is_empty()
        {
            let mut e = self.protected.remove(0);
            if e.hits > 0 || e.key == keep {
                e.hits = e.hits.saturating_sub(1);
                let is_keep = e.key == keep;
                self.protected.push(e);
                if is_keep && self.protected.len() == 1 {
                    break;
                }
            } else {
                self.probation.push(e);
            }
        }
    }

    fn admit(&mut self, c: &LfuEntry, q: Q, i: usize) -> bool {
        let v = self.list(q)[i].clone();
        if self.dead(&v) {
            return true;
        }
        let idle = self.tick.saturating_sub(v.seen);
        if c.reuse_gap.is_some_and(|gap| gap < idle) {
            return true;
        }
        let candidate = self.frequency(c.hash);
        let idle = idle.max(1);
        let peak = self.peak.max(1) as u64;
        let cap = 2 * SAMPLE_FACTOR * peak / idle;
        let victim = u64::from(self.frequency(v.hash)).min(cap);
        let margin = u64::from(10 * idle < RECENT_TENTHS * peak);
        if u64::from(candidate) > victim + margin {
            return true;
        }
        candidate >= WARM && self.rng.next_u64().is_multiple_of(128)
    }

    /// `Store::remove`.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.take(key).is_some()
    }

    /// `Store::sweep_expired`.
    pub fn sweep_expired(&mut self, now: Timestamp, max: usize) -> Vec<Eviction> {
        let mut swept = Vec::new();
        while swept.len() < max {
            let Some(e) = self.pop_expired(now) else {
                break;
            };
            swept.push(e);
        }
        swept
    }

    /// `Store::retain`.
    pub fn retain(&mut self, keep: impl Fn(&[u8]) -> bool) -> usize {
        let before = self.len();
        self.window.retain(|e| keep(&e.key));
        self.probation.retain(|e| keep(&e.key));
        self.protected.retain(|e| keep(&e.key));
        before - self.len()
    }

    /// `Store::clear`.
    pub fn clear(&mut self) {
        self.window.clear();
        self.probation.clear();
        self.protected.clear();
    }

    /// `Store::stats`.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            hits: self.hits,
            misses: self.misses,
            inserts: self.inserts,
            evictions: self.evictions,
            expirations: self.expirations,
            bytes: self.bytes(),
            entries: self.len() as u64,
        }
    }
}
