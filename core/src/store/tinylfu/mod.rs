//! The TinyLFU policy: W-TinyLFU over CLOCK queues, so that a hit changes only atomics.
//!
//! Caffeine's W-TinyLFU (an admission window, a segmented main space, TinyLFU admission by a
//! frequency sketch) with every LRU list replaced by a FIFO queue plus per-entry hit counts
//! (CLOCK; "lazy promotion" in the words of the S3-FIFO and SIEVE papers). A hit only raises
//! counters, so it can be served under a shared lock, and the order of concurrent hits does not
//! change the outcome. The exact rules:
//!
//! - **Clock.** Every insert has a tick `T` = hits + stored inserts before it (the store's
//!   counts). `peak` = the most entries held at once so far; the *sample*
//!   `S = `[`SAMPLE_FACTOR`]` * peak`.
//! - **Queues.** A *window* W (new keys), and a main space of *probation* P and *protected* Q,
//!   each a FIFO (head = oldest). Every entry has a hit count `h` (`0..=`[`MAX_HITS`]) and a
//!   tick `last`: when it was stored, replaced, or last seen with `h > 0` by the steps below
//!   (every step that moves an entry because `h > 0` also sets `last = T`).
//! - **Budgets.** W may hold `budget / 100` bytes ([`WINDOW_PERCENT`]); Q may hold
//!   `(budget - budget / 100) * 80 / 100` bytes ([`PROTECTED_PERCENT`]); the store `budget`.
//! - **Hit.** `h = min(h + 1, MAX_HITS)` and the key's sketch counters go up by one. Nothing
//!   else changes (a hit needs only a shared lock).
//! - **Insert.** First, if `T` is at least `S` past the tick at which the sketch was last
//!   halved, it is halved (aging). A replacement sets the value, `h = min(h + 1, MAX_HITS)`,
//!   `last = T` and stays where it is. A new key enters W's tail with `h = 0`, `last = T`;
//!   `peak` and, if `peak` outgrew it, the [sketch](Sketch) (which then restarts from zero)
//!   grow. Either way the key's sketch counters go up by one.
//! - **Window overflow.** While W is over its budget: W's head, if it is the entry just stored,
//!   or if `h > 0` while fewer than `n` such moves were made in this overflow (`n` = W's length
//!   when it started), gets `h = 0` (and `last = T` if `h` was `> 0`) and goes to W's tail (stop
//!   instead if it is W's only entry); else it leaves W as a *candidate*.
//! - **Victim.** P's head, if `h > 0` or it is the entry just stored, is promoted (`h = 0`, to
//!   Q's tail, then Q is [brought within its budget](TinyLfu::demote_protected)); repeat. P's
//!   head with `h = 0` is the victim. With P empty: Q's head with `h > 0` (or the entry just
//!   stored, unless Q holds nothing else) gets `h - 1` and goes to Q's tail, repeat; with `h = 0`
//!   it is the victim. With Q empty too (or holding only the entry just stored): W's first
//!   entry that is not the entry just stored, if any.
//! - **Admission.** While the store is over budget, the oldest remaining candidate `c` meets the
//!   victim `v`. With `idle = max(1, T - last(v))` and `cap = min(15, 2 * S / idle)`, `v` is
//!   evicted if `freq(c) > min(freq(v), cap)` (a victim idle for long cannot hold on to an old
//!   count), or, when `freq(c) >= `[`WARM`], with probability 1/128 from a generator seeded by the
//!   store's seed (so crafted keys cannot pin a victim, as in Caffeine). Otherwise `c` is evicted
//!   and `v`, if in P with other entries, goes to P's tail (the next candidate meets the next
//!   victim). A lone candidate or a lone victim is simply evicted. Candidates that survive join
//!   P's tail in order.
//!
//! The entry just stored is never evicted by its own insert. Caffeine's hill climber (which
//! adapts the window size) was tried and lowered the hit ratio on the benchmark traces, so the
//! window is fixed (see README).

mod sketch;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use slab::Slab;

use super::tiers::{Access, Entry};
use crate::time::Timestamp;
use sketch::Sketch;
pub use sketch::MAX_COUNT;

/// Largest per-entry hit count.
pub const MAX_HITS: u8 = 3;

/// Sketch estimate from which a losing candidate is still admitted with probability 1/128.
pub const WARM: u8 = 6;

/// Share of the budget, in percent, for the window.
pub const WINDOW_PERCENT: u64 = 1;

/// Share of the main space (`budget - window budget`), in percent, for the protected queue.
pub const PROTECTED_PERCENT: u64 = 80;

/// The sketch is halved every `SAMPLE_FACTOR * peak` ticks.
pub const SAMPLE_FACTOR: u64 = 10;

/// The sketch never takes more than `budget / SKETCH_BUDGET_DIVISOR` bytes.
pub const SKETCH_BUDGET_DIVISOR: u64 = 16;

/// No entry index: the end of a queue.
const NIL: usize = usize::MAX;

/// `percent` % of `bytes`, rounded down, without overflow.
pub fn percent_of(bytes: u64, percent: u64) -> u64 {
    bytes / 100 * percent + bytes % 100 * percent / 100
}

/// Words of the sketch for a store of `budget` bytes that has held at most `peak` entries: one
/// per entry rounded up to a power of two, at most the largest power of two that keeps the
/// sketch within `budget / SKETCH_BUDGET_DIVISOR` bytes, at least 8.
pub fn sketch_words(budget: u64, peak: usize) -> usize {
    let cap = (budget / SKETCH_BUDGET_DIVISOR / 8).max(1);
    let cap = usize::try_from(1u64 << cap.ilog2()).unwrap_or(usize::MAX);
    peak.max(1).next_power_of_two().min(cap).max(8)
}

/// Which queue an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
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
/// value, expiry) comes first, and the hit count, which hits on other threads write, sits after
/// it, away from the lookup's first cache line.
#[derive(Debug)]
#[repr(C)]
struct Node {
    hash: u64,
    key: Bytes,
    entry: Entry,
    prev: usize,
    next: usize,
    /// Tick when the entry was stored or last seen hit (only changed under exclusive access).
    last: u64,
    queue: Queue,
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

    /// Raises the hit count by one (to [`MAX_HITS`]): one compare-exchange, skipped at the
    /// maximum; a concurrent hit may make it a no-op.
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

/// A splitmix64 generator: the policy's only randomness, seeded by the store's seed.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// State of the TinyLFU policy: entries, queues and sketch.
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
    protected_budget: u64,
    sketch: Sketch,
    rng: SplitMix,
    /// Most entries held at once so far.
    peak: usize,
    /// Tick at which the sketch was last halved.
    aged_at: u64,
    /// Stored inserts so far (the other part of the tick).
    inserts: u64,
    /// The tick `T` of the current (or last) insert.
    tick: u64,
    /// Scratch space of [`TinyLfu::evict`] (kept to avoid an allocation per insert).
    candidates: Vec<usize>,
}

impl TinyLfu {
    /// An empty policy for a store of `budget` bytes whose hashes and generator derive from
    /// `seed`, with room for `max_entries` entries made up front.
    pub(super) fn new(budget: u64, seed: u64, max_entries: usize) -> Self {
        let window_budget = percent_of(budget, WINDOW_PERCENT);
        TinyLfu {
            nodes: Slab::with_capacity(max_entries),
            index: HashTable::with_capacity(max_entries),
            hasher: FixedState::with_seed(seed),
            window: List::EMPTY,
            probation: List::EMPTY,
            protected: List::EMPTY,
            bytes: 0,
            budget,
            window_budget,
            protected_budget: percent_of(budget - window_budget, PROTECTED_PERCENT),
            sketch: Sketch::new(sketch_words(budget, 0)),
            rng: SplitMix(seed),
            peak: 0,
            aged_at: 0,
            inserts: 0,
            tick: 0,
            candidates: Vec::new(),
        }
    }

    /// The 64-bit hash of `key`, used by the index and the sketch.
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<usize> {
        let nodes = &self.nodes;
        self.index
            .find(hash, |&i| nodes[i].hash == hash && nodes[i].key == key)
            .copied()
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

    /// A read of `key` at `now`, under a shared lock: a valid entry records a hit; an expired one
    /// is reported and left in place. The caller counts the hit or miss.
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

    /// Stores `entry` under `key` (see the module docs) given the store's hit count, and returns
    /// the entry's index (for [`TinyLfu::evict`]) and the entry it replaced.
    pub(super) fn insert(&mut self, key: Bytes, entry: Entry, hits: u64) -> (usize, Option<Entry>) {
        let tick = hits + self.inserts;
        self.tick = tick;
        if tick - self.aged_at >= SAMPLE_FACTOR * self.peak.max(1) as u64 {
            self.sketch.halve();
            self.aged_at = tick;
        }
        self.inserts += 1;
        let hash = self.hash(&key);
        if let Some(i) = self.find(&key, hash) {
            let node = &mut self.nodes[i];
            let old = std::mem::replace(&mut node.entry, entry);
            let (new_size, queue) = (node.entry.size, node.queue);
            node.record_hit();
            node.last = tick;
            self.bytes = self.bytes - old.size + new_size;
            if let Some(list) = self.list_mut(queue) {
                list.bytes = list.bytes - old.size + new_size;
            }
            self.sketch.increment(hash);
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
            last: tick,
        });
        let nodes = &self.nodes;
        self.index.insert_unique(hash, i, |&j| nodes[j].hash);
        self.bytes += size;
        self.push_tail(Queue::Window, i);
        if self.nodes.len() > self.peak {
            self.peak = self.nodes.len();
            let words = sketch_words(self.budget, self.peak);
            if words > self.sketch.words() {
                self.sketch = Sketch::new(words);
            }
        }
        self.sketch.increment(hash);
        (i, None)
    }

    /// Removes the entry under `key`.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Entry)> {
        let i = self.find(key, self.hash(key))?;
        Some(self.take(i))
    }

    /// Evicts until the store fits its budget, never the entry `keep` (the one just stored).
    /// Calls `evicted` with each evicted entry, in order.
    pub(super) fn evict(&mut self, keep: usize, mut evicted: impl FnMut(Bytes, Entry)) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.drain_window(keep, &mut candidates);
        let mut next = 0;
        while self.bytes > self.budget {
            let victim = self.select_victim(keep);
            let loser = match (candidates.get(next).copied(), victim) {
                (None, None) => break,
                (Some(c), None) => {
                    next += 1;
                    c
                }
                (None, Some(v)) => v,
                (Some(c), Some(v)) => {
                    if self.admit(c, v) {
                        v
                    } else {
                        next += 1;
                        if self.nodes[v].queue == Queue::Probation && self.probation.len > 1 {
                            self.unlink(v);
                            self.push_tail(Queue::Probation, v);
                        }
                        c
                    }
                }
            };
            let (key, entry) = self.take(loser);
            evicted(key, entry);
        }
        for &c in &candidates[next..] {
            self.push_tail(Queue::Probation, c);
        }
        self.candidates = candidates;
    }

    /// Every key, window then probation then protected, each from head to tail.
    pub(super) fn keys(&self) -> impl Iterator<Item = &Bytes> {
        [self.window, self.probation, self.protected]
            .into_iter()
            .flat_map(move |list| self.iter_list(list))
            .map(move |i| &self.nodes[i].key)
    }

    /// Every entry, in the order of [`TinyLfu::keys`].
    pub(super) fn entries(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        [self.window, self.probation, self.protected]
            .into_iter()
            .flat_map(move |list| self.iter_list(list))
            .map(move |i| (&self.nodes[i].key, &self.nodes[i].entry))
    }

    /// Drops every entry; the sketch, `peak` and the clock are kept.
    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.index.clear();
        self.window = List::EMPTY;
        self.probation = List::EMPTY;
        self.protected = List::EMPTY;
        self.bytes = 0;
    }

    /// Moves entries out of the window while it is over budget into `candidates`, oldest first.
    /// See the module docs.
    fn drain_window(&mut self, keep: usize, candidates: &mut Vec<usize>) {
        let mut chances = self.window.len;
        while self.window.bytes > self.window_budget && self.window.head != NIL {
            let head = self.window.head;
            if head == keep || (chances > 0 && self.nodes[head].hits() > 0) {
                if self.window.len == 1 {
                    break;
                }
                chances = chances.saturating_sub(1);
                self.unlink(head);
                self.seen(head, 0);
                self.push_tail(Queue::Window, head);
                continue;
            }
            self.unlink(head);
            self.nodes[head].queue = Queue::Candidate;
            candidates.push(head);
        }
    }

    /// The next capacity victim (still queued), never `keep`: see the module docs.
    fn select_victim(&mut self, keep: usize) -> Option<usize> {
        // Every pass promotes an entry out of P or lowers a hit count in Q, so the loop ends.
        loop {
            let head = self.probation.head;
            if head != NIL {
                if head == keep || self.nodes[head].hits() > 0 {
                    self.unlink(head);
                    self.seen(head, 0);
                    self.push_tail(Queue::Protected, head);
                    self.demote_protected(keep);
                    continue;
                }
                return Some(head);
            }
            let head = self.protected.head;
            let only_keep = self.protected.len == 1 && head == keep;
            if head != NIL && !only_keep {
                let hits = self.nodes[head].hits();
                if head != keep && hits == 0 {
                    return Some(head);
                }
                self.unlink(head);
                self.seen(head, hits.saturating_sub(1));
                self.push_tail(Queue::Protected, head);
                continue;
            }
            let head = self.window.head;
            if head != keep {
                return (head != NIL).then_some(head);
            }
            let next = self.nodes[head].next;
            return (next != NIL).then_some(next);
        }
    }

    /// While Q is over its budget, its head is demoted to P's tail, or, if `h > 0` or it is
    /// `keep`, goes to Q's tail with `h - 1` (stopping if `keep` is Q's only entry).
    fn demote_protected(&mut self, keep: usize) {
        while self.protected.bytes > self.protected_budget && self.protected.head != NIL {
            let head = self.protected.head;
            let hits = self.nodes[head].hits();
            self.unlink(head);
            if hits > 0 || head == keep {
                self.seen(head, hits.saturating_sub(1));
                self.push_tail(Queue::Protected, head);
                if head == keep && self.protected.len == 1 {
                    break;
                }
            } else {
                self.push_tail(Queue::Probation, head);
            }
        }
    }

    /// Sets entry `i`'s hit count to `hits` after a step looked at it; if it had been hit, the
    /// step saw it in use now: `last = T`.
    fn seen(&mut self, i: usize, hits: u8) {
        let tick = self.tick;
        let node = &mut self.nodes[i];
        if node.hits() > 0 {
            node.last = tick;
        }
        node.set_hits(hits);
    }

    /// Whether candidate `c` is admitted over victim `v` (see the module docs).
    fn admit(&mut self, c: usize, v: usize) -> bool {
        let candidate = self.sketch.frequency(self.nodes[c].hash);
        let victim = self.sketch.frequency(self.nodes[v].hash);
        let idle = self.tick.saturating_sub(self.nodes[v].last).max(1);
        let cap = 2 * SAMPLE_FACTOR * self.peak.max(1) as u64 / idle;
        let victim = victim.min(u8::try_from(cap).unwrap_or(MAX_COUNT));
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

    /// Checks links, byte counts and the index (tests only); returns every entry.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Vec<(Bytes, Entry)> {
        let mut all = Vec::new();
        let mut total = 0;
        for (queue, list) in [
            (Queue::Window, self.window),
            (Queue::Probation, self.probation),
            (Queue::Protected, self.protected),
        ] {
            let (mut len, mut bytes, mut prev) = (0, 0, NIL);
            for i in self.iter_list(list) {
                let node = &self.nodes[i];
                assert_eq!(node.queue, queue, "node in the wrong list");
                assert_eq!(node.prev, prev, "broken back link");
                assert!(node.hits() <= MAX_HITS);
                assert_eq!(self.find(&node.key, node.hash), Some(i), "index disagrees");
                assert_eq!(node.hash, self.hash(&node.key));
                len += 1;
                bytes += node.entry.size;
                prev = i;
                all.push((node.key.clone(), node.entry.clone()));
            }
            assert_eq!(list.tail, prev, "tail is not the last node");
            assert_eq!((list.len, list.bytes), (len, bytes), "list counts");
            total += bytes;
        }
        assert_eq!(all.len(), self.nodes.len(), "a node outside every list");
        assert_eq!(self.index.len(), self.nodes.len());
        assert_eq!(total, self.bytes);
        assert!(self.peak >= self.nodes.len());
        let cap = usize::try_from(self.budget / SKETCH_BUDGET_DIVISOR).unwrap_or(usize::MAX);
        assert!(
            self.sketch.memory_bytes() <= cap.max(64),
            "sketch over its bound"
        );
        all
    }
}
