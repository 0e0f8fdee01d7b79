//! One entry of the TinyLFU policy, in two parts: what a hit reads and writes ([`Node`], one
//! cache line), and what only the policy reads ([`Meta`], another line, kept in a parallel
//! array by [`Queues`](super::queues::Queues)).
//!
//! A hit compares the key, checks the deadline, records the use and clones the value. All of
//! that lives in the node: a copy of the key's first [`INLINE_KEY`] bytes with its length (a
//! key that short is compared there in full, without touching the key's own buffer), the value,
//! the deadline, the last-use tick and hit count packed in one word, and the entry's queue (so
//! that replacing a value, which moves its queue's byte total, reads this line alone). The owned
//! key, the hash and the queue links are the meta's. Kept apart, the nodes a hit can touch take
//! half the memory (and half the pages) they took as one 128-byte record: with the store over
//! its caches, fewer lines and TLB entries miss. A third line of padding on the one record cost
//! 5 % of the store's throughput (12 % in an earlier measurement); splitting it raised the
//! paired ratio to quick_cache (the store's throughput bench) from 0.83 to 0.90 at one thread
//! and from 1.01 to 1.07 at two.
//!
//! Before the one-line layout, a hit read the deadline, tick and count from the second line and
//! compared the key in its own buffer: stored keys own their bytes, so a short key's compare
//! cost a cold miss.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::MAX_HITS;
use crate::store::tiers::Entry;
use crate::store::{entry_size, MAX_STORE_ENTRIES};
use crate::time::Timestamp;

/// No entry index: the end of a queue.
pub(super) const NIL: usize = usize::MAX;

/// An entry index in 32 bits (`u32::MAX` is [`NIL`]), in links and index slots: a [`Meta`]
/// then fits one cache line and a slot four bytes. A store never holds
/// [`MAX_STORE_ENTRIES`] entries (its budget is capped), so every index fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link(u32);

impl Link {
    /// No entry.
    pub(super) const NIL: Link = Link(u32::MAX);

    /// The link to entry `i` (or [`Link::NIL`] for [`NIL`]); indices are below
    /// [`MAX_STORE_ENTRIES`].
    pub(super) fn to(i: usize) -> Link {
        debug_assert!(
            i < MAX_STORE_ENTRIES || i == NIL,
            "entry index {i} beyond the bound"
        );
        // Below `u32::MAX` by the store's entry bound (its budget is capped so that it can
        // never hold `MAX_STORE_ENTRIES` entries); NIL maps to `u32::MAX`.
        Link(u32::try_from(i).unwrap_or(u32::MAX))
    }

    /// The entry index ([`NIL`] for [`Link::NIL`]).
    pub(super) fn index(self) -> usize {
        if self == Link::NIL {
            NIL
        } else {
            self.0 as usize
        }
    }
}

/// Which queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// The admission window.
    Window,
    /// Main space, not hit since it entered (or was demoted to) it.
    Probation,
    /// Main space, hit while in probation.
    Protected,
    /// Left the window and waits for admission (only during an eviction).
    Candidate,
}

/// Keys up to this many bytes are compared on the node's first line alone.
const INLINE_KEY: usize = 14;

/// [`KeyProbe::len`] of a key longer than [`INLINE_KEY`].
const LONG_KEY: u8 = 0x7f;

/// The bit of [`KeyProbe::len`] that says the entry has a deadline.
const DEADLINE_BIT: u8 = 0x80;

/// The key as a hit first sees it: a short key whole, a long key's prefix; and whether the
/// entry has a deadline (a flag that would otherwise cost the deadline word a second word).
#[derive(Debug, Clone, Copy)]
struct KeyProbe {
    /// The key's length if at most [`INLINE_KEY`], else [`LONG_KEY`]; with [`DEADLINE_BIT`]
    /// if [`Node::deadline`] holds a deadline (one byte for both leaves one for the queue).
    len: u8,
    /// The key's first bytes (the whole key if short), zero-padded.
    bytes: [u8; INLINE_KEY],
}

impl KeyProbe {
    #[inline]
    fn new(key: &[u8], has_deadline: bool) -> Self {
        let mut bytes = [0; INLINE_KEY];
        let prefix = key.len().min(INLINE_KEY);
        bytes[..prefix].copy_from_slice(&key[..prefix]);
        let len = if key.len() <= INLINE_KEY {
            // At most INLINE_KEY, so it fits.
            u8::try_from(key.len()).unwrap_or(LONG_KEY)
        } else {
            LONG_KEY
        };
        let mut probe = KeyProbe { len, bytes };
        probe.set_deadline(has_deadline);
        probe
    }

    /// The key's length if at most [`INLINE_KEY`], else [`LONG_KEY`].
    #[inline]
    fn key_len(self) -> u8 {
        self.len & !DEADLINE_BIT
    }

    /// Whether the entry has a deadline.
    #[inline]
    fn has_deadline(self) -> bool {
        self.len & DEADLINE_BIT != 0
    }

    fn set_deadline(&mut self, has_deadline: bool) {
        self.len = self.key_len() | if has_deadline { DEADLINE_BIT } else { 0 };
    }
}

/// Whether `key` (at most [`INLINE_KEY`] bytes) is the start of `stored`: two overlapping
/// word compares for keys of 8 bytes or more, two half-word ones from 4, bytes below that
/// (what `memcmp` does, without its call for every lookup).
#[inline]
fn short_key_eq(stored: &[u8; INLINE_KEY], key: &[u8]) -> bool {
    let Some(stored) = stored.get(..key.len()) else {
        return false;
    };
    fn ends<const N: usize>(bytes: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
        Some((bytes.first_chunk::<N>()?, bytes.last_chunk::<N>()?))
    }
    if let (Some((a, b)), Some((c, d))) = (ends::<8>(stored), ends::<8>(key)) {
        return u64::from_ne_bytes(*a) == u64::from_ne_bytes(*c)
            && u64::from_ne_bytes(*b) == u64::from_ne_bytes(*d);
    }
    if let (Some((a, b)), Some((c, d))) = (ends::<4>(stored), ends::<4>(key)) {
        return u32::from_ne_bytes(*a) == u32::from_ne_bytes(*c)
            && u32::from_ne_bytes(*b) == u32::from_ne_bytes(*d);
    }
    stored == key
}

/// The last-use tick in the low 56 bits of the use word, the hit count in the high 8.
const TICK_BITS: u32 = 56;
/// Mask of the tick in the use word; ticks saturate there (2^56 accesses: decades at any rate
/// a store can serve).
const TICK_MASK: u64 = (1 << TICK_BITS) - 1;

fn pack_use(tick: u64, hits: u8) -> u64 {
    tick.min(TICK_MASK) | (u64::from(hits) << TICK_BITS)
}

fn unpack_use(word: u64) -> (u64, u8) {
    // The high byte is the hit count.
    (word & TICK_MASK, (word >> TICK_BITS) as u8)
}

/// What a hit reads and writes of an entry (see the module docs for the layout).
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Node {
    probe: KeyProbe,
    /// The queue the entry is in: here, not in the [`Meta`], so that replacing a value (which
    /// moves the queue's byte total) reads one line, the one its lookup read.
    pub(super) queue: Queue,
    value: Bytes,
    /// The deadline's milliseconds if the probe says the entry has one.
    deadline: u64,
    /// The last-use tick and the hit count ([`pack_use`]): refreshed by hits under a shared
    /// lock (the tick at a granularity, see the policy's docs; the count up to [`MAX_HITS`]).
    usage: AtomicU64,
}

/// What only the policy reads of an entry: its owned key, hash, expiry sequence and queue links.
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Meta {
    pub(super) key: Bytes,
    pub(super) hash: u64,
    /// Insert sequence number; with the deadline it is the entry's key in the expiry index
    /// (kept up to date only while the entry has a deadline: nothing reads it otherwise).
    seq: u64,
    /// Previous entry in the queue ([`NIL`] at the head), as a [`Link`].
    pub(super) prev: Link,
    /// Next entry in the queue ([`NIL`] at the tail), as a [`Link`].
    pub(super) next: Link,
    /// For a key the ghost remembered when it came back: the ticks from its last access before
    /// it left to the insert that brought it back ([`NO_GAP`] otherwise, or if beyond `u32`).
    reuse_gap: u32,
}

/// [`Meta::reuse_gap`] of a key the ghost did not remember.
const NO_GAP: u32 = u32::MAX;

impl Default for Meta {
    /// The meta of no entry (a vacant slot): an empty key, in no queue.
    fn default() -> Self {
        Meta {
            key: Bytes::new(),
            hash: 0,
            seq: 0,
            prev: Link::NIL,
            next: Link::NIL,
            reuse_gap: NO_GAP,
        }
    }
}

impl Meta {
    /// The next entry in its queue ([`NIL`] at the tail).
    pub(super) fn next(&self) -> usize {
        self.next.index()
    }

    /// The previous entry in its queue ([`NIL`] at the head).
    #[cfg(test)]
    pub(super) fn prev(&self) -> usize {
        self.prev.index()
    }

    /// The ticks between the key's last access before it left the store and its return, if
    /// the ghost remembered it when it came back (and the gap fits `u32`).
    pub(super) fn reuse_gap(&self) -> Option<u64> {
        (self.reuse_gap != NO_GAP).then_some(u64::from(self.reuse_gap))
    }

    /// Records the reuse gap of a key that came back (see [`Meta::reuse_gap`]).
    pub(super) fn set_reuse_gap(&mut self, gap: u64) {
        self.reuse_gap = u32::try_from(gap).unwrap_or(NO_GAP);
    }
}

/// The length of a key too long for the node. Out of line, as [`seq_of`] is: inlined, the
/// compiler turns the branch that guards such a read into a load done every time (a reference
/// may always be read) and a select, and a replacement then waits for the meta's line, which
/// hits never bring into the cache.
#[cold]
#[inline(never)]
fn long_key_len(meta: &Meta) -> usize {
    meta.key.len()
}

/// The sequence number of an entry with a deadline (out of line: see [`long_key_len`]).
#[cold]
#[inline(never)]
fn seq_of(meta: &Meta) -> u64 {
    meta.seq
}

impl Node {
    /// A new entry's two parts, in no queue yet, with no hits, last used at `tick`.
    pub(super) fn new(hash: u64, key: Bytes, entry: Entry, tick: u64) -> (Node, Meta) {
        debug_assert_eq!(entry.size, entry_size(key.len(), entry.value.len()));
        let node = Node {
            probe: KeyProbe::new(&key, entry.expires_at.is_some()),
            queue: Queue::Candidate,
            value: entry.value,
            deadline: entry.expires_at.map_or(0, Timestamp::as_millis),
            usage: AtomicU64::new(pack_use(tick, 0)),
        };
        let meta = Meta {
            key,
            hash,
            seq: entry.seq,
            ..Meta::default()
        };
        (node, meta)
    }

    /// Whether this entry is stored under `key`; `stored` gives the entry's own key, read only
    /// for a key longer than the node holds.
    #[inline]
    pub(super) fn has_key<'a>(&self, key: &[u8], stored: impl FnOnce() -> &'a Bytes) -> bool {
        if key.len() <= INLINE_KEY {
            usize::from(self.probe.key_len()) == key.len() && short_key_eq(&self.probe.bytes, key)
        } else {
            self.probe.key_len() == LONG_KEY
                && self.probe.bytes[..] == key[..INLINE_KEY]
                && stored() == key
        }
    }

    /// The value.
    pub(super) fn value(&self) -> &Bytes {
        &self.value
    }

    /// When the entry stops being valid, if ever.
    pub(super) fn expires_at(&self) -> Option<Timestamp> {
        self.probe
            .has_deadline()
            .then(|| Timestamp::from_millis(self.deadline))
    }

    /// Whether the entry is expired at `now` (deadline reached or passed).
    #[inline]
    pub(super) fn is_expired(&self, now: Timestamp) -> bool {
        self.probe.has_deadline() && self.deadline <= now.as_millis()
    }

    /// Bytes charged for the entry whose meta is `meta` ([`entry_size`] of key and value): the
    /// key's length is read from the meta only if the key is too long for the node.
    pub(super) fn size(&self, meta: &Meta) -> u64 {
        let key_len = match self.probe.key_len() {
            LONG_KEY => long_key_len(meta),
            short => usize::from(short),
        };
        entry_size(key_len, self.value.len())
    }

    /// The entry as the store's other policies hold it (for the policy's invariant checks).
    #[cfg(test)]
    pub(super) fn entry(&self, meta: &Meta) -> Entry {
        Entry {
            value: self.value.clone(),
            expires_at: self.expires_at(),
            size: self.size(meta),
            seq: meta.seq,
        }
    }

    /// Puts `entry` in place of the stored one (same key, whose meta is `meta`) and returns
    /// the one it replaced. The meta is read or written only for a long key or a deadline (old
    /// or new): the sequence number matters only with a deadline.
    pub(super) fn replace(&mut self, meta: &mut Meta, entry: Entry) -> Entry {
        debug_assert_eq!(entry.size, entry_size(meta.key.len(), entry.value.len()));
        let expires_at = self.expires_at();
        let seq = if expires_at.is_some() {
            seq_of(meta)
        } else {
            0
        };
        let size = self.size(meta);
        let value = std::mem::replace(&mut self.value, entry.value);
        self.probe.set_deadline(entry.expires_at.is_some());
        self.deadline = entry.expires_at.map_or(0, Timestamp::as_millis);
        if entry.expires_at.is_some() {
            meta.seq = entry.seq;
        }
        Entry {
            size,
            value,
            expires_at,
            seq,
        }
    }

    /// The key and the entry, taking the entry's two parts apart.
    pub(super) fn into_parts(self, meta: Meta) -> (Bytes, Entry) {
        let entry = Entry {
            expires_at: self.expires_at(),
            size: self.size(&meta),
            seq: meta.seq,
            value: self.value,
        };
        (meta.key, entry)
    }

    /// Hits since the policy last looked (0..=MAX_HITS).
    pub(super) fn hits(&self) -> u8 {
        unpack_use(self.usage.load(Ordering::Relaxed)).1
    }

    /// Sets the hit count (exclusive access).
    pub(super) fn set_hits(&mut self, hits: u8) {
        let usage = self.usage.get_mut();
        *usage = pack_use(unpack_use(*usage).0, hits);
    }

    /// Tick of the last recorded access.
    pub(super) fn seen(&self) -> u64 {
        unpack_use(self.usage.load(Ordering::Relaxed)).0
    }

    /// Records a hit at `tick` under a shared lock: the last-use tick moves to `tick` if the
    /// recorded one is at least `granule` older (a hot entry's line is written once per
    /// granule, not once per hit), and the hit count goes up unless it is at [`MAX_HITS`].
    /// Returns whether the count went up. A plain load and store, not a read-modify-write (on
    /// x86 a full barrier waiting for the lookup's cache misses): a concurrent hit may make it
    /// a no-op, never a wrong count or a tick from the past (every hit under one shared lock
    /// writes the same `tick`).
    #[inline]
    pub(super) fn record_hit(&self, tick: u64, granule: u64) -> bool {
        let word = self.usage.load(Ordering::Relaxed);
        let (seen, hits) = unpack_use(word);
        let seen = if tick.saturating_sub(seen) >= granule {
            tick
        } else {
            seen
        };
        let counted = hits < MAX_HITS;
        let updated = pack_use(seen, hits + u8::from(counted));
        if updated != word {
            self.usage.store(updated, Ordering::Relaxed);
        }
        counted
    }

    /// Records a replacement at `tick` (exclusive access): the last use is now, and the hit
    /// count goes up unless at [`MAX_HITS`]. Returns whether it did.
    pub(super) fn record_replacement(&mut self, tick: u64) -> bool {
        let (_, hits) = unpack_use(*self.usage.get_mut());
        let counted = hits < MAX_HITS;
        *self.usage.get_mut() = pack_use(tick, hits + u8::from(counted));
        counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &'static [u8], expires_at: Option<Timestamp>, key_len: usize) -> Entry {
        Entry {
            value: Bytes::from_static(value),
            expires_at,
            size: entry_size(key_len, value.len()),
            seq: 7,
        }
    }

    #[test]
    fn a_hit_reads_and_writes_one_cache_line_and_the_policy_another() {
        assert_eq!(std::mem::align_of::<Node>(), 64);
        assert_eq!(std::mem::size_of::<Node>(), 64);
        assert_eq!(std::mem::align_of::<Meta>(), 64);
        assert_eq!(std::mem::size_of::<Meta>(), 64);
    }

    #[test]
    fn keys_short_and_long_match_only_themselves() {
        let short = Bytes::from_static(b"key-1");
        let exact = Bytes::from_static(b"fourteen-bytes");
        let long = Bytes::from_static(b"a-key-longer-than-the-probe-1");
        for key in [&short, &exact, &long] {
            let (node, meta) = Node::new(1, key.clone(), entry(b"v", None, key.len()), 0);
            let has_key = |other: &[u8]| node.has_key(other, || &meta.key);
            assert!(has_key(key));
            let others: [&[u8]; 7] = [
                b"",
                b"key-2",
                b"key-",
                b"key-1\0",
                b"fourteen-bytez",
                b"a-key-longer-than-the-probe-2",
                b"a-key-longer-than-the-probe-1-",
            ];
            for other in others {
                assert_eq!(has_key(other), other == key.as_ref(), "{other:?}");
            }
        }
        let (empty, meta) = Node::new(1, Bytes::new(), entry(b"v", None, 0), 0);
        assert!(empty.has_key(b"", || &meta.key));
    }

    #[test]
    fn a_short_key_differing_in_any_one_byte_or_in_length_does_not_match() {
        let long = b"0123456789abcdef";
        for len in 0..=INLINE_KEY {
            let key = Bytes::copy_from_slice(&long[..len]);
            let (node, meta) = Node::new(1, key.clone(), entry(b"v", None, len), 0);
            let has_key = |other: &[u8]| node.has_key(other, || &meta.key);
            assert!(has_key(&key));
            for at in 0..len {
                let mut other = key.to_vec();
                other[at] ^= 0x20;
                assert!(!has_key(&other), "len {len}, byte {at}");
            }
            assert!(!has_key(&long[..len + 1]), "len {len} + 1");
            if len > 0 {
                assert!(!has_key(&long[..len - 1]), "len {len} - 1");
            }
        }
    }

    #[test]
    fn deadlines_round_trip_including_the_epoch_and_the_end_of_time() {
        let keys: [&'static [u8]; 3] = [b"k", b"fourteen-bytes", b"a-key-longer-than-the-probe"];
        for key in keys.map(Bytes::from_static) {
            for at in [
                None,
                Some(Timestamp::ZERO),
                Some(Timestamp::from_millis(5)),
                Some(Timestamp::from_millis(u64::MAX)),
            ] {
                let (node, meta) = Node::new(1, key.clone(), entry(b"v", at, key.len()), 0);
                assert_eq!(node.expires_at(), at);
                assert_eq!(
                    node.is_expired(Timestamp::from_millis(5)),
                    at <= Some(Timestamp::from_millis(5)) && at.is_some()
                );
                // The deadline flag shares a byte with the key's length: neither disturbs
                // the other.
                assert!(node.has_key(&key, || &meta.key), "{key:?} {at:?}");
                assert!(!node.has_key(&key[1..], || &meta.key), "{key:?} {at:?}");
                assert_eq!(node.size(&meta), entry_size(key.len(), 1));
                let (back_key, back) = node.into_parts(meta);
                assert_eq!(
                    (back_key, back.expires_at, back.seq, back.size),
                    (key.clone(), at, 7, entry_size(key.len(), 1))
                );
            }
        }
    }

    #[test]
    fn a_replacement_returns_the_old_entry_with_its_own_size_and_deadline() {
        let key = Bytes::from_static(b"k");
        let at = Some(Timestamp::from_millis(9));
        let (mut node, mut meta) = Node::new(1, key, entry(b"old!", at, 1), 0);
        let old = node.replace(&mut meta, entry(b"new", None, 1));
        assert_eq!(
            (old.value.as_ref(), old.expires_at, old.size, old.seq),
            (&b"old!"[..], at, entry_size(1, 4), 7)
        );
        assert_eq!(
            (node.value().as_ref(), node.expires_at()),
            (&b"new"[..], None)
        );
        assert_eq!(node.size(&meta), entry_size(1, 3));
        // A deadline comes back with its own sequence number (the expiry index's key).
        let later = Some(Timestamp::from_millis(20));
        let mut with_deadline = entry(b"newer", later, 1);
        with_deadline.seq = 9;
        node.replace(&mut meta, with_deadline);
        let (_, back) = node.into_parts(meta);
        assert_eq!((back.expires_at, back.seq), (later, 9));
    }

    #[test]
    fn hits_count_up_to_the_cap_and_move_the_tick_by_granules() {
        let (node, _) = Node::new(1, Bytes::from_static(b"k"), entry(b"v", None, 1), 10);
        for expected in 1..=MAX_HITS {
            assert!(node.record_hit(12, 5));
            assert_eq!(
                (node.hits(), node.seen()),
                (expected, 10),
                "within the granule"
            );
        }
        assert!(!node.record_hit(15, 5), "at the cap");
        assert_eq!((node.hits(), node.seen()), (MAX_HITS, 15));
        let mut node = node;
        node.set_hits(0);
        assert!(node.record_replacement(TICK_MASK + 10));
        assert_eq!((node.hits(), node.seen()), (1, TICK_MASK), "ticks saturate");
        assert!(node.record_replacement(20));
        assert_eq!((node.hits(), node.seen()), (2, 20));
    }

    #[test]
    fn links_round_trip_entry_indices_and_nil() {
        for i in [0, 1, 4_096, MAX_STORE_ENTRIES - 1] {
            assert_eq!(Link::to(i).index(), i);
        }
        assert_eq!(Link::to(NIL), Link::NIL);
        assert_eq!(Link::NIL.index(), NIL);
    }
}
