//! The TinyLFU policy: an adaptive admission window and a segmented main space over CLOCK queues,
//! with TinyLFU admission from a frequency sketch.
//!
//! Caffeine's W-TinyLFU with every LRU list replaced by a FIFO queue plus per-entry hit bits
//! (CLOCK, "lazy promotion" in the words of the SIEVE and S3-FIFO papers), so that a hit
//! changes only atomics and can be served under a shared lock:
//!
//! - **Queues.** A *window* W (new keys), and a main space of *probation* P and *protected* Q.
//!   Every entry carries a hit counter `h` (0..=[`MAX_HITS`]) that a hit raises by one.
//! - **Budgets.** W may hold `window_budget` bytes (adapted by the [`climber`]); Q may hold
//!   `protected_budget = (budget - window_budget) * 80 / 100` bytes; the store holds `budget`.
//! - **Hit.** `h = min(h + 1, MAX_HITS)` and the key's [`sketch`] counters go up by one. Nothing
//!   moves.
//! - **Insert of a new key.** Its sketch counters go up by one and it enters W's tail.
//! - **Window overflow.** While W is over its budget: the head of W, if `h > 0`, gets `h = 0` and
//!   goes back to W's tail (second chance); else it leaves W as a *candidate* for the main space.
//! - **Victim.** The head of P, if `h > 0`, is promoted: `h = 0`, to Q's tail, then Q is brought
//!   within its budget by [demotion](TinyLfu::demote_protected); repeat. An `h = 0` head of P is
//!   the victim. With P empty: the CLOCK of Q (head with `h > 0`: `h -= 1`, to the tail; else the
//!   victim). With Q empty too: the head of W.
//! - **Admission.** While the store is over budget, the oldest remaining candidate `c` meets the
//!   victim `v`: `v` is evicted if `freq(c) > freq(v)`, or, when `freq(c) >= `[`WARM`], with
//!   probability 1/128 from the seeded generator (so an attacker cannot pin a hot victim); else
//!   `c` is evicted. Candidates that survive join P's tail in order.
//! - The entry just stored is never a victim or a rejected candidate of its own insert.

mod climber;
mod sketch;

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use slab::Slab;

use super::tiers::{Access, Entry};
use crate::time::Timestamp;
use climber::Climber;
use sketch::Sketch;

/// Largest per-entry hit count.
pub const MAX_HITS: u8 = 3;

/// Sketch estimate from which a losing candidate is still admitted with probability 1/128.
pub const WARM: u8 = 6;

/// Initial window budget: `budget / INITIAL_WINDOW_DIVISOR` (1 %).
pub const INITIAL_WINDOW_DIVISOR: u64 = 100;

/// Largest window budget: `budget * MAX_WINDOW_PERCENT / 100`.
pub const MAX_WINDOW_PERCENT: u64 = 80;

/// Share of the main space (`budget - window_budget`) the protected queue may hold.
pub const PROTECTED_PERCENT: u64 = 80;

/// Sketch aging and climber samples: every `SAMPLE_FACTOR * entries` accesses.
pub const SAMPLE_FACTOR: u64 = 10;

/// The sketch never takes more than `budget / SKETCH_BUDGET_DIVISOR` bytes.
pub const SKETCH_BUDGET_DIVISOR: u64 = 16;

/// No entry index: the end of a queue.
const NIL: usize = usize::MAX;

/// Which queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// The admission window.
    Window,
    /// Main space, not yet hit there.
    Probation,
    /// Main space, hit while in probation.
    Protected,
    /// Left the window and waits for admission (only inside an eviction).
    Candidate,
}

/// One stored entry with its queue links.
#[derive(Debug)]
struct Node {
    key: Bytes,
    entry: Entry,
    hash: u64,
    queue: Queue,
    prev: usize,
    next: usize,
    /// Hits since the policy last looked (0..=MAX_HITS); raised under a shared lock.
    hits: AtomicU8,
}

impl Node {
    fn hits(&self) -> u8 {
        self.hits.load(Ordering::Relaxed)
    }

    fn set_hits(&mut self, hits: u8) {
        *self.hits.get_mut() = hits;
    }

    /// Raises the hit count by one up to [`MAX_HITS`]; lossy only under a concurrent raise.
    fn record_hit(&self) {
        let hits = self.hits.load(Ordering::Relaxed);
        if hits < MAX_HITS {
            let _ =
                self.hits
                    .compare_exchange(hits, hits + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// A doubly linked FIFO of entry indices, head first, with its byte total.
#[derive(Debug, Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
    len: usize,
    bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        bytes: 0,
    };
}

/// A splitmix64 generator seeded from the store's seed: the only randomness of the policy.
#[derive(Debug, Clone)]
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// State of the TinyLFU policy: entries, queues, sketch and climber.
#[derive(Debug)]
pub(super) struct TinyLfu {
    nodes: Slab<Node>,
    index: HashTable<usize>,
    hasher: FixedState,
    window: List,
    probation: List,
    protected: List,
    /// Bytes of all entries (queues and pending candidates).
    bytes: u64,
    budget: u64,
    window_budget: u64,
    sketch: Sketch,
    climber: Climber,
    rng: SplitMix,
    /// Most entries held at once so far: sizes the sketch and the samples.
    peak_len: usize,
    /// Accesses (hits + stored inserts) counted when the sketch was last halved.
    aged_at: u64,
    /// Stored inserts so far.
    inserts: u64,
}

impl TinyLfu {
    /// An empty policy for a store of `budget` bytes whose hashes and generator derive from
    /// `seed`.
    pub(super) fn new(budget: u64, seed: u64) -> Self {
        TinyLfu {
            nodes: Slab::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(seed),
            window: List::EMPTY,
            probation: List::EMPTY,
            protected: List::EMPTY,
            bytes: 0,
            budget,
            window_budget: budget / INITIAL_WINDOW_DIVISOR,
            sketch: Sketch::new(0),
            climber: Climber::new(budget),
            rng: SplitMix(seed),
            peak_len: 0,
            aged_at: 0,
            inserts: 0,
        }
    }

    /// The 64-bit hash of `key` used by the index and the sketch.
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<usize> {
        let nodes = &self.nodes;
        self.index.find(hash, |&i| nodes[i].key == key).copied()
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of all entries.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the frequency sketch.
    pub(super) fn sketch_bytes(&self) -> usize {
        self.sketch.memory_bytes()
    }

    /// The entry under `key`, without any effect.
    pub(super) fn peek(&self, key: &[u8]) -> Option<&Entry> {
        let i = self.find(key, self.hash(key))?;
        Some(&self.nodes[i].entry)
    }

    /// A read of `key` at `now` under a shared lock: a valid entry records a hit (its hit count
    /// and the sketch); an expired one is reported and left in place.
    pub(super) fn access(&self, key: &[u8], now: Timestamp) -> Access {
        let hash = self.hash(key);
        let Some(i) = self.find(key, hash) else {
            return Access::Missing;
        };
        let node = &self.nodes[i];
        if node.entry.is_expired(now) {
            return Access::Expired;
        }
        node.record_hit();
        self.sketch.increment(hash);
        Access::Hit {
            value: node.entry.value.clone(),
            expires_at: node.entry.expires_at,
        }
    }

    /// Ages the sketch and adapts the window when their samples are full; `hits` and `misses`
    /// are the store's running counts. Called before every insert.
    pub(super) fn maintain(&mut self, hits: u64, misses: u64) {
        let sample = SAMPLE_FACTOR * self.peak_len.max(1) as u64;
        let accesses = hits + self.inserts;
        if accesses - self.aged_at >= sample {
            self.sketch.halve();
            self.aged_at = accesses;
        }
        if let Some(delta) = self.climber.observe(hits, misses, sample) {
            let max = self.budget / 100 * MAX_WINDOW_PERCENT
                + self.budget % 100 * MAX_WINDOW_PERCENT / 100;
            self.window_budget = self.window_budget.saturating_add_signed(delta).min(max);
            self.demote_protected(NIL);
        }
    }

    /// Stores `entry` under `key` and returns the entry it replaced. A replacement keeps the
    /// entry's place and counts as a hit; a new key enters the window's tail. Both count one
    /// access in the sketch. Returns the entry's index (for [`TinyLfu::evict`]'s `keep`).
    pub(super) fn insert(&mut self, key: Bytes, entry: Entry) -> (usize, Option<Entry>) {
        let hash = self.hash(&key);
        self.sketch.increment(hash);
        self.inserts += 1;
        if let Some(i) = self.find(&key, hash) {
            let node = &mut self.nodes[i];
            let old = std::mem::replace(&mut node.entry, entry);
            let (new_size, queue) = (node.entry.size, node.queue);
            node.record_hit();
            self.bytes = self.bytes - old.size + new_size;
            if let Some(list) = self.list_mut(queue) {
                list.bytes = list.bytes - old.size + new_size;
            }
            return (i, Some(old));
        }
        let size = entry.size;
        let i = self.nodes.insert(Node {
            key,
            entry,
            hash,
            queue: Queue::Window,
            prev: NIL,
            next: NIL,
            hits: AtomicU8::new(0),
        });
        let nodes = &self.nodes;
        self.index.insert_unique(hash, i, |&j| nodes[j].hash);
        self.bytes += size;
        self.push_tail(Queue::Window, i);
        if self.nodes.len() > self.peak_len {
            self.peak_len = self.nodes.len();
            self.grow_sketch();
        }
        (i, None)
    }

    /// Removes the entry under `key`.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        let i = self.find(key, self.hash(key))?;
        Some(self.take(i))
    }

    /// Evicts until the store fits its budget, never the entry `keep` (the one just stored);
    /// returns the evicted entries in eviction order.
    pub(super) fn evict(&mut self, keep: usize) -> Vec<(Bytes, Entry)> {
        let mut candidates = self.drain_window(keep);
        let mut evicted = Vec::new();
        while self.bytes > self.budget {
            let victim = self.select_victim(keep);
            let loser = match (candidates.front().copied(), victim) {
                (None, None) => break,
                (Some(c), None) => {
                    candidates.pop_front();
                    c
                }
                (None, Some(v)) => v,
                (Some(c), Some(v)) => {
                    if self.admit(c, v) {
                        v
                    } else {
                        candidates.pop_front();
                        c
                    }
                }
            };
            evicted.push(self.take(loser));
        }
        for c in candidates {
            self.push_tail(Queue::Probation, c);
        }
        evicted
    }

    /// Every key, window then probation then protected, each from head to tail.
    pub(super) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        [self.window, self.probation, self.protected]
            .into_iter()
            .flat_map(move |list| self.iter_list(list))
            .map(move |i| &self.nodes[i].key)
    }

    /// Drops every entry; the sketch, the climber and the window budget are kept.
    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.index.clear();
        self.window = List::EMPTY;
        self.probation = List::EMPTY;
        self.protected = List::EMPTY;
        self.bytes = 0;
    }

    /// Moves window entries out while the window is over budget (second chance for hit ones);
    /// returns the candidates, oldest first. `keep` stays in the window.
    fn drain_window(&mut self, keep: usize) -> VecDeque<usize> {
        let mut candidates = VecDeque::new();
        // Each entry gets at most one second chance per drain.
        let mut chances = self.window.len;
        while self.window.bytes > self.window_budget && self.window.head != NIL {
            let head = self.window.head;
            if head == keep || (chances > 0 && self.nodes[head].hits() > 0) {
                if self.window.len == 1 {
                    break;
                }
                chances = chances.saturating_sub(1);
                self.unlink(head);
                self.nodes[head].set_hits(0);
                self.push_tail(Queue::Window, head);
                continue;
            }
            self.unlink(head);
            self.nodes[head].queue = Queue::Candidate;
            candidates.push_back(head);
        }
        candidates
    }

    /// The next capacity victim (still linked), never `keep`: see the module docs.
    fn select_victim(&mut self, keep: usize) -> Option<usize> {
        // Every pass either promotes, rotates or lowers a hit count, so the loop ends.
        loop {
            let head = self.probation.head;
            if head != NIL {
                if head == keep || self.nodes[head].hits() > 0 {
                    self.unlink(head);
                    self.nodes[head].set_hits(0);
                    self.push_tail(Queue::Protected, head);
                    self.demote_protected(keep);
                    continue;
                }
                return Some(head);
            }
            let head = self.protected.head;
            if head != NIL {
                let hits = self.nodes[head].hits();
                if head == keep || hits > 0 {
                    if self.protected.len == 1 && head == keep {
                        // Only `keep` in the main space: fall through to the window.
                    } else {
                        self.unlink(head);
                        self.nodes[head].set_hits(hits.saturating_sub(1));
                        self.push_tail(Queue::Protected, head);
                        continue;
                    }
                } else {
                    return Some(head);
                }
            }
            let head = self.window.head;
            if head == NIL {
                return None;
            }
            if head != keep {
                return Some(head);
            }
            let next = self.nodes[head].next;
            return (next != NIL).then_some(next);
        }
    }

    /// While the protected queue is over its budget, its head is demoted to probation's tail, or,
    /// if hit (`h > 0`) or `keep`, rotated to protected's tail with `h - 1` (CLOCK).
    fn demote_protected(&mut self, keep: usize) {
        let main = self.budget.saturating_sub(self.window_budget);
        let budget = main / 100 * PROTECTED_PERCENT + main % 100 * PROTECTED_PERCENT / 100;
        while self.protected.bytes > budget && self.protected.head != NIL {
            let head = self.protected.head;
            let hits = self.nodes[head].hits();
            self.unlink(head);
            if hits > 0 || head == keep {
                self.nodes[head].set_hits(hits.saturating_sub(1));
                self.push_tail(Queue::Protected, head);
                if head == keep && self.protected.len == 1 {
                    break;
                }
            } else {
                self.push_tail(Queue::Probation, head);
            }
        }
    }

    /// Whether candidate `c` is admitted over victim `v` (see the module docs).
    fn admit(&mut self, c: usize, v: usize) -> bool {
        let candidate = self.sketch.frequency(self.nodes[c].hash);
        let victim = self.sketch.frequency(self.nodes[v].hash);
        if candidate > victim {
            return true;
        }
        candidate >= WARM && self.rng.next_u64() & 127 == 0
    }

    /// Unlinks entry `i` (from its queue, if any) and drops it from the index.
    fn take(&mut self, i: usize) -> (Bytes, Entry) {
        if self.nodes[i].queue != Queue::Candidate {
            self.unlink(i);
        }
        let node = self.nodes.remove(i);
        self.bytes -= node.entry.size;
        if let Ok(slot) = self.index.find_entry(node.hash, |&j| j == i) {
            slot.remove();
        }
        (node.key, node.entry)
    }

    /// Sizes the sketch for the peak entry count: 8 bytes per entry (rounded up to a power of
    /// two), at most `budget / SKETCH_BUDGET_DIVISOR` bytes. Growing it forgets all counts.
    fn grow_sketch(&mut self) {
        let cap_words = (self.budget / SKETCH_BUDGET_DIVISOR / 8).max(1);
        let cap_words = 1usize << (63 - cap_words.leading_zeros()).min(40);
        let wanted = self.peak_len.next_power_of_two().min(cap_words);
        if wanted > self.sketch.words() {
            self.sketch = Sketch::new(wanted);
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

    fn push_tail(&mut self, queue: Queue, i: usize) {
        let size = self.nodes[i].entry.size;
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
            self.nodes[old_tail].next = i;
        }
        let node = &mut self.nodes[i];
        node.queue = queue;
        node.prev = old_tail;
        node.next = NIL;
    }

    fn unlink(&mut self, i: usize) {
        let (queue, prev, next, size) = {
            let node = &self.nodes[i];
            (node.queue, node.prev, node.next, node.entry.size)
        };
        if prev != NIL {
            self.nodes[prev].next = next;
        }
        if next != NIL {
            self.nodes[next].prev = prev;
        }
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
        let node = &mut self.nodes[i];
        node.prev = NIL;
        node.next = NIL;
    }

    fn iter_list(&self, list: List) -> impl Iterator<Item = usize> + '_ {
        let mut at = list.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let i = at;
            at = self.nodes[i].next;
            Some(i)
        })
    }
}
