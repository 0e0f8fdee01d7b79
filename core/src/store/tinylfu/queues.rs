//! The entries of the TinyLFU policy and the three FIFO queues that order them.
//!
//! Entries live in a slab of [`Node`]s, what hits read, with their [`Meta`]s (key, hash, links)
//! at the same index in a parallel array, and are linked, by that index, into one of the queues
//! (window, probation, protected) or into none (a candidate waiting for admission). This module
//! only stores, links, unlinks and counts; which entry moves where is decided by the policy.

use slab::Slab;

use super::node::{Link, Meta, Node, Queue, NIL};
use crate::store::tiers::Entry;

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
    /// What hits read, by entry index. Private, as the metas are: an entry comes and goes
    /// through [`Queues::insert`] and [`Queues::remove`], which keep the two in step.
    nodes: Slab<Node>,
    /// What the policy reads, at the same index as its node (a vacant slot's is the default).
    metas: Vec<Meta>,
    pub(super) window: List,
    pub(super) probation: List,
    pub(super) protected: List,
}

impl Queues {
    /// No entries, room for `max_entries` made up front.
    pub(super) fn new(max_entries: usize) -> Self {
        Queues {
            nodes: Slab::with_capacity(max_entries),
            metas: Vec::with_capacity(max_entries),
            window: List::EMPTY,
            probation: List::EMPTY,
            protected: List::EMPTY,
        }
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The node of entry `i`.
    #[inline]
    pub(super) fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The node of entry `i`, to change it.
    pub(super) fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The meta of entry `i`.
    #[inline]
    pub(super) fn meta(&self, i: usize) -> &Meta {
        &self.metas[i]
    }

    /// Whether entry `i` is stored under `key`.
    #[inline]
    pub(super) fn has_key(&self, i: usize, key: &[u8]) -> bool {
        self.nodes[i].has_key(key, || &self.metas[i].key)
    }

    /// Bytes charged for entry `i`.
    pub(super) fn size(&self, i: usize) -> u64 {
        self.nodes[i].size(&self.metas[i])
    }

    /// Stores a new entry, in no queue; returns its index.
    pub(super) fn insert(&mut self, node: Node, meta: Meta) -> usize {
        let i = self.nodes.insert(node);
        // The slab hands out a vacant index or the next one past its end, which is ours too.
        debug_assert!(i <= self.metas.len(), "slab index {i} past the metas");
        if i == self.metas.len() {
            self.metas.push(meta);
        } else {
            self.metas[i] = meta;
        }
        i
    }

    /// Takes the (unlinked) entry `i` out; its slot's meta goes back to the default, so that
    /// the key is not held.
    pub(super) fn remove(&mut self, i: usize) -> (Node, Meta) {
        let node = self.nodes.remove(i);
        (node, std::mem::take(&mut self.metas[i]))
    }

    /// Whether every vacant slot's meta is the default one: a removed entry's key is not held
    /// (tests only).
    #[cfg(test)]
    pub(super) fn vacant_metas_hold_nothing(&self) -> bool {
        self.metas.len() >= self.nodes.len()
            && self
                .metas
                .iter()
                .enumerate()
                .all(|(i, meta)| self.nodes.contains(i) || meta.key.is_empty())
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
        let size = self.size(i);
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
            self.metas[old_tail].next = Link::to(i);
        }
        let meta = &mut self.metas[i];
        meta.prev = Link::to(old_tail);
        meta.next = Link::NIL;
    }

    /// Links the unlinked entry `i` at the head of `queue` (or just marks it a candidate).
    pub(super) fn push_head(&mut self, queue: Queue, i: usize) {
        let size = self.size(i);
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
            self.metas[old_head].prev = Link::to(i);
        }
        let meta = &mut self.metas[i];
        meta.prev = Link::NIL;
        meta.next = Link::to(old_head);
    }

    /// Unlinks entry `i` from its queue (a candidate is in none).
    pub(super) fn unlink(&mut self, i: usize) {
        let (size, queue) = (self.size(i), self.nodes[i].queue);
        let (prev, next) = {
            let meta = &self.metas[i];
            (meta.prev.index(), meta.next.index())
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
            self.metas[prev].next = Link::to(next);
        }
        if next != NIL {
            self.metas[next].prev = Link::to(prev);
        }
        let meta = &mut self.metas[i];
        meta.prev = Link::NIL;
        meta.next = Link::NIL;
    }

    /// Moves entry `i` from its queue to the tail of `queue`.
    pub(super) fn move_to_tail(&mut self, queue: Queue, i: usize) {
        self.unlink(i);
        self.push_tail(queue, i);
    }

    /// Changes the size of entry `i` (a replacement) and its queue's byte total.
    pub(super) fn resize(&mut self, i: usize, entry: Entry) -> Entry {
        let (node, meta) = (&mut self.nodes[i], &mut self.metas[i]);
        let old = node.replace(meta, entry);
        let (queue, new_size) = (node.queue, node.size(meta));
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
            at = self.metas[i].next();
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
        self.metas.clear();
        self.window = List::EMPTY;
        self.probation = List::EMPTY;
        self.protected = List::EMPTY;
    }
}
