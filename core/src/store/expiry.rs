//! The expiry index: entries with a deadline, ordered earliest first.
//!
//! Keyed by `(expires_at, seq)` where `seq` is the store's insert sequence number of the entry, so
//! ties between equal deadlines break by insertion order and every index key is unique. Sweeping
//! pops from the front, so removing `n` expired entries costs `O(n log len)` whatever the store holds.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::time::Timestamp;

/// Keys of entries that have a deadline, earliest deadline first.
#[derive(Debug, Default)]
pub(super) struct ExpiryIndex {
    by_deadline: BTreeMap<(Timestamp, u64), Bytes>,
}

impl ExpiryIndex {
    /// Records that the entry `key` (insert number `seq`) expires at `at`.
    pub(super) fn insert(&mut self, at: Timestamp, seq: u64, key: Bytes) {
        let previous = self.by_deadline.insert((at, seq), key);
        debug_assert!(previous.is_none(), "insert sequence numbers are unique");
    }

    /// Forgets the record made by [`ExpiryIndex::insert`] with the same arguments.
    pub(super) fn remove(&mut self, expires_at: Option<Timestamp>, seq: u64) {
        if let Some(at) = expires_at {
            let removed = self.by_deadline.remove(&(at, seq));
            debug_assert!(removed.is_some(), "every entry with a deadline is indexed");
        }
    }

    /// Removes and returns the key with the earliest deadline if that deadline is `<= now`.
    pub(super) fn pop_expired(&mut self, now: Timestamp) -> Option<Bytes> {
        let (&(at, _), _) = self.by_deadline.first_key_value()?;
        if at > now {
            return None;
        }
        self.by_deadline.pop_first().map(|(_, key)| key)
    }

    /// Forgets every record.
    pub(super) fn clear(&mut self) {
        self.by_deadline.clear();
    }

    /// Number of indexed entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_deadline.len()
    }

    /// Whether `(expires_at, seq)` is indexed under `key`.
    #[cfg(test)]
    pub(super) fn contains(&self, expires_at: Timestamp, seq: u64, key: &[u8]) -> bool {
        self.by_deadline
            .get(&(expires_at, seq))
            .is_some_and(|k| k.as_ref() == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Option<Timestamp> {
        Some(Timestamp::from_millis(ms))
    }

    #[test]
    fn pops_earliest_first_then_by_sequence() {
        let mut index = ExpiryIndex::default();
        let t = Timestamp::from_millis;
        index.insert(t(30), 0, Bytes::from_static(b"c"));
        index.insert(t(10), 2, Bytes::from_static(b"b"));
        index.insert(t(10), 1, Bytes::from_static(b"a"));
        assert_eq!(index.len(), 3);

        let now = Timestamp::from_millis(20);
        assert_eq!(index.pop_expired(now).as_deref(), Some(&b"a"[..]));
        assert_eq!(index.pop_expired(now).as_deref(), Some(&b"b"[..]));
        assert_eq!(index.pop_expired(now), None, "c expires at 30, after now");
        assert_eq!(
            index.pop_expired(Timestamp::from_millis(30)).as_deref(),
            Some(&b"c"[..])
        );
        assert_eq!(index.pop_expired(Timestamp::from_millis(u64::MAX)), None);
    }

    #[test]
    fn remove_forgets_one_record() {
        let mut index = ExpiryIndex::default();
        let t = Timestamp::from_millis;
        index.insert(t(5), 0, Bytes::from_static(b"a"));
        index.insert(t(5), 1, Bytes::from_static(b"b"));
        index.remove(at(5), 0);
        index.remove(None, 7);
        assert!(index.contains(Timestamp::from_millis(5), 1, b"b"));
        assert_eq!(
            index.pop_expired(Timestamp::from_millis(5)).as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(index.len(), 0);
    }
}
