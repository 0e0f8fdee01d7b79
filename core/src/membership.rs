//! The live member set, built from discovery events that may arrive late, twice or out of order.
//!
//! [`MembershipView`] is a join-semilattice: its state is the latest snapshot plus, per member, the
//! newest record newer than that snapshot, each "latest"/"newest" being a maximum under a total
//! order. Applying an event is a join, so any permutation of a set of events, with duplicates,
//! ends in the same view, and a stale revision never undoes a newer one.
//!
//! Records at or below the latest snapshot's revision are pruned, since the snapshot already covers
//! them; so memory is the snapshot plus one record per id heard of since it. Discovery backends
//! resend a snapshot on every (re)connection, which keeps Down tombstones from piling up.

use std::collections::{BTreeMap, BTreeSet};

use crate::member::{Member, MemberId};

/// A discovery event. Revisions order events; they come from the discovery backend (for example
/// an etcd revision) and a larger revision is newer information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The full live set as of `revision` (anything absent is down).
    Snapshot {
        /// Revision the snapshot reflects, including all events at or below it.
        revision: u64,
        /// Every live member at `revision`.
        members: Vec<Member>,
    },
    /// `member` was live at `revision`.
    Up {
        /// Revision of the registration.
        revision: u64,
        /// The member as registered.
        member: Member,
    },
    /// Member `id` was gone at `revision`.
    Down {
        /// Revision of the departure.
        revision: u64,
        /// The departed member.
        id: MemberId,
    },
}

impl MembershipEvent {
    /// The revision the event carries.
    pub fn revision(&self) -> u64 {
        match self {
            MembershipEvent::Snapshot { revision, .. }
            | MembershipEvent::Up { revision, .. }
            | MembershipEvent::Down { revision, .. } => *revision,
        }
    }
}

/// One change of the live set, as returned by [`MembershipView::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingChange {
    /// A member became live.
    Added(Member),
    /// A member is no longer live.
    Removed(MemberId),
    /// A live member changed its address or incarnation (same id).
    Updated(Member),
}

/// Newest knowledge about one member from an `Up` or `Down` event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Up { revision: u64, member: Member },
    Down { revision: u64 },
}

impl Record {
    fn revision(&self) -> u64 {
        match self {
            Record::Up { revision, .. } | Record::Down { revision } => *revision,
        }
    }

    /// Total order of records of one member; the greatest wins. Higher revision first; at equal
    /// revisions Down beats Up, then higher incarnation, then greater address.
    fn rank(&self) -> (u64, bool, u64, &str) {
        match self {
            Record::Up { revision, member } => {
                (*revision, false, member.incarnation, member.addr.as_str())
            }
            Record::Down { revision } => (*revision, true, 0, ""),
        }
    }
}

/// A full member set as of a revision, one member per id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    revision: u64,
    members: BTreeMap<MemberId, Member>,
}

impl Snapshot {
    /// Normalises `members`: of duplicate ids keeps the higher incarnation, then greater address.
    fn new(revision: u64, members: Vec<Member>) -> Self {
        let mut by_id: BTreeMap<MemberId, Member> = BTreeMap::new();
        for member in members {
            let keep_old = by_id.get(&member.id).is_some_and(|old| {
                (old.incarnation, &old.addr) >= (member.incarnation, &member.addr)
            });
            if !keep_old {
                by_id.insert(member.id.clone(), member);
            }
        }
        Snapshot {
            revision,
            members: by_id,
        }
    }

    /// Whether `self` replaces `other`: higher revision, or at equal revisions the greater member
    /// list (a deterministic tie-break for a backend that broke its own contract).
    fn supersedes(&self, other: &Snapshot) -> bool {
        self.revision
            .cmp(&other.revision)
            .then_with(|| self.members.values().cmp(other.members.values()))
            .is_gt()
    }
}

/// The live member set of the cluster as seen by one node, itself always included.
///
/// Two views are equal when their membership state is (the order events arrived in may differ);
/// [`MembershipView::self_losses`] counts observations and takes no part in equality.
#[derive(Debug, Clone)]
pub struct MembershipView {
    self_member: Member,
    snapshot: Option<Snapshot>,
    /// Per member, the newest record with a revision above the snapshot's.
    records: BTreeMap<MemberId, Record>,
    /// The materialised live set, self included.
    live: BTreeMap<MemberId, Member>,
    revision: u64,
    /// This node's incarnation as its newest registration shows it, as of the last event
    /// applied (`None`: not registered). An observation, not membership state.
    registered: Option<u64>,
    /// Times this node was seen out of the membership (see [`MembershipView::self_losses`]).
    self_losses: u64,
}

impl PartialEq for MembershipView {
    fn eq(&self, other: &Self) -> bool {
        self.self_member == other.self_member
            && self.snapshot == other.snapshot
            && self.records == other.records
            && self.live == other.live
            && self.revision == other.revision
    }
}

impl Eq for MembershipView {}

impl MembershipView {
    /// A view holding only `self_member`, which stays live whatever events say.
    pub fn new(self_member: Member) -> Self {
        let live = BTreeMap::from([(self_member.id.clone(), self_member.clone())]);
        MembershipView {
            self_member,
            snapshot: None,
            records: BTreeMap::new(),
            live,
            revision: 0,
            registered: None,
            self_losses: 0,
        }
    }

    /// Applies `event` and returns how the live set changed, in member-id order.
    ///
    /// Idempotent and order-independent: a stale or repeated event changes nothing.
    pub fn apply(&mut self, event: MembershipEvent) -> Vec<RingChange> {
        self.revision = self.revision.max(event.revision());
        let touched = match event {
            MembershipEvent::Snapshot { revision, members } => {
                self.merge_snapshot(Snapshot::new(revision, members))
            }
            MembershipEvent::Up { revision, member } => {
                let id = member.id.clone();
                self.merge_record(id, Record::Up { revision, member })
            }
            MembershipEvent::Down { revision, id } => {
                self.merge_record(id, Record::Down { revision })
            }
        };
        self.track_self();
        self.refresh(touched)
    }

    /// Live members, self included, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.live.values()
    }

    /// The live member with `id`.
    pub fn get(&self, id: &MemberId) -> Option<&Member> {
        self.live.get(id)
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: &MemberId) -> bool {
        self.live.contains_key(id)
    }

    /// Number of live members, self included (never 0).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Always false: self is always in the view. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// This node's id.
    pub fn self_id(&self) -> &MemberId {
        &self.self_member.id
    }

    /// This node's member record.
    pub fn self_member(&self) -> &Member {
        &self.self_member
    }

    /// How many times this node was seen out of the membership after having been seen in it:
    /// its own `Down` newer than its registration, a newer snapshot without it, or a newer
    /// registration of it under another incarnation (it was lost and registered again). Peers
    /// may have taken over its keys meanwhile, so each time it must drop what it holds before it
    /// serves as an owner again.
    pub fn self_losses(&self) -> u64 {
        self.self_losses
    }

    /// Compares this node's registration, as the newest information shows it, with what it was
    /// before the last event: gone, or back under another incarnation, counts a loss.
    fn track_self(&mut self) {
        let now = self.registration_of_self();
        if let Some(before) = self.registered {
            if now != Some(before) {
                self.self_losses += 1;
            }
        }
        self.registered = now;
    }

    /// This node's incarnation in its newest record or snapshot, ignoring that the view always
    /// keeps it live; `None` when the newest information says it is not registered.
    fn registration_of_self(&self) -> Option<u64> {
        match self.records.get(&self.self_member.id) {
            Some(Record::Up { member, .. }) => Some(member.incarnation),
            Some(Record::Down { .. }) => None,
            None => self
                .snapshot
                .as_ref()
                .and_then(|s| s.members.get(&self.self_member.id))
                .map(|m| m.incarnation),
        }
    }

    /// Highest revision of any event applied so far (0 before the first).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn snapshot_revision(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.revision)
    }

    /// Joins a snapshot; returns the ids whose liveness may have changed.
    fn merge_snapshot(&mut self, snapshot: Snapshot) -> BTreeSet<MemberId> {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| !snapshot.supersedes(s))
        {
            return BTreeSet::new();
        }
        let revision = snapshot.revision;
        self.records
            .retain(|_, record| record.revision() > revision);
        let mut touched: BTreeSet<MemberId> = self.live.keys().cloned().collect();
        touched.extend(snapshot.members.keys().cloned());
        self.snapshot = Some(snapshot);
        touched
    }

    /// Joins one member's record; returns the ids whose liveness may have changed.
    fn merge_record(&mut self, id: MemberId, record: Record) -> BTreeSet<MemberId> {
        if self
            .snapshot_revision()
            .is_some_and(|s| record.revision() <= s)
        {
            return BTreeSet::new();
        }
        let newer = self
            .records
            .get(&id)
            .is_none_or(|old| record.rank() > old.rank());
        if !newer {
            return BTreeSet::new();
        }
        self.records.insert(id.clone(), record);
        BTreeSet::from([id])
    }

    /// What the newest information says about `id`.
    fn resolve(&self, id: &MemberId) -> Option<&Member> {
        if *id == self.self_member.id {
            return Some(&self.self_member);
        }
        // Records above the snapshot's revision are the only ones kept, so a record always wins.
        match self.records.get(id) {
            Some(Record::Up { member, .. }) => Some(member),
            Some(Record::Down { .. }) => None,
            None => self.snapshot.as_ref().and_then(|s| s.members.get(id)),
        }
    }

    /// Re-derives the liveness of `touched` ids and reports the differences.
    fn refresh(&mut self, touched: BTreeSet<MemberId>) -> Vec<RingChange> {
        let mut changes = Vec::new();
        for id in touched {
            let now = self.resolve(&id).cloned();
            let change = match (self.live.get(&id), now) {
                (None, Some(member)) => RingChange::Added(member),
                (Some(_), None) => RingChange::Removed(id),
                (Some(old), Some(member)) if *old != member => RingChange::Updated(member),
                _ => continue,
            };
            match &change {
                RingChange::Added(member) | RingChange::Updated(member) => {
                    self.live.insert(member.id.clone(), member.clone());
                }
                RingChange::Removed(id) => {
                    self.live.remove(id);
                }
            }
            changes.push(change);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, inc: u64) -> Member {
        Member::new(id, format!("{id}.host:7000"), inc)
    }

    fn up(revision: u64, member: Member) -> MembershipEvent {
        MembershipEvent::Up { revision, member }
    }

    fn down(revision: u64, id: &str) -> MembershipEvent {
        MembershipEvent::Down {
            revision,
            id: MemberId::new(id),
        }
    }

    fn snap(revision: u64, members: Vec<Member>) -> MembershipEvent {
        MembershipEvent::Snapshot { revision, members }
    }

    fn view() -> MembershipView {
        MembershipView::new(m("self", 1))
    }

    fn live_ids(v: &MembershipView) -> Vec<&str> {
        v.members().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn starts_with_self_only() {
        let v = view();
        assert_eq!(live_ids(&v), ["self"]);
        assert_eq!(v.self_id().as_str(), "self");
        assert_eq!(v.revision(), 0);
        assert_eq!(v.len(), 1);
        assert!(!v.is_empty());
    }

    #[test]
    fn up_and_down_report_changes() {
        let mut v = view();
        assert_eq!(
            v.apply(up(1, m("a", 1))),
            vec![RingChange::Added(m("a", 1))]
        );
        assert!(v.contains(&MemberId::new("a")));
        assert_eq!(v.get(&MemberId::new("a")), Some(&m("a", 1)));
        assert_eq!(
            v.apply(up(2, m("a", 2))),
            vec![RingChange::Updated(m("a", 2))]
        );
        assert_eq!(
            v.apply(down(3, "a")),
            vec![RingChange::Removed(MemberId::new("a"))]
        );
        assert_eq!(live_ids(&v), ["self"]);
        assert_eq!(v.revision(), 3);
    }

    #[test]
    fn views_differing_in_one_part_of_their_state_are_not_equal() {
        let with = |events: Vec<MembershipEvent>| {
            let mut v = view();
            for event in events {
                v.apply(event);
            }
            v
        };
        // Same live set and revision; only the snapshot differs.
        assert_ne!(
            with(vec![snap(5, vec![m("self", 1)])]),
            with(vec![snap(5, vec![])])
        );
        // Same live set, revision and snapshot; only the records (tombstones) differ.
        assert_ne!(with(vec![down(5, "x")]), with(vec![down(5, "y")]));
        // Same revision; the live set differs.
        assert_ne!(with(vec![up(5, m("x", 1))]), with(vec![down(5, "x")]));
        // Same state reached in another order is equal.
        assert_eq!(
            with(vec![up(5, m("x", 1)), down(6, "y")]),
            with(vec![down(6, "y"), up(5, m("x", 1))])
        );
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let mut v = view();
        let events = [
            snap(5, vec![m("a", 1), m("b", 1)]),
            up(6, m("c", 1)),
            down(7, "a"),
        ];
        for e in &events {
            v.apply(e.clone());
        }
        let before = v.clone();
        for e in &events {
            assert!(v.apply(e.clone()).is_empty());
        }
        assert_eq!(v, before);
    }

    #[test]
    fn stale_revision_does_not_resurrect() {
        let mut v = view();
        v.apply(up(1, m("a", 1)));
        v.apply(down(5, "a"));
        assert!(v.apply(up(3, m("a", 1))).is_empty());
        assert!(!v.contains(&MemberId::new("a")));
        // Down and Up at one revision: Down wins whichever comes first.
        let mut w = view();
        w.apply(down(4, "b"));
        assert!(w.apply(up(4, m("b", 9))).is_empty());
        let mut x = view();
        x.apply(up(4, m("b", 9)));
        x.apply(down(4, "b"));
        assert_eq!(
            w.members().collect::<Vec<_>>(),
            x.members().collect::<Vec<_>>()
        );
        // A newer Up does bring it back.
        assert_eq!(
            v.apply(up(6, m("a", 2))),
            vec![RingChange::Added(m("a", 2))]
        );
    }

    #[test]
    fn snapshot_removes_absent_members_and_adds_present_ones() {
        let mut v = view();
        v.apply(up(1, m("a", 1)));
        v.apply(up(2, m("b", 1)));
        let changes = v.apply(snap(3, vec![m("b", 1), m("c", 1)]));
        assert_eq!(
            changes,
            vec![
                RingChange::Removed(MemberId::new("a")),
                RingChange::Added(m("c", 1)),
            ]
        );
        assert_eq!(live_ids(&v), ["b", "c", "self"]);
    }

    #[test]
    fn events_newer_than_snapshot_override_it_older_ones_do_not() {
        let mut v = view();
        v.apply(snap(10, vec![m("a", 1), m("b", 1)]));
        assert!(v.apply(down(9, "a")).is_empty());
        assert!(v.apply(up(10, m("z", 1))).is_empty());
        assert_eq!(
            v.apply(down(11, "a")),
            vec![RingChange::Removed(MemberId::new("a"))]
        );
        // An older snapshot changes nothing, a newer one resets the per-member records.
        assert!(v.apply(snap(8, vec![m("q", 1)])).is_empty());
        assert_eq!(
            v.apply(snap(12, vec![m("a", 2)])),
            vec![
                RingChange::Added(m("a", 2)),
                RingChange::Removed(MemberId::new("b")),
            ]
        );
        assert!(
            v.records.is_empty(),
            "records at or below the snapshot are pruned"
        );
    }

    #[test]
    fn self_stays_whatever_events_say() {
        let mut v = view();
        assert!(v.apply(down(3, "self")).is_empty());
        assert!(v.apply(snap(4, vec![m("a", 1)])).len() == 1);
        assert!(v
            .apply(up(5, Member::new("self", "elsewhere:1", 99)))
            .is_empty());
        assert_eq!(v.get(&MemberId::new("self")), Some(&m("self", 1)));
        assert_eq!(live_ids(&v), ["a", "self"]);
    }

    #[test]
    fn equal_revision_ties_are_deterministic() {
        let a = snap(7, vec![m("a", 1)]);
        let b = snap(7, vec![m("b", 1)]);
        let mut x = view();
        x.apply(a.clone());
        x.apply(b.clone());
        let mut y = view();
        y.apply(b);
        y.apply(a);
        assert_eq!(x, y);
        let hi = up(3, m("c", 5));
        let lo = up(3, m("c", 4));
        let mut x = view();
        x.apply(hi.clone());
        x.apply(lo.clone());
        let mut y = view();
        y.apply(lo);
        y.apply(hi);
        assert_eq!(x, y);
        assert_eq!(x.get(&MemberId::new("c")), Some(&m("c", 5)));
    }

    #[test]
    fn duplicate_ids_in_a_snapshot_are_normalised() {
        let mut x = view();
        x.apply(snap(1, vec![m("a", 1), m("a", 3), m("a", 2)]));
        let mut y = view();
        y.apply(snap(1, vec![m("a", 3), m("a", 2), m("a", 1)]));
        assert_eq!(x, y);
        assert_eq!(x.get(&MemberId::new("a")), Some(&m("a", 3)));
    }

    /// Every permutation of `events` (plus a duplicated tail) must give the same view.
    fn assert_order_independent(events: &[MembershipEvent]) {
        let mut reference: Option<MembershipView> = None;
        let mut order: Vec<usize> = (0..events.len()).collect();
        loop {
            let mut v = view();
            let mut live: BTreeMap<MemberId, Member> = v.live.clone();
            for &i in order.iter().chain(order.iter().rev().take(2)) {
                for change in v.apply(events[i].clone()) {
                    match change {
                        RingChange::Added(m) | RingChange::Updated(m) => {
                            live.insert(m.id.clone(), m);
                        }
                        RingChange::Removed(id) => {
                            live.remove(&id);
                        }
                    }
                }
            }
            // The reported changes replay to the live set.
            assert_eq!(live, v.live);
            match &reference {
                None => reference = Some(v),
                Some(r) => assert_eq!(&v, r, "order {order:?}"),
            }
            if !next_permutation(&mut order) {
                break;
            }
        }
    }

    fn next_permutation(p: &mut [usize]) -> bool {
        let Some(i) = (1..p.len()).rev().find(|&i| p[i - 1] < p[i]) else {
            return false;
        };
        let j = (i..p.len()).rev().find(|&j| p[j] > p[i - 1]).unwrap_or(i);
        p.swap(i - 1, j);
        p[i..].reverse();
        true
    }

    #[test]
    fn converges_over_all_permutations() {
        assert_order_independent(&[
            snap(5, vec![m("a", 1), m("b", 1), m("self", 1)]),
            up(3, m("c", 1)),
            up(6, m("c", 2)),
            down(7, "b"),
            down(4, "a"),
            up(7, m("b", 2)),
            snap(5, vec![m("d", 1)]),
        ]);
        assert_order_independent(&[
            up(1, m("a", 1)),
            down(2, "a"),
            up(2, m("a", 2)),
            snap(2, vec![m("a", 1), m("e", 1)]),
            up(9, m("self", 4)),
            down(8, "e"),
        ]);
    }

    #[test]
    fn permutation_helper_enumerates_all() {
        let mut p = vec![0, 1, 2, 3];
        let mut n = 1;
        while next_permutation(&mut p) {
            n += 1;
        }
        assert_eq!(n, 24);
    }

    #[test]
    fn self_losses_count_departures_seen_after_registration() {
        let mut v = view();
        // Not registered yet: a snapshot without self is no loss.
        v.apply(snap(1, vec![m("a", 1)]));
        assert_eq!(v.self_losses(), 0);
        v.apply(up(2, m("self", 1)));
        // A stale Down (older than the registration) is no loss either.
        v.apply(down(1, "self"));
        assert_eq!(v.self_losses(), 0);
        v.apply(down(3, "self"));
        assert_eq!(v.self_losses(), 1);
        // Registered again, then a newer snapshot without self: lost again.
        v.apply(up(4, m("self", 1)));
        v.apply(snap(5, vec![m("a", 1)]));
        assert_eq!(v.self_losses(), 2);
        // Re-registered under a new incarnation without a Down in between: also a loss.
        v.apply(snap(6, vec![m("a", 1), m("self", 6)]));
        v.apply(up(8, m("self", 8)));
        assert_eq!(v.self_losses(), 3);
        // Self stays in the view through all of it.
        assert!(v.contains(&MemberId::new("self")));
        // Duplicates and stale news change nothing.
        v.apply(up(8, m("self", 8)));
        v.apply(down(3, "self"));
        assert_eq!(v.self_losses(), 3);
        // Views fed the same events in another order are equal, whatever they counted.
        let mut w = view();
        for e in [up(8, m("self", 8)), snap(6, vec![m("a", 1), m("self", 6)])] {
            w.apply(e);
        }
        assert_eq!(
            w.members().collect::<Vec<_>>(),
            v.members().collect::<Vec<_>>()
        );
    }
}
