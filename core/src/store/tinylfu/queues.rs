//! The entries of the TinyLFU policy and the three FIFO queues that order them.
//!
//! Entries live in a slab and are linked, by slab index, into one of the queues (window,
//! probation, protected) or into none (a candidate waiting for admission). This module only
//! links, unlinks and counts; which entry moves where is decided by the policy.

use slab::Slab;

use super::node::{Link, Node, Queue, NIL};
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
        let size = self.nodes[i].size();
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
        let size = self.nodes[i].size();
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
                node.size(),
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
        let old = node.replace(entry);
        let (queue, new_size) = (node.queue, node.size());
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
