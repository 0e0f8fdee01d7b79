//! The flights of one shard of a group: loads and fetches in progress, who waits on each, and
//! which of them a new caller may still join.
//!
//! Per key there is at most one *current* flight — the one new callers join. A write, a ring
//! change or a fencing *detaches* a running flight: it keeps running and its waiters still get its
//! result, but nobody joins it any more and its result is never kept. Loads keep one more rule
//! (S3 of DESIGN.md): a key's loader never runs twice at once on a node, so a load decided while a
//! detached load of the same key still runs is *queued* and starts when that one ends.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::member::Member;
use crate::time::Timestamp;

/// Identifies one flight, so a stale completion cannot finish a newer flight of the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlightId(u64);

impl FlightId {
    /// The raw number, for logs and traces. Ids grow by one per flight started in a shard.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// What a flight does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// Run the group's loader on this node.
    Load,
    /// Ask the key's owner.
    Fetch { owner: Member },
}

/// Whether a flight's work runs yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    /// A load waiting for a detached load of the same key to end.
    Queued,
}

/// The callers waiting on a flight, in arrival order, each a client of this node or a peer that
/// forwarded its request here (which is never sent on to another node: a forwarded request never
/// hops again). Keeps the number of clients, so asking whether any waits costs nothing under the
/// shard lock however many callers pile up on a hot key.
#[derive(Debug)]
pub(super) struct Waiters<W> {
    callers: Vec<(W, bool)>,
    clients: usize,
}

impl<W> Waiters<W> {
    /// The first caller of a flight; `client`: not a peer forwarding.
    pub(super) fn one(caller: W, client: bool) -> Self {
        Waiters {
            callers: vec![(caller, client)],
            clients: usize::from(client),
        }
    }

    /// Adds a caller.
    pub(super) fn push(&mut self, caller: W, client: bool) {
        self.clients += usize::from(client);
        self.callers.push((caller, client));
    }

    /// Adds every caller of `other`, after these.
    pub(super) fn append(&mut self, other: Waiters<W>) {
        self.clients += other.clients;
        self.callers.extend(other.callers);
    }

    /// Drops the callers `gave_up` names.
    fn retain(&mut self, gave_up: impl Fn(&W) -> bool) {
        self.callers.retain(|(caller, _)| !gave_up(caller));
        self.clients = self.callers.iter().filter(|(_, client)| *client).count();
    }

    pub(super) fn len(&self) -> usize {
        self.callers.len()
    }

    /// The callers, in order, for a delivery.
    pub(super) fn into_callers(self) -> Vec<W> {
        self.callers.into_iter().map(|(caller, _)| caller).collect()
    }
}

/// One load or fetch and the callers waiting for it.
#[derive(Debug)]
pub(super) struct Flight<W> {
    pub(super) id: FlightId,
    pub(super) key: Bytes,
    pub(super) kind: Kind,
    pub(super) state: State,
    /// Every caller waiting, the one that started the flight first.
    pub(super) waiters: Waiters<W>,
    /// When the work started (or the flight was queued), to age an owner's answer.
    pub(super) started_at: Timestamp,
    /// Fetches of this flight so far that found the value expired on its way (see
    /// [`MAX_REFETCHES`](super::shard::MAX_REFETCHES)).
    pub(super) refetches: u8,
}

impl<W> Flight<W> {
    /// Drops the callers that gave up; whether any is still waiting (a second try, or work not
    /// started yet, is only for them).
    pub(super) fn still_wanted(&mut self, gave_up: impl Fn(&W) -> bool) -> bool {
        self.waiters.retain(gave_up);
        self.waiters.len() > 0
    }

    /// Whether a client (not a peer forwarding) waits on it: only then may its work be sent on
    /// to another node. Peers that join a client's fetch ride along; once only peers are left,
    /// nothing is sent anywhere for them.
    pub(super) fn clients(&self) -> bool {
        self.waiters.clients > 0
    }
}

/// The flights of one shard.
#[derive(Debug)]
pub(super) struct Flights<W> {
    current: BTreeMap<Bytes, Flight<W>>,
    detached: BTreeMap<FlightId, Flight<W>>,
    /// The one running load of each key, current or detached.
    running_loads: BTreeMap<Bytes, FlightId>,
    next_id: u64,
}

impl<W> Default for Flights<W> {
    fn default() -> Self {
        Flights {
            current: BTreeMap::new(),
            detached: BTreeMap::new(),
            running_loads: BTreeMap::new(),
            next_id: 0,
        }
    }
}

impl<W> Flights<W> {
    /// The flight new callers of `key` join, if any.
    pub(super) fn current_mut(&mut self, key: &[u8]) -> Option<&mut Flight<W>> {
        self.current.get_mut(key)
    }

    /// Whether a load of `key` runs now (current or detached).
    pub(super) fn load_running(&self, key: &[u8]) -> bool {
        self.running_loads.contains_key(key)
    }

    /// Starts the current flight of `key` (there must be none) with its first waiter.
    pub(super) fn start(
        &mut self,
        key: Bytes,
        kind: Kind,
        waiters: Waiters<W>,
        now: Timestamp,
    ) -> (FlightId, State) {
        self.start_again(key, kind, waiters, now, 0)
    }

    /// [`Flights::start`] for a flight that already fetched `refetches` times.
    pub(super) fn start_again(
        &mut self,
        key: Bytes,
        kind: Kind,
        waiters: Waiters<W>,
        now: Timestamp,
        refetches: u8,
    ) -> (FlightId, State) {
        debug_assert!(
            !self.current.contains_key(&key),
            "one current flight per key"
        );
        let id = FlightId(self.next_id);
        self.next_id += 1;
        let state = if kind == Kind::Load && self.load_running(&key) {
            State::Queued
        } else {
            State::Running
        };
        if kind == Kind::Load && state == State::Running {
            self.running_loads.insert(key.clone(), id);
        }
        let flight = Flight {
            id,
            key: key.clone(),
            kind,
            state,
            waiters,
            started_at: now,
            refetches,
        };
        self.current.insert(key, flight);
        (id, state)
    }

    /// Removes flight `id` of `key` (current or detached) because its work ended; returns it and
    /// whether it had been detached. `None` if no such flight exists (a stale completion).
    pub(super) fn finish(&mut self, key: &[u8], id: FlightId) -> Option<(Flight<W>, bool)> {
        let found = match self.current.get(key) {
            Some(flight) if flight.id == id && flight.state == State::Running => {
                self.current.remove(key).map(|f| (f, false))
            }
            _ => self.detached.remove(&id).map(|f| (f, true)),
        }?;
        if self.running_loads.get(key) == Some(&id) {
            self.running_loads.remove(key);
        }
        Some(found)
    }

    /// The current flight of `key` if it is a load queued behind one that ended: marks it running
    /// (its work must start now) and returns its id.
    pub(super) fn release_queued(&mut self, key: &[u8], now: Timestamp) -> Option<FlightId> {
        if self.load_running(key) {
            return None;
        }
        let flight = self.current.get_mut(key)?;
        if flight.state != State::Queued {
            return None;
        }
        flight.state = State::Running;
        flight.started_at = now;
        self.running_loads.insert(flight.key.clone(), flight.id);
        Some(flight.id)
    }

    /// Removes the current flight of `key` whatever its state (its work could not start).
    pub(super) fn abandon(&mut self, key: &[u8], id: FlightId) -> Option<Flight<W>> {
        match self.current.get(key) {
            Some(flight) if flight.id == id => {
                if self.running_loads.get(key) == Some(&id) {
                    self.running_loads.remove(key);
                }
                self.current.remove(key)
            }
            _ => None,
        }
    }

    /// Detaches the running current flight of `key`: it finishes for its waiters, nobody joins it
    /// any more and its result is not kept. A queued load stays current (it has not started, so
    /// what it loads will be newer than whatever detached it). True if a flight was detached.
    pub(super) fn detach(&mut self, key: &[u8]) -> bool {
        match self.current.get(key) {
            Some(flight) if flight.state == State::Running => {
                if let Some(flight) = self.current.remove(key) {
                    self.detached.insert(flight.id, flight);
                }
                true
            }
            _ => false,
        }
    }

    /// Detaches every running current flight; returns how many.
    pub(super) fn detach_all(&mut self) -> usize {
        let running: Vec<Bytes> = self
            .current
            .iter()
            .filter(|(_, f)| f.state == State::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &running {
            self.detach(key);
        }
        running.len()
    }

    /// Flights in progress (current and detached).
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.detached.len()
    }

    /// Checks the invariants (debug builds): one running load per key, every running load
    /// indexed, queued flights only behind a running load.
    pub(super) fn check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        for (key, id) in &self.running_loads {
            let in_current = self
                .current
                .get(key)
                .is_some_and(|f| f.id == *id && f.kind == Kind::Load && f.state == State::Running);
            let in_detached = self
                .detached
                .get(id)
                .is_some_and(|f| f.key == *key && f.kind == Kind::Load);
            assert!(
                in_current ^ in_detached,
                "running load of {key:?} not found once"
            );
        }
        for flight in self.current.values().chain(self.detached.values()) {
            if flight.kind == Kind::Load && flight.state == State::Running {
                assert_eq!(self.running_loads.get(&flight.key), Some(&flight.id));
            }
            if flight.state == State::Queued {
                assert!(
                    self.load_running(&flight.key),
                    "a queued load waits for nothing"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    const T0: Timestamp = Timestamp::ZERO;

    /// One waiting client, `caller`.
    fn waiting(caller: u32) -> Waiters<u32> {
        Waiters::one(caller, true)
    }

    #[test]
    fn a_detached_load_makes_the_next_one_wait() {
        let mut f: Flights<u32> = Flights::default();
        let (first, state) = f.start(key("k"), Kind::Load, waiting(1), T0);
        assert_eq!(state, State::Running);
        assert!(f.detach(b"k"));
        assert!(f.current_mut(b"k").is_none());
        let (second, state) = f.start(key("k"), Kind::Load, waiting(2), T0);
        assert_eq!(state, State::Queued);
        f.check();
        // The queued flight cannot start while the detached one runs.
        assert_eq!(f.release_queued(b"k", T0), None);
        let (done, detached) = f.finish(b"k", first).unwrap();
        assert!(detached);
        assert_eq!(done.waiters.into_callers(), vec![1]);
        assert_eq!(f.release_queued(b"k", T0), Some(second));
        f.check();
        let (done, detached) = f.finish(b"k", second).unwrap();
        assert!(!detached);
        assert_eq!(done.waiters.into_callers(), vec![2]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn stale_completions_change_nothing() {
        let mut f: Flights<u32> = Flights::default();
        let (id, _) = f.start(key("k"), Kind::Load, waiting(1), T0);
        assert!(f.finish(b"k", FlightId(99)).is_none());
        assert!(f.finish(b"other", id).is_none());
        assert!(f.finish(b"k", id).is_some());
        assert!(f.finish(b"k", id).is_none());
    }

    #[test]
    fn waiters_know_whether_a_client_is_among_them() {
        let mut f: Flights<u32> = Flights::default();
        let (id, _) = f.start(key("k"), Kind::Load, Waiters::one(1, false), T0);
        let flight = f.current_mut(b"k").unwrap();
        assert!(!flight.clients(), "a peer alone");
        flight.waiters.push(2, true);
        let mut more = Waiters::one(3, false);
        more.push(4, true);
        flight.waiters.append(more);
        assert!(flight.clients());
        assert!(flight.still_wanted(|&w| w == 2));
        assert!(flight.clients(), "4 still waits");
        assert!(flight.still_wanted(|&w| w == 4));
        assert!(!flight.clients(), "only peers 1 and 3 are left");
        let (done, _) = f.finish(b"k", id).unwrap();
        assert_eq!(done.waiters.into_callers(), vec![1, 3]);
    }

    #[test]
    fn abandon_takes_only_the_flight_it_names() {
        let mut f: Flights<u32> = Flights::default();
        let (running, _) = f.start(key("k"), Kind::Load, waiting(1), T0);
        assert!(
            f.abandon(b"k", FlightId(running.as_u64() + 7)).is_none(),
            "a stale id abandons nothing"
        );
        assert!(f.current_mut(b"k").is_some());
        // Abandoning a queued load leaves the detached load that still runs on record, so the
        // loader still never runs twice at once.
        assert!(f.detach(b"k"));
        let (queued, state) = f.start(key("k"), Kind::Load, waiting(2), T0);
        assert_eq!(state, State::Queued);
        let gone = f
            .abandon(b"k", queued)
            .expect("the queued flight is current");
        assert_eq!(gone.waiters.into_callers(), vec![2]);
        let (_, state) = f.start(key("k"), Kind::Load, waiting(3), T0);
        assert_eq!(state, State::Queued, "the detached load still runs");
        f.check();
        // Abandoning the running current load frees the key for the next one.
        let (done, _) = f.finish(b"k", running).expect("the detached load ends");
        assert_eq!(done.waiters.into_callers(), vec![1]);
        let next = f.release_queued(b"k", T0).expect("the queued load starts");
        assert!(f.abandon(b"k", next).is_some());
        let (_, state) = f.start(key("k"), Kind::Load, waiting(4), T0);
        assert_eq!(state, State::Running);
        f.check();
    }

    #[test]
    fn fetches_never_queue_and_detach_all_spares_queued_loads() {
        let mut f: Flights<u32> = Flights::default();
        let owner = Member::new("o", "o:1", 0);
        f.start(key("a"), Kind::Fetch { owner }, waiting(1), T0);
        f.start(key("b"), Kind::Load, waiting(2), T0);
        assert!(f.detach(b"b"));
        let (_, state) = f.start(key("b"), Kind::Load, waiting(3), T0);
        assert_eq!(state, State::Queued);
        assert_eq!(f.detach_all(), 1, "only the running fetch of a");
        assert!(
            f.current_mut(b"b").is_some(),
            "the queued load stays current"
        );
        f.check();
    }
}
