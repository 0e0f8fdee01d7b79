//! The entries of the TinyLFU policy and the three FIFO queues that order them.
//!
//! Entries live in a slab and are linked, by slab index, into one of the queues (window,
//! probation, protected) or into none (a candidate waiting for admission). This module only
//! links, unlinks and counts; which entry moves where is decided by the policy.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use bytes::Bytes;
use slab::Slab;

use super::MAX_HITS;
use crate::store::tiers::Entry;
use crate::store::MAX_STORE_ENTRIES;

/// No entry index: the end of a queue.
pub(super) const NIL: usize = usize::MAX;

/// An entry index in 32 bits (`u32::MAX` is [`NIL`]), in links and index slots: a node then
/// fits two cache lines and a slot four bytes. A store never holds
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

/// One stored entry with its queue links. Laid out so that what every lookup reads (hash, key,
/// value, expiry) comes first, and what hits on other threads write (the hit count and the
/// last-use tick) after it; aligned to a cache line and 128 bytes long, so that a node spans
/// exactly two lines (with 64-bit links it took 136 bytes and often three).
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Node {
    pub(super) hash: u64,
    pub(super) key: Bytes,
    pub(super) entry: Entry,
    /// Previous entry in the queue ([`NIL`] at the head), as a [`Link`].
    prev: Link,
    /// Next entry in the queue ([`NIL`] at the tail), as a [`Link`].
    next: Link,
    /// Tick of the last access (insert, replacement or hit), refreshed by hits under a shared
    /// lock at a granularity (see the policy's docs).
    seen: AtomicU64,
    pub(super) queue: Queue,
    /// Hits since the policy last looked (0..=MAX_HITS); raised under a shared lock.
    hits: AtomicU8,
    /// For a key the ghost remembered when it came back: the ticks from its last access before
    /// it left to the insert that brought it back ([`NO_GAP`] otherwise, or if beyond `u32`).
    reuse_gap: u32,
}

/// [`Node::reuse_gap`] of a key the ghost did not remember.
const NO_GAP: u32 = u32::MAX;

impl Node {
    /// A new entry, in no queue yet, with no hits, last used at `tick`.
    pub(super) fn new(hash: u64, key: Bytes, entry: Entry, tick: u64) -> Self {
        Node {
            hash,
            key,
            entry,
            prev: Link::NIL,
            next: Link::NIL,
            seen: AtomicU64::new(tick),
            queue: Queue::Candidate,
            hits: AtomicU8::new(0),
            reuse_gap: NO_GAP,
        }
    }

    /// The previous entry in its queue ([`NIL`] at the head).
    #[cfg(test)]
    pub(super) fn prev(&self) -> usize {
        self.prev.index()
    }

    /// The next entry in its queue ([`NIL`] at the tail).
    pub(super) fn next(&self) -> usize {
        self.next.index()
    }

    /// The ticks between the key's last access before it left the store and its return, if
    /// the ghost remembered it when it came back (and the gap fits `u32`).
    pub(super) fn reuse_gap(&self) -> Option<u64> {
        (self.reuse_gap != NO_GAP).then_some(u64::from(self.reuse_gap))
    }

    /// Records the reuse gap of a key that came back (see [`Node::reuse_gap`]).
    pub(super) fn set_reuse_gap(&mut self, gap: u64) {
        self.reuse_gap = u32::try_from(gap).unwrap_or(NO_GAP);
    }

    pub(super) fn hits(&self) -> u8 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(super) fn set_hits(&mut self, hits: u8) {
        *self.hits.get_mut() = hits;
    }

    /// Raises the hit count by one unless it is at [`MAX_HITS`]; returns whether it did. A plain
    /// load and store, not a read-modify-write (which on x86 is a full barrier waiting for the
    /// lookup's cache misses): a concurrent hit may make it a no-op, never a wrong count.
    pub(super) fn record_hit(&self) -> bool {
        let hits = self.hits.load(Ordering::Relaxed);
        if hits < MAX_HITS {
            self.hits.store(hits + 1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Tick of the last recorded access.
    pub(super) fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Records an access at `tick` if the one recorded is at least `granule` older (a hit under
    /// a shared lock: a hot entry's cache line is written once per granule, not once per hit).
    pub(super) fn touch(&self, tick: u64, granule: u64) {
        if tick.saturating_sub(self.seen()) >= granule {
            self.seen.store(tick, Ordering::Relaxed);
        }
    }

    /// Records an access at `tick` (exclusive access).
    pub(super) fn set_seen(&mut self, tick: u64) {
        *self.seen.get_mut() = tick;
    }
}

/// A doubly linked FIFO of entry indices, head first, with its byte total.
#[derive(Debug, Clone, Copy)]
pub(super) struct List {
    pub(super) head: usize,
    pub(super) tail: usize,
    pub(super) len: usize,
    pub(super) bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        bytes: 0,
    };
}

/// The entries and the three queues.
#[derive(Debug)]
pub(super) struct Queues {
    pub(super) nodes: Slab<Node>,
    pub(super) window: List,
    pub(super) probation: List,
    pub(super) protected: List,
}

impl Queues {
    /// No entries, room for `max_entries` made up front.
    pub(super) fn new(max_entries: usize) -> Self {
        Queues {
            nodes: Slab::with_capacity(max_entries),
            window: List::EMPTY,
            probation: List::EMPTY,
            protected: List::EMPTY,
        }
    }

    /// The list of `queue` (`None` for candidates).
    #[cfg(test)]
    pub(super) fn list(&self, queue: Queue) -> Option<&List> {
        match queue {
            Queue::Window => Some(&self.window),
            Queue::Probation => Some(&self.probation),
            Queue::Protected => Some(&self.protected),
            Queue::Candidate => None,
        }
    }

    fn list_mut(&mut self, queue: Queue) -> Option<&mut List> {
        match queue {
            Queue::Window => Some(&mut self.window),
            Queue::Probation => Some(&mut self.probation),
            Queue::Protected => Some(&mut self.protected),
            Queue::Candidate => None,
        }
    }

    /// Links the unlinked entry `i` at the tail of `queue` (or just marks it a candidate).
    pub(super) fn push_tail(&mut self, queue: Queue, i: usize) {
        let size = self.nodes[i].entry.size;
        self.nodes[i].queue = queue;
        let Some(list) = self.list_mut(queue) else {
            return;
        };
        let old_tail = list.tail;
        list.tail = i;
        if old_tail == NIL {
            list.head = i;
        }
        list.len += 1;
        list.bytes += size;
        if old_tail != NIL {
            self.nodes[old_tail].next = Link::to(i);
        }
        let node = &mut self.nodes[i];
        node.prev = Link::to(old_tail);
        node.next = Link::NIL;
    }

    /// Links the unlinked entry `i` at the head of `queue` (or just marks it a candidate).
    pub(super) fn push_head(&mut self, queue: Queue, i: usize) {
        let size = self.nodes[i].entry.size;
        self.nodes[i].queue = queue;
        let Some(list) = self.list_mut(queue) else {
            return;
        };
        let old_head = list.head;
        list.head = i;
        if old_head == NIL {
            list.tail = i;
        }
        list.len += 1;
        list.bytes += size;
        if old_head != NIL {
            self.nodes[old_head].prev = Link::to(i);
        }
        let node = &mut self.nodes[i];
        node.prev = Link::NIL;
        node.next = Link::to(old_head);
    }

    /// Unlinks entry `i` from its queue (a candidate is in none).
    pub(super) fn unlink(&mut self, i: usize) {
        let (queue, prev, next, size) = {
            let node = &self.nodes[i];
            (
                node.queue,
                node.prev.index(),
                node.next.index(),
                node.entry.size,
            )
        };
        let Some(list) = self.list_mut(queue) else {
            return;
        };
        if list.head == i {
            list.head = next;
        }
        if list.tail == i {
            list.tail = prev;
        }
        list.len -= 1;
        list.bytes -= size;
        if prev != NIL {
            self.nodes[prev].next = Link::to(next);
        }
        if next != NIL {
            self.nodes[next].prev = Link::to(prev);
        }
        let node = &mut self.nodes[i];
        node.prev = Link::NIL;
        node.next = Link::NIL;
    }

    /// Moves entry `i` from its queue to the tail of `queue`.
    pub(super) fn move_to_tail(&mut self, queue: Queue, i: usize) {
        self.unlink(i);
        self.push_tail(queue, i);
    }

    /// Changes the size of entry `i` (a replacement) and its queue's byte total.
    pub(super) fn resize(&mut self, i: usize, entry: Entry) -> Entry {
        let node = &mut self.nodes[i];
        let old = std::mem::replace(&mut node.entry, entry);
        let (queue, new_size) = (node.queue, node.entry.size);
        if let Some(list) = self.list_mut(queue) {
            list.bytes = list.bytes - old.size + new_size;
        }
        old
    }

    /// The entry indices of `list`, head to tail.
    pub(super) fn iter(&self, list: List) -> impl Iterator<Item = usize> + '_ {
        let mut at = list.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let i = at;
            at = self.nodes[i].next();
            Some(i)
        })
    }

    /// Every entry index: window, then probation, then protected, each head to tail.
    pub(super) fn all(&self) -> impl Iterator<Item = usize> + '_ {
        [self.window, self.probation, self.protected]
            .into_iter()
            .flat_map(move |list| self.iter(list))
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.window = List::EMPTY;
        self.probation = List::EMPTY;
        self.protected = List::EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_aligned_to_a_cache_line_and_two_lines_long() {
        // A lookup reads the node's hash, key, value and expiry: aligned to a cache line and
        // at most two lines long, a node never straddles a third line.
        assert_eq!(std::mem::align_of::<Node>(), 64);
        assert_eq!(std::mem::size_of::<Node>(), 128);
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
