//! The ghost: the most recent departures from the store, remembered by key hash only.
//!
//! A bounded FIFO of *records* `(hash, seen, dead)`: the key hash of an entry the policy evicted
//! (or whose admission it refused), the tick of that entry's last access, and whether it was
//! evicted because it was idle beyond the dead horizon. The policy asks, when it stores a new
//! key, whether the key left recently ([`Ghost::take`]): that answers two questions an entry
//! that is gone cannot answer any more — how long ago the key was last used, and whether
//! declaring it dead was a mistake.
//!
//! Exact rules (the reference model in `proptests` mirrors them):
//! - [`Ghost::push`] appends a record; then, while more than `capacity` records (vacant ones
//!   included) are held, the oldest is dropped. `capacity` is passed on every push (it grows
//!   with the store's peak entry count; it never shrinks).
//! - [`Ghost::take`] finds the live record of a hash, makes it vacant (it keeps its place in
//!   the FIFO) and returns it.
//! - [`Ghost::counts`] gives how many live records are marked dead and how many are not.
//!
//! Storage is a ring of records whose length is the capacity (re-laid out, oldest first, when
//! the capacity grows) and a hash table of ring positions: 16 bytes per record plus the table's
//! slot, sized up front, so memory never exceeds what the capacity implies.

use hashbrown::HashTable;

/// One departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The key's 64-bit hash (the store's seeded hash).
    pub(crate) hash: u64,
    /// Tick of the entry's last access before it left.
    pub(crate) seen: u64,
    /// Whether it was evicted for being idle beyond the dead horizon.
    pub(crate) dead: bool,
}

/// A slot of the ring: a record, live or vacant (taken back, still holding its place), packed
/// in 16 bytes: the hash, and the tick with the two flags in its top bits (ticks count
/// operations, so they never reach 2^62).
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    seen_and_flags: u64,
}

const DEAD_BIT: u64 = 1 << 62;
const LIVE_BIT: u64 = 1 << 63;

impl Slot {
    fn new(record: Record) -> Self {
        let dead = if record.dead { DEAD_BIT } else { 0 };
        Slot {
            hash: record.hash,
            seen_and_flags: (record.seen & !(DEAD_BIT | LIVE_BIT)) | dead | LIVE_BIT,
        }
    }

    fn record(self) -> Record {
        Record {
            hash: self.hash,
            seen: self.seen_and_flags & !(DEAD_BIT | LIVE_BIT),
            dead: self.seen_and_flags & DEAD_BIT != 0,
        }
    }

    fn is_live(self) -> bool {
        self.seen_and_flags & LIVE_BIT != 0
    }
}

/// Recent departures, by key hash; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    /// The ring, `capacity` long once full; `slots[next]` is the oldest once it wrapped.
    slots: Vec<Slot>,
    /// Most records held.
    capacity: usize,
    /// Position of the next write.
    next: usize,
    /// Positions of live records, by hash.
    index: HashTable<u32>,
    /// Live records marked dead, and the others.
    dead: u64,
    other: u64,
}

impl Ghost {
    /// Appends `record` to a FIFO of at most `capacity` records (at least 1).
    pub(crate) fn push(&mut self, record: Record, capacity: usize) {
        let capacity = capacity.max(1);
        if capacity > self.capacity {
            self.grow(capacity);
        }
        if self.slots.len() < self.capacity {
            self.next = self.slots.len();
            self.slots.push(Slot::new(record));
        } else {
            let old = self.slots[self.next];
            if old.is_live() {
                self.forget(old.record(), self.next);
            }
            self.slots[self.next] = Slot::new(record);
        }
        let position = u32::try_from(self.next).unwrap_or(u32::MAX);
        // A hash already held (a 64-bit hash collision of two keys) keeps both records; `take`
        // returns one of them.
        let slots = &self.slots;
        self.index
            .insert_unique(record.hash, position, |&p| slots[p as usize].hash);
        self.count(record, 1);
        self.next = (self.next + 1) % self.capacity;
    }

    /// Takes the live record of `hash` out (its slot stays, vacant), if there is one.
    pub(crate) fn take(&mut self, hash: u64) -> Option<Record> {
        let slots = &self.slots;
        let found = self
            .index
            .find_entry(hash, |&p| slots[p as usize].hash == hash)
            .ok()?;
        let (position, _) = found.remove();
        let slot = &mut self.slots[position as usize];
        slot.seen_and_flags &= !LIVE_BIT;
        let record = slot.record();
        self.count(record, -1);
        Some(record)
    }

    /// Live records marked dead, and live records not marked dead.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.dead, self.other)
    }

    /// Bytes of the ring and its index (both sized by the capacity).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    /// Re-lays the ring out, oldest record first, with room for `capacity` records.
    fn grow(&mut self, capacity: usize) {
        let mut slots = Vec::with_capacity(capacity);
        let (newer, older) = self.slots.split_at(self.next.min(self.slots.len()));
        let wrapped = self.slots.len() == self.capacity;
        if wrapped {
            slots.extend_from_slice(older);
        }
        slots.extend_from_slice(newer);
        if !wrapped {
            slots.extend_from_slice(older);
        }
        let mut index = HashTable::with_capacity(capacity);
        for (position, slot) in slots.iter().enumerate() {
            if slot.is_live() {
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                index.insert_unique(slot.hash, position, |&p: &u32| slots[p as usize].hash);
            }
        }
        self.next = slots.len() % capacity;
        self.slots = slots;
        self.capacity = capacity;
        self.index = index;
    }

    /// Drops the index entry of the live record at `position` (about to be overwritten).
    fn forget(&mut self, record: Record, position: usize) {
        let position = u32::try_from(position).unwrap_or(u32::MAX);
        if let Ok(entry) = self.index.find_entry(record.hash, |&p| p == position) {
            entry.remove();
        }
        self.count(record, -1);
    }

    fn count(&mut self, record: Record, delta: i8) {
        let counter = if record.dead {
            &mut self.dead
        } else {
            &mut self.other
        };
        if delta > 0 {
            *counter += 1;
        } else {
            *counter -= 1;
        }
    }

    /// Every record, oldest first, `None` for vacant slots (tests only).
    #[cfg(test)]
    pub(crate) fn records(&self) -> Vec<Option<Record>> {
        let wrapped = self.slots.len() == self.capacity;
        let start = if wrapped { self.next } else { 0 };
        (0..self.slots.len())
            .map(|i| self.slots[(start + i) % self.slots.len()])
            .map(|slot| slot.is_live().then(|| slot.record()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hash: u64, dead: bool) -> Record {
        Record {
            hash,
            seen: hash * 10,
            dead,
        }
    }

    #[test]
    fn reports_the_memory_of_its_ring_and_index() {
        // 16 bytes a record in the ring, and per index slot a 4-byte position and a control
        // byte; the index holds at least one slot a record and, sized up front, under two.
        let mut ghost = Ghost::default();
        assert_eq!(ghost.memory_bytes(), 0);
        for hash in 1..=1024 {
            ghost.push(record(hash, false), 1024);
        }
        let bytes = ghost.memory_bytes();
        assert_eq!(
            bytes,
            ghost.slots.capacity() * 16 + ghost.index.capacity() * (4 + 1)
        );
        assert!(bytes >= 1024 * (16 + 5), "{bytes} B for 1,024 records");
        assert!(bytes < 1024 * (16 + 2 * 5), "{bytes} B for 1,024 records");
    }

    #[test]
    fn keeps_the_last_records_and_takes_them_back() {
        let mut ghost = Ghost::default();
        for hash in 1..=5 {
            ghost.push(record(hash, hash % 2 == 0), 4);
        }
        let live: Vec<_> = ghost
            .records()
            .into_iter()
            .flatten()
            .map(|r| r.hash)
            .collect();
        assert_eq!(live, vec![2, 3, 4, 5], "the oldest went");
        assert_eq!(ghost.counts(), (2, 2));
        assert_eq!(ghost.take(1), None);
        assert_eq!(ghost.take(4), Some(record(4, true)));
        assert_eq!(ghost.take(4), None, "taken once");
        assert_eq!(ghost.counts(), (1, 2));
        // A taken record keeps its place in the FIFO: two more pushes drop 2 and 3, not 4's slot.
        ghost.push(record(6, false), 4);
        ghost.push(record(7, false), 4);
        let records = ghost.records();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[0], None,
            "4 was taken back but still holds its place"
        );
        let live: Vec<_> = records.into_iter().flatten().map(|r| r.hash).collect();
        assert_eq!(live, vec![5, 6, 7]);
        assert_eq!(ghost.counts(), (0, 3));
    }

    #[test]
    fn growing_keeps_order_and_records() {
        let mut ghost = Ghost::default();
        for hash in 1..=6 {
            ghost.push(record(hash, false), 4);
        }
        assert_eq!(ghost.take(5).map(|r| r.hash), Some(5));
        ghost.push(record(7, true), 8);
        let records = ghost.records();
        let hashes: Vec<_> = records.iter().map(|r| r.map(|r| r.hash)).collect();
        assert_eq!(hashes, vec![Some(3), Some(4), None, Some(6), Some(7)]);
        for hash in 8..=12 {
            ghost.push(record(hash, false), 8);
        }
        let live: Vec<_> = ghost
            .records()
            .into_iter()
            .flatten()
            .map(|r| r.hash)
            .collect();
        assert_eq!(live, vec![6, 7, 8, 9, 10, 11, 12], "3 and 4 aged out");
        assert_eq!(ghost.counts(), (1, 6));
        for hash in [3, 4, 5] {
            assert_eq!(ghost.take(hash), None);
        }
        assert_eq!(ghost.take(7), Some(record(7, true)));
        assert!(ghost.memory_bytes() >= 8 * 16);
    }
}
