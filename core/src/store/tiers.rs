//! The recency lists of a store and the moves between them.
//!
//! Two [`LruCache`]s (unbounded; hasher seeded by [`StoreConfig::hash_seed`](super::StoreConfig),
//! which changes no iteration order the store exposes: lists are walked in recency order) hold the
//! entries: `probation` (P) and `protected` (Q). Plain LRU uses P alone; LRU2 uses both, with Q
//! kept within its byte budget by demoting Q's least-recently-used entries to the front of P.
//! This module only moves entries and keeps byte counts; which entry to evict and what to count
//! is decided by [`Store`](super::Store).

use bytes::Bytes;
use foldhash::fast::FixedState;
use lru::LruCache;

use crate::time::Timestamp;

/// One stored value with its bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The cached value.
    pub(super) value: Bytes,
    /// When the entry stops being valid, if ever.
    pub(super) expires_at: Option<Timestamp>,
    /// Bytes charged for the entry: [`entry_size`](super::entry_size) of key and value.
    pub(super) size: u64,
    /// Insert sequence number; with `expires_at` it is the entry's key in the expiry index.
    pub(super) seq: u64,
}

impl Entry {
    /// Whether the entry is expired at `now` (deadline reached or passed).
    pub(super) fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a read of one key found ([`Tiers::access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    /// No entry under the key.
    Missing,
    /// An expired entry, left in place for the store to remove.
    Expired,
    /// A valid entry, now recorded as accessed.
    Hit {
        /// The cached value.
        value: Bytes,
        /// When it stops being valid, if ever.
        expires_at: Option<Timestamp>,
    },
}

impl Access {
    fn of(entry: Option<&Entry>, now: Timestamp) -> Access {
        match entry {
            None => Access::Missing,
            Some(entry) if entry.is_expired(now) => Access::Expired,
            Some(entry) => Access::Hit {
                value: entry.value.clone(),
                expires_at: entry.expires_at,
            },
        }
    }
}

type List = LruCache<Bytes, Entry, FixedState>;

/// Makes the protected list's hasher differ from probation's.
const PROTECTED_SEED_TWEAK: u64 = 0x9e37_79b9_7f4a_7c15;

/// An empty list without a count bound (the store's byte budget evicts) whose table grows with
/// its entries: one sized up front for the most entries the budget allows was mostly empty for
/// real entry sizes (and LRU2 sized two of them so), which spread hot keys over more cache lines
/// (measured: LRU2 / quick_cache 0.67 -> 0.82 at 1 thread, 0.60 -> 0.71 at 2, paired bench).
fn new_list(hash_seed: u64) -> List {
    LruCache::unbounded_with_hasher(FixedState::with_seed(hash_seed))
}

/// The probation and protected lists with their byte counts.
#[derive(Debug)]
pub(super) struct Tiers {
    probation: List,
    protected: List,
    probation_bytes: u64,
    protected_bytes: u64,
    /// Byte budget of the protected list; `None` for plain LRU (the protected list stays empty).
    protected_budget: Option<u64>,
}

impl Tiers {
    /// Empty lists; `protected_budget` is `None` for plain LRU.
    pub(super) fn new(protected_budget: Option<u64>, hash_seed: u64) -> Self {
        Tiers {
            probation: new_list(hash_seed),
            protected: new_list(hash_seed ^ PROTECTED_SEED_TWEAK),
            probation_bytes: 0,
            protected_bytes: 0,
            protected_budget,
        }
    }

    /// Bytes charged for all entries.
    pub(super) fn bytes(&self) -> u64 {
        self.probation_bytes + self.protected_bytes
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.probation.len() + self.protected.len()
    }

    /// The entry under `key`, without touching recency.
    pub(super) fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.probation
            .peek(key)
            .or_else(|| self.protected.peek(key))
    }

    /// Removes the entry under `key`, from whichever list holds it.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        if let Some((k, entry)) = self.probation.pop_entry(key) {
            self.probation_bytes -= entry.size;
            return Some((k, entry));
        }
        let (k, entry) = self.protected.pop_entry(key)?;
        self.protected_bytes -= entry.size;
        Some((k, entry))
    }

    /// Looks `key` up as a read and, if its entry is valid at `now`, records the access: plain LRU
    /// moves it to the MRU end of its list; LRU2 moves it to the MRU end of protected (promoting
    /// it out of probation, then rebalancing). An expired entry is reported and left for the
    /// store to remove; the other entries keep their order. One hash lookup for a hit in the list
    /// that holds most hits (protected under LRU2, probation under LRU).
    pub(super) fn access(&mut self, key: &[u8], now: Timestamp) -> Access {
        if self.protected_budget.is_none() {
            return Access::of(self.probation.get(key), now);
        }
        if !self.protected.is_empty() {
            // Promoting an entry within protected moves no bytes, so no rebalance is needed.
            if let Some(entry) = self.protected.get(key) {
                return Access::of(Some(entry), now);
            }
        }
        match self.probation.peek(key) {
            None => return Access::Missing,
            Some(entry) if entry.is_expired(now) => return Access::Expired,
            Some(_) => {}
        }
        let Some((key, entry)) = self.probation.pop_entry(key) else {
            return Access::Missing;
        };
        self.probation_bytes -= entry.size;
        let hit = Access::of(Some(&entry), now);
        self.push_protected(key, entry);
        self.rebalance();
        hit
    }

    /// Stores `entry` under `key` and returns the entry it replaced. A new key goes to the MRU end
    /// of probation; replacing an existing key counts as an access (see [`Tiers::access`]).
    pub(super) fn insert(&mut self, key: Bytes, entry: Entry) -> Option<Entry> {
        let old = self.remove(&key).map(|(_, old)| old);
        if old.is_none() || self.protected_budget.is_none() {
            self.probation_bytes += entry.size;
            self.probation.push(key, entry);
        } else {
            self.push_protected(key, entry);
            self.rebalance();
        }
        old
    }

    /// Removes the next capacity victim, never the entry under `keep`: probation's LRU entry,
    /// unless probation is empty or holds only `keep`, then protected's LRU entry. `None` if the
    /// only candidate is `keep` (or the store is empty).
    pub(super) fn pop_victim(&mut self, keep: &[u8]) -> Option<(Bytes, Entry)> {
        let only_keep = |list: &List| list.len() == 1 && list.contains(keep);
        if !self.probation.is_empty() && !only_keep(&self.probation) {
            let (key, entry) = self.probation.pop_lru()?;
            self.probation_bytes -= entry.size;
            return Some((key, entry));
        }
        if self
            .protected
            .peek_lru()
            .is_none_or(|(k, _)| k.as_ref() == keep)
        {
            return None;
        }
        let (key, entry) = self.protected.pop_lru()?;
        self.protected_bytes -= entry.size;
        Some((key, entry))
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.probation.clear();
        self.protected.clear();
        self.probation_bytes = 0;
        self.protected_bytes = 0;
    }

    fn push_protected(&mut self, key: Bytes, entry: Entry) {
        self.protected_bytes += entry.size;
        self.protected.push(key, entry);
    }

    /// While protected is over its budget and holds more than one entry, demotes its LRU entry to
    /// the MRU end of probation. The entry just moved in is protected's MRU, so it is demoted
    /// only if it is alone, which the loop never does. Demotion is not eviction.
    fn rebalance(&mut self) {
        let Some(budget) = self.protected_budget else {
            return;
        };
        while self.protected_bytes > budget && self.protected.len() > 1 {
            let Some((key, entry)) = self.protected.pop_lru() else {
                break;
            };
            self.protected_bytes -= entry.size;
            self.probation_bytes += entry.size;
            self.probation.push(key, entry);
        }
    }

    /// Every key, probation first then protected (iteration order of the lists, not of a hasher).
    pub(super) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.probation
            .iter()
            .chain(self.protected.iter())
            .map(|(k, _)| k)
    }

    /// Every entry, probation first then protected (list order, not a hasher's).
    pub(super) fn entries(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.probation.iter().chain(self.protected.iter())
    }

    /// Keys of probation then protected, each from least to most recently used (tests only).
    #[cfg(test)]
    pub(super) fn order(&self) -> (Vec<Bytes>, Vec<Bytes>) {
        let keys = |list: &List| list.iter().rev().map(|(k, _)| k.clone()).collect();
        (keys(&self.probation), keys(&self.protected))
    }

    /// Checks the byte counts and the protected budget (tests only); returns all entries.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Vec<(Bytes, Entry)> {
        let sum = |list: &List| list.iter().map(|(_, e)| e.size).sum::<u64>();
        assert_eq!(
            sum(&self.probation),
            self.probation_bytes,
            "probation byte count"
        );
        assert_eq!(
            sum(&self.protected),
            self.protected_bytes,
            "protected byte count"
        );
        match self.protected_budget {
            None => assert!(self.protected.is_empty(), "plain LRU never protects"),
            Some(budget) => assert!(
                self.protected_bytes <= budget || self.protected.len() <= 1,
                "protected over budget with {} entries",
                self.protected.len()
            ),
        }
        for (key, _) in self.probation.iter() {
            assert!(!self.protected.contains(key), "key in both lists");
        }
        let all = self.probation.iter().chain(self.protected.iter());
        all.map(|(k, e)| (k.clone(), e.clone())).collect()
    }
}
