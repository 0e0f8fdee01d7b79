//! Counters a store keeps about itself, mergeable across shards and groups.

use std::ops::AddAssign;

crate::counters! {
    /// Counters and current size of a store.
    ///
    /// `hits`, `misses`, `inserts`, `evictions` and `expirations` count events since the store
    /// was created (they survive [`Store::clear`](super::Store::clear)); `bytes` and `entries`
    /// describe the contents at the moment the stats were taken. Sum shards or groups with
    /// [`StoreStats::merge`] or `+=`.
    pub struct StoreStats / AtomicStoreStats {
        /// `get` calls that returned a value.
        hits,
        /// `get` calls that found nothing, or only an expired entry.
        misses,
        /// Inserts that stored an entry (new key or replacement).
        inserts,
        /// Entries removed to make room (reason [`Capacity`](super::EvictionReason::Capacity)).
        evictions,
        /// Expired entries removed by `get` or `sweep_expired`.
        expirations,
        /// Bytes charged for the current entries (see [`entry_size`](super::entry_size)).
        bytes,
        /// Number of current entries.
        entries,
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
