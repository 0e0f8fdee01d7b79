//! Counters a store keeps about itself, mergeable across shards and groups.

use std::ops::AddAssign;

/// Counters and current size of a store.
///
/// `hits`, `misses`, `inserts`, `evictions` and `expirations` count events since the store was
/// created (they survive [`Store::clear`](super::Store::clear)); `bytes` and `entries` describe the
/// contents at the moment the stats were taken. Sum shards or groups with [`StoreStats::merge`] or
/// `+=`.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// `get` calls that returned a value.
    pub hits: u64,
    /// `get` calls that found nothing, or only an expired entry.
    pub misses: u64,
    /// Inserts that stored an entry (new key or replacement).
    pub inserts: u64,
    /// Entries removed to make room (reason [`Capacity`](super::EvictionReason::Capacity)).
    pub evictions: u64,
    /// Expired entries removed by `get` or `sweep_expired`.
    pub expirations: u64,
    /// Bytes charged for the current entries (see [`entry_size`](super::entry_size)).
    pub bytes: u64,
    /// Number of current entries.
    pub entries: u64,
}

impl StoreStats {
    /// Adds every field of `other` to `self` (saturating), e.g. to sum the shards of a store.
    pub fn merge(&mut self, other: &StoreStats) {
        self.hits = self.hits.saturating_add(other.hits);
        self.misses = self.misses.saturating_add(other.misses);
        self.inserts = self.inserts.saturating_add(other.inserts);
        self.evictions = self.evictions.saturating_add(other.evictions);
        self.expirations = self.expirations.saturating_add(other.expirations);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.entries = self.entries.saturating_add(other.entries);
    }
}

impl AddAssign<&StoreStats> for StoreStats {
    fn add_assign(&mut self, other: &StoreStats) {
        self.merge(other);
    }
}

impl AddAssign for StoreStats {
    fn add_assign(&mut self, other: StoreStats) {
        self.merge(&other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_every_field() {
        let a = StoreStats {
            hits: 1,
            misses: 2,
            inserts: 3,
            evictions: 4,
            expirations: 5,
            bytes: 6,
            entries: 7,
        };
        let mut sum = a;
        sum += &a;
        sum += a;
        assert_eq!(
            sum,
            StoreStats {
                hits: 3,
                misses: 6,
                inserts: 9,
                evictions: 12,
                expirations: 15,
                bytes: 18,
                entries: 21,
            }
        );
        let mut saturated = StoreStats {
            hits: u64::MAX,
            ..StoreStats::default()
        };
        saturated.merge(&a);
        assert_eq!(saturated.hits, u64::MAX);
    }
}
