//! A reference model of [`lcache_core::MembershipView`]: the live set recomputed from scratch
//! from the set of events seen so far.
//!
//! Following the module docs of `lcache_core::membership`, the live set is decided by
//!
//! 1. the latest snapshot: the greatest by revision, ties broken by the (normalised) member list;
//!    a snapshot keeps, of several records with one id, the greatest by (incarnation, address);
//! 2. per member, the newest `Up`/`Down` with a revision *above* that snapshot's, "newest" being
//!    the greatest by (revision, Down over Up, incarnation, address); if there is one it decides,
//!    else the snapshot does;
//! 3. self, which is always live with its own record whatever the events say.
//!
//! Because this looks only at the set of events, any order or duplication must agree with it.

use std::collections::BTreeMap;

use lcache_core::{Member, MemberId, MembershipEvent};

/// The events seen so far and the self record; [`MembershipModel::live`] derives the live set.
#[derive(Debug, Clone)]
pub struct MembershipModel {
    self_member: Member,
    events: Vec<MembershipEvent>,
}

/// A snapshot's members with duplicate ids resolved: per id the greatest (incarnation, address).
pub fn normalise_snapshot(members: &[Member]) -> Vec<Member> {
    let mut by_id: BTreeMap<MemberId, Member> = BTreeMap::new();
    for member in members {
        let better = match by_id.get(&member.id) {
            None => true,
            Some(old) => (member.incarnation, &member.addr) > (old.incarnation, &old.addr),
        };
        if better {
            by_id.insert(member.id.clone(), member.clone());
        }
    }
    by_id.into_values().collect()
}

/// Order of one member's `Up`/`Down` records: (revision, is a Down, incarnation, address).
fn record_rank(event: &MembershipEvent) -> (u64, bool, u64, String) {
    match event {
        MembershipEvent::Up { revision, member } => {
            (*revision, false, member.incarnation, member.addr.clone())
        }
        MembershipEvent::Down { revision, .. } => (*revision, true, 0, String::new()),
        MembershipEvent::Snapshot { revision, .. } => (*revision, false, 0, String::new()),
    }
}

/// The member id an `Up` or `Down` is about (`None` for a snapshot).
pub fn event_subject(event: &MembershipEvent) -> Option<&MemberId> {
    match event {
        MembershipEvent::Up { member, .. } => Some(&member.id),
        MembershipEvent::Down { id, .. } => Some(id),
        MembershipEvent::Snapshot { .. } => None,
    }
}

impl MembershipModel {
    /// A model that has seen no event.
    pub fn new(self_member: Member) -> Self {
        MembershipModel {
            self_member,
            events: Vec::new(),
        }
    }

    /// Records one more event (duplicates are harmless).
    pub fn apply(&mut self, event: MembershipEvent) {
        self.events.push(event);
    }

    /// The latest snapshot: its revision and normalised members.
    pub fn latest_snapshot(&self) -> Option<(u64, Vec<Member>)> {
        let mut best: Option<(u64, Vec<Member>)> = None;
        for event in &self.events {
            if let MembershipEvent::Snapshot { revision, members } = event {
                let candidate = (*revision, normalise_snapshot(members));
                if best.as_ref().is_none_or(|b| candidate > *b) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// Highest revision of any event seen (0 if none).
    pub fn revision(&self) -> u64 {
        self.events
            .iter()
            .map(MembershipEvent::revision)
            .max()
            .unwrap_or(0)
    }

    /// The live set, self included, sorted by id.
    pub fn live(&self) -> Vec<Member> {
        let snapshot = self.latest_snapshot();
        let floor = snapshot.as_ref().map(|(revision, _)| *revision);
        let mut live: BTreeMap<MemberId, Member> = BTreeMap::new();
        if let Some((_, members)) = &snapshot {
            for member in members {
                live.insert(member.id.clone(), member.clone());
            }
        }
        // Newest record per id above the snapshot's revision.
        let mut newest: BTreeMap<MemberId, &MembershipEvent> = BTreeMap::new();
        for event in &self.events {
            let Some(id) = event_subject(event) else {
                continue;
            };
            if floor.is_some_and(|f| event.revision() <= f) {
                continue;
            }
            let better = match newest.get(id) {
                None => true,
                Some(old) => record_rank(event) > record_rank(old),
            };
            if better {
                newest.insert(id.clone(), event);
            }
        }
        for (id, event) in newest {
            match event {
                MembershipEvent::Up { member, .. } => {
                    live.insert(id, member.clone());
                }
                _ => {
                    live.remove(&id);
                }
            }
        }
        live.insert(self.self_member.id.clone(), self.self_member.clone());
        live.into_values().collect()
    }
}
