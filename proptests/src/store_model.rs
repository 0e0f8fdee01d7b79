//! A naive reference model of [`lcache_core::Store`].
//!
//! It follows the semantics written in the module docs of `lcache_core::store` literally: recency
//! lists are `Vec`s ordered from least to most recently used (index 0 is the LRU end), every lookup
//! is a linear scan, and the expiry sweep sorts a fresh list of candidates. Nothing here is meant to
//! be fast; everything is meant to be obviously right.

use bytes::Bytes;
use lcache_core::store::entry_size;
use lcache_core::{
    Eviction, EvictionReason, Lookup, Policy, SharedGet, StoreError, StoreStats, Timestamp,
};

use crate::tinylfu_model::TinyLfuModel;

/// One entry of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Deadline, if any; the entry is expired when `expires_at <= now`.
    pub expires_at: Option<Timestamp>,
    /// Bytes charged: `entry_size(key.len(), value.len())`.
    pub size: u64,
    /// Number of the insert that stored this entry (orders equal deadlines in a sweep).
    pub seq: u64,
}

impl ModelEntry {
    fn is_expired(&self, now: Timestamp) -> bool {
        match self.expires_at {
            Some(at) => at <= now,
            None => false,
        }
    }

    fn lookup(&self) -> Lookup {
        Lookup {
            value: self.value.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// Which list an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Probation,
    Protected,
}

/// Reference model of a `Store`: a probation list and (for LRU2) a protected list, both `Vec`s
/// ordered LRU first; under TinyLFU every call goes to a [`TinyLfuModel`] instead.
#[derive(Debug, Clone)]
pub struct StoreModel {
    /// The TinyLFU model, for `Policy::TinyLfu`.
    lfu: Option<Box<TinyLfuModel>>,
    budget: u64,
    /// Protected budget for LRU2, `None` for plain LRU.
    protected_budget: Option<u64>,
    /// Probation list (the only list for plain LRU); index 0 is the LRU end.
    probation: Vec<ModelEntry>,
    /// Protected list of LRU2; index 0 is the LRU end. Always empty for plain LRU.
    protected: Vec<ModelEntry>,
    next_seq: u64,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    expirations: u64,
}

impl StoreModel {
    /// An empty model with the given byte budget and policy (assumed valid), hash seed 0.
    pub fn new(budget: u64, policy: Policy) -> Self {
        Self::with_seed(budget, policy, 0)
    }

    /// An empty model of a store configured with `hash_seed` (used only by TinyLFU).
    pub fn with_seed(budget: u64, policy: Policy, hash_seed: u64) -> Self {
        let protected_budget = match policy {
            Policy::TinyLfu | Policy::Lru => None,
            Policy::Lru2 { protected_percent } => Some(budget * u64::from(protected_percent) / 100),
        };
        StoreModel {
            lfu: matches!(policy, Policy::TinyLfu)
                .then(|| Box::new(TinyLfuModel::new(budget, hash_seed))),
            budget,
            protected_budget,
            probation: Vec::new(),
            protected: Vec::new(),
            next_seq: 0,
            hits: 0,
            misses: 0,
            inserts: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Where `key` is: its list and its index in that list.
    fn find(&self, key: &[u8]) -> Option<(Tier, usize)> {
        if let Some(i) = self.probation.iter().position(|e| e.key == key) {
            return Some((Tier::Probation, i));
        }
        if let Some(i) = self.protected.iter().position(|e| e.key == key) {
            return Some((Tier::Protected, i));
        }
        None
    }

    fn entry(&self, key: &[u8]) -> Option<&ModelEntry> {
        match self.find(key)? {
            (Tier::Probation, i) => Some(&self.probation[i]),
            (Tier::Protected, i) => Some(&self.protected[i]),
        }
    }

    /// Takes the entry under `key` out of whichever list holds it.
    fn take(&mut self, key: &[u8]) -> Option<ModelEntry> {
        match self.find(key)? {
            (Tier::Probation, i) => Some(self.probation.remove(i)),
            (Tier::Protected, i) => Some(self.protected.remove(i)),
        }
    }

    fn list_bytes(list: &[ModelEntry]) -> u64 {
        list.iter().map(|e| e.size).sum()
    }

    /// Bytes of all entries.
    pub fn bytes(&self) -> u64 {
        if let Some(lfu) = &self.lfu {
            return lfu.bytes();
        }
        Self::list_bytes(&self.probation) + Self::list_bytes(&self.protected)
    }

    /// Number of entries, expired ones included.
    pub fn len(&self) -> usize {
        if let Some(lfu) = &self.lfu {
            return lfu.len();
        }
        self.probation.len() + self.protected.len()
    }

    /// Whether the model holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An access to the (present) entry `entry`, already taken out of its list: plain LRU puts
    /// it at the MRU end of the single list; LRU2 puts it at the MRU end of protected, then
    /// demotes protected's LRU entries while protected is over its budget with more than one entry.
    fn put_accessed(&mut self, entry: ModelEntry) {
        let Some(protected_budget) = self.protected_budget else {
            self.probation.push(entry);
            return;
        };
        self.protected.push(entry);
        while Self::list_bytes(&self.protected) > protected_budget && self.protected.len() > 1 {
            let demoted = self.protected.remove(0);
            self.probation.push(demoted);
        }
    }

    /// `Store::get`.
    pub fn get(&mut self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        if let Some(lfu) = &mut self.lfu {
            return lfu.get(key, now);
        }
        let Some(entry) = self.take(key) else {
            self.misses += 1;
            return None;
        };
        if entry.is_expired(now) {
            self.expirations += 1;
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        let lookup = entry.lookup();
        self.put_accessed(entry);
        Some(lookup)
    }

    /// `Store::get_shared`: LRU and LRU2 answer `Exclusive` for any present entry and count a
    /// miss for an absent one.
    pub fn get_shared(&mut self, key: &[u8], now: Timestamp) -> SharedGet {
        if let Some(lfu) = &mut self.lfu {
            return lfu.get_shared(key, now);
        }
        if self.find(key).is_some() {
            SharedGet::Exclusive
        } else {
            self.misses += 1;
            SharedGet::Miss
        }
    }

    /// Sizes of every entry with its key and value lengths: `(key, value, size)`.
    pub fn entry_sizes(&self) -> Vec<(usize, usize, u64)> {
        if let Some(lfu) = &self.lfu {
            return lfu
                .entries()
                .map(|e| (e.key.len(), e.value.len(), e.size))
                .collect();
        }
        self.entries()
            .map(|e| (e.key.len(), e.value.len(), e.size))
            .collect()
    }

    /// `Store::peek`.
    pub fn peek(&self, key: &[u8], now: Timestamp) -> Option<Lookup> {
        if let Some(lfu) = &self.lfu {
            return lfu.peek(key, now);
        }
        let entry = self.entry(key)?;
        if entry.is_expired(now) {
            return None;
        }
        Some(entry.lookup())
    }

    /// `Store::insert`.
    pub fn insert(
        &mut self,
        key: Bytes,
        value: Bytes,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<Eviction>, StoreError> {
        if let Some(lfu) = &mut self.lfu {
            return lfu.insert(key, value, expires_at, now);
        }
        let size = entry_size(key.len(), value.len());
        // 1. Too large: nothing changes.
        if size > self.budget {
            return Err(StoreError::EntryTooLarge {
                size,
                budget: self.budget,
            });
        }
        // 2. Already expired: the key is removed, nothing stored, no counter changes.
        if let Some(at) = expires_at {
            if at <= now {
                self.take(&key);
                return Ok(Vec::new());
            }
        }
        // 3. Stored.
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inserts += 1;
        let entry = ModelEntry {
            key: key.clone(),
            value,
            expires_at,
            size,
            seq,
        };
        if self.take(&key).is_some() {
            // A replacement counts as an access.
            self.put_accessed(entry);
        } else {
            self.probation.push(entry);
        }
        let mut evicted = Vec::new();
        while self.bytes() > self.budget {
            let victim = self.pick_victim(&key);
            self.evictions += 1;
            evicted.push(Eviction {
                key: victim.key,
                bytes: victim.size,
                reason: EvictionReason::Capacity,
            });
        }
        Ok(evicted)
    }

    /// Takes the capacity victim out: probation's LRU entry, unless probation is empty or holds
    /// only the entry just stored (`just_stored`), then protected's LRU entry.
    fn pick_victim(&mut self, just_stored: &[u8]) -> ModelEntry {
        let only_just_stored = self.probation.len() == 1 && self.probation[0].key == just_stored;
        let victim = if !self.probation.is_empty() && !only_just_stored {
            self.probation.remove(0)
        } else {
            assert!(
                !self.protected.is_empty(),
                "model: over budget with no victim but the entry just stored"
            );
            self.protected.remove(0)
        };
        assert!(
            victim.key != just_stored,
            "model: the entry just stored was chosen as a victim"
        );
        victim
    }

    /// `Store::remove`.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        if let Some(lfu) = &mut self.lfu {
            return lfu.remove(key);
        }
        self.take(key).is_some()
    }

    /// `Store::sweep_expired`.
    pub fn sweep_expired(&mut self, now: Timestamp, max: usize) -> Vec<Eviction> {
        if let Some(lfu) = &mut self.lfu {
            return lfu.sweep_expired(now, max);
        }
        let mut candidates: Vec<(Timestamp, u64, Bytes)> = self
            .probation
            .iter()
            .chain(self.protected.iter())
            .filter(|e| e.is_expired(now))
            .filter_map(|e| e.expires_at.map(|at| (at, e.seq, e.key.clone())))
            .collect();
        candidates.sort();
        let mut swept = Vec::new();
        for (_, _, key) in candidates.into_iter().take(max) {
            if let Some(entry) = self.take(&key) {
                self.expirations += 1;
                swept.push(Eviction {
                    key: entry.key,
                    bytes: entry.size,
                    reason: EvictionReason::Expired,
                });
            }
        }
        swept
    }

    /// `Store::retain`: removes every entry whose key `keep` rejects (not counted as evictions)
    /// and returns how many went.
    pub fn retain(&mut self, keep: impl Fn(&[u8]) -> bool) -> usize {
        if let Some(lfu) = &mut self.lfu {
            return lfu.retain(keep);
        }
        let before = self.len();
        self.probation.retain(|e| keep(&e.key));
        self.protected.retain(|e| keep(&e.key));
        before - self.len()
    }

    /// `Store::clear`: drops every entry, keeps the counters.
    pub fn clear(&mut self) {
        if let Some(lfu) = &mut self.lfu {
            return lfu.clear();
        }
        self.probation.clear();
        self.protected.clear();
    }

    /// `Store::stats`.
    pub fn stats(&self) -> StoreStats {
        if let Some(lfu) = &self.lfu {
            return lfu.stats();
        }
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

    /// Every entry, probation then protected, each list from least to most recently used.
    pub fn entries(&self) -> impl Iterator<Item = &ModelEntry> + '_ {
        self.probation.iter().chain(self.protected.iter())
    }
}
