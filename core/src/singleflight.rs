//! Request coalescing: at most one load per key at a time, every caller gets its result.
//!
//! [`SingleFlight`] only does the bookkeeping. The runtime calls [`SingleFlight::begin`] with a
//! waiter (a oneshot sender, a thread handle, anything); the first caller for a key is told to
//! [`Begin::Lead`] and runs the load, the others are [`Begin::Joined`]. When the load ends, the
//! leader calls [`SingleFlight::complete`] and delivers the one result to every waiter it gets back,
//! its own included. Nothing here waits.

use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Identifies one flight, so a stale leader cannot complete a newer flight of the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlightId(u64);

impl FlightId {
    /// The raw number, for logs and traces. Ids grow by one per flight started.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// What a caller of [`SingleFlight::begin`] must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin<W> {
    /// No flight was in progress: run the load, then call [`SingleFlight::complete`] with this id.
    Lead(FlightId),
    /// A flight is in progress; the waiter was queued and will be handed back on completion.
    Joined,
    /// The key already has the maximum number of waiters; the waiter is handed back, unqueued.
    Full(W),
}

#[derive(Debug)]
struct Flight<W> {
    id: FlightId,
    /// The leader's waiter first, then joiners in join order.
    waiters: Vec<W>,
    /// A write to the key happened after the flight began: its result may be delivered but
    /// must not be cached, or it could overwrite the newer value.
    superseded: bool,
}

/// Sans-IO request coalescer over keys `K` and waiters `W`.
///
/// Keys live in a `BTreeMap`: ordered lookups need no hasher, so nothing depends on a random seed
/// and client-chosen keys cannot force hash collisions.
#[derive(Debug)]
pub struct SingleFlight<K, W> {
    flights: BTreeMap<K, Flight<W>>,
    max_waiters_per_key: usize,
    next_id: u64,
}

impl<K: Ord, W> SingleFlight<K, W> {
    /// A coalescer holding at most `max_waiters_per_key` waiters per key, leader included.
    ///
    /// A bound of 0 is treated as 1: a leader can always start a flight.
    pub fn new(max_waiters_per_key: usize) -> Self {
        SingleFlight {
            flights: BTreeMap::new(),
            max_waiters_per_key: max_waiters_per_key.max(1),
            next_id: 0,
        }
    }

    /// Registers `waiter` for `key`.
    ///
    /// The first caller (no flight in progress) becomes the leader; its waiter is stored too, so
    /// completion hands back every waiter including the leader's and the runtime delivers one result
    /// uniformly. Later callers join, unless the key already holds the maximum number of waiters.
    pub fn begin(&mut self, key: K, waiter: W) -> Begin<W> {
        if let Some(flight) = self.flights.get_mut(&key) {
            if flight.waiters.len() >= self.max_waiters_per_key {
                return Begin::Full(waiter);
            }
            flight.waiters.push(waiter);
            return Begin::Joined;
        }
        let id = FlightId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.flights.insert(
            key,
            Flight {
                id,
                waiters: vec![waiter],
                superseded: false,
            },
        );
        Begin::Lead(id)
    }

    /// Finishes flight `id` of `key`: removes it and returns all its waiters (leader's first, then
    /// joiners in join order).
    ///
    /// Returns an empty vec, changing nothing, if `id` is not the current flight of `key`. The
    /// leader must call this however its load ends (value, miss, error, cancellation), or the key's
    /// waiters stay queued.
    pub fn complete<Q>(&mut self, key: &Q, id: FlightId) -> Vec<W>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.flights.get(key) {
            Some(flight) if flight.id == id => self
                .flights
                .remove(key)
                .map(|flight| flight.waiters)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Marks the flight of `key` (if any) as superseded by a write; true if there was one.
    ///
    /// Call it whenever `key` is written or deleted while a load may be in flight; the leader
    /// checks [`SingleFlight::is_superseded`] before caching what it loaded.
    pub fn supersede<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.flights.get_mut(key) {
            Some(flight) => {
                flight.superseded = true;
                true
            }
            None => false,
        }
    }

    /// Whether flight `id` of `key` was superseded by a write since it began. A flight that is
    /// no longer current counts as superseded: its result is stale by definition.
    pub fn is_superseded<Q>(&self, key: &Q, id: FlightId) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.flights
            .get(key)
            .is_none_or(|flight| flight.id != id || flight.superseded)
    }

    /// Whether a flight for `key` is in progress.
    pub fn is_in_flight<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.flights.contains_key(key)
    }

    /// The current flight of `key`, if any.
    pub fn flight_id<Q>(&self, key: &Q) -> Option<FlightId>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.flights.get(key).map(|flight| flight.id)
    }

    /// Number of keys with a flight in progress.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Number of waiters queued for `key`, leader included (0 if no flight).
    pub fn waiters<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.flights
            .get(key)
            .map_or(0, |flight| flight.waiters.len())
    }

    /// The per-key waiter bound in effect (after treating 0 as 1).
    pub fn max_waiters_per_key(&self) -> usize {
        self.max_waiters_per_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead_id<W: std::fmt::Debug>(b: Begin<W>) -> FlightId {
        match b {
            Begin::Lead(id) => id,
            other => panic!("expected Lead, got {other:?}"),
        }
    }

    #[test]
    fn first_caller_leads_others_join() {
        let mut sf: SingleFlight<Vec<u8>, &str> = SingleFlight::new(8);
        let id = lead_id(sf.begin(b"k".to_vec(), "leader"));
        assert_eq!(sf.begin(b"k".to_vec(), "j1"), Begin::Joined);
        assert_eq!(sf.begin(b"k".to_vec(), "j2"), Begin::Joined);
        assert!(sf.is_in_flight(b"k".as_slice()));
        assert_eq!(sf.waiters(b"k".as_slice()), 3);
        assert_eq!(sf.in_flight(), 1);
        assert_eq!(sf.flight_id(b"k".as_slice()), Some(id));
        assert_eq!(sf.complete(b"k".as_slice(), id), vec!["leader", "j1", "j2"]);
        assert!(!sf.is_in_flight(b"k".as_slice()));
        assert_eq!(sf.waiters(b"k".as_slice()), 0);
        assert_eq!(sf.in_flight(), 0);
    }

    #[test]
    fn keys_are_independent() {
        let mut sf: SingleFlight<String, u32> = SingleFlight::new(8);
        let a = lead_id(sf.begin("a".into(), 1));
        let b = lead_id(sf.begin("b".into(), 2));
        assert_ne!(a, b);
        assert_eq!(sf.begin("a".into(), 3), Begin::Joined);
        assert_eq!(sf.in_flight(), 2);
        assert_eq!(sf.complete("b", b), vec![2]);
        assert_eq!(sf.waiters("a"), 2);
        assert_eq!(sf.complete("a", a), vec![1, 3]);
    }

    #[test]
    fn full_hands_the_waiter_back() {
        let mut sf: SingleFlight<u32, &str> = SingleFlight::new(2);
        let id = lead_id(sf.begin(1, "leader"));
        assert_eq!(sf.begin(1, "j1"), Begin::Joined);
        assert_eq!(sf.begin(1, "j2"), Begin::Full("j2"));
        assert_eq!(sf.waiters(&1), 2);
        assert_eq!(sf.complete(&1, id), vec!["leader", "j1"]);
        // After completion the key accepts a new leader.
        assert!(matches!(sf.begin(1, "next"), Begin::Lead(_)));
    }

    #[test]
    fn zero_bound_still_admits_a_leader() {
        let mut sf: SingleFlight<u32, u32> = SingleFlight::new(0);
        assert_eq!(sf.max_waiters_per_key(), 1);
        let id = lead_id(sf.begin(7, 1));
        assert_eq!(sf.begin(7, 2), Begin::Full(2));
        assert_eq!(sf.complete(&7, id), vec![1]);
    }

    #[test]
    fn stale_id_cannot_complete_a_newer_flight() {
        let mut sf: SingleFlight<u32, &str> = SingleFlight::new(8);
        let old = lead_id(sf.begin(1, "first"));
        assert_eq!(sf.complete(&1, old), vec!["first"]);
        let new = lead_id(sf.begin(1, "second"));
        assert_ne!(old, new);
        assert!(sf.complete(&1, old).is_empty());
        assert_eq!(sf.waiters(&1), 1);
        assert_eq!(sf.complete(&1, new), vec!["second"]);
        // Completing twice, or a key with no flight, is a no-op.
        assert!(sf.complete(&1, new).is_empty());
        assert!(sf.complete(&2, new).is_empty());
    }

    #[test]
    fn id_of_another_key_does_not_complete() {
        let mut sf: SingleFlight<u32, u32> = SingleFlight::new(8);
        let a = lead_id(sf.begin(1, 10));
        let b = lead_id(sf.begin(2, 20));
        assert!(sf.complete(&1, b).is_empty());
        assert!(sf.complete(&2, a).is_empty());
        assert_eq!(sf.in_flight(), 2);
    }

    #[test]
    fn a_write_supersedes_only_the_flight_in_progress() {
        let mut sf: SingleFlight<&str, u8> = SingleFlight::new(4);
        assert!(!sf.supersede("k"), "nothing in flight, nothing to mark");
        let first = lead_id(sf.begin("k", 1));
        assert!(!sf.is_superseded("k", first));
        assert!(sf.supersede("k"));
        assert!(sf.is_superseded("k", first));
        assert_eq!(sf.complete("k", first), vec![1]);
        // The next flight starts clean; a finished flight counts as superseded.
        let second = lead_id(sf.begin("k", 2));
        assert!(!sf.is_superseded("k", second));
        assert!(sf.is_superseded("k", first));
        let other = lead_id(sf.begin("other", 3));
        assert!(sf.supersede("k"));
        assert!(!sf.is_superseded("other", other));
    }
}
