//! `MembershipView`: any delivery order of a set of events, with duplicates, gives one view, the
//! one the from-scratch `MembershipModel` derives; the reported changes replay to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use lcache_core::{
    Member, MemberId, MembershipEvent, MembershipView, RingChange, RingConfig, Router,
};
use lcache_proptests::membership_model::{event_subject, MembershipModel};
use lcache_proptests::strategy::{
    events_and_two_orders, member, member_id, membership_event, self_member, SELF_ID,
};
use proptest::prelude::*;

/// A view, the model, a router and a plain map fed the same events in `order`, checked after
/// every event.
fn deliver(
    events: &[MembershipEvent],
    order: &[usize],
) -> Result<(MembershipView, Router), TestCaseError> {
    let mut view = MembershipView::new(self_member());
    let mut model = MembershipModel::new(self_member());
    let mut router = Router::new(self_member(), RingConfig { vnodes: 8 });
    let mut replayed: BTreeMap<MemberId, Member> =
        BTreeMap::from([(self_member().id, self_member())]);
    for (step, &i) in order.iter().enumerate() {
        let event = events[i].clone();
        model.apply(event.clone());
        let changes = view.apply(event);
        for change in &changes {
            match change {
                RingChange::Added(m) => {
                    prop_assert!(
                        replayed.insert(m.id.clone(), m.clone()).is_none(),
                        "{:?}",
                        change
                    );
                }
                RingChange::Updated(m) => {
                    let old = replayed.insert(m.id.clone(), m.clone());
                    prop_assert!(old.is_some_and(|old| old != *m), "{:?}", change);
                }
                RingChange::Removed(id) => {
                    prop_assert!(replayed.remove(id).is_some(), "{:?}", change);
                }
            }
        }
        let ids: Vec<&MemberId> = changes
            .iter()
            .map(|c| match c {
                RingChange::Added(m) | RingChange::Updated(m) => &m.id,
                RingChange::Removed(id) => id,
            })
            .collect();
        prop_assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "changes in id order: {:?}",
            ids
        );
        router.apply(&changes);

        let live: Vec<Member> = view.members().cloned().collect();
        prop_assert_eq!(&live, &model.live(), "step {}: live set", step);
        prop_assert_eq!(&live, &replayed.values().cloned().collect::<Vec<_>>());
        prop_assert_eq!(&live, &router.members().cloned().collect::<Vec<_>>());
        prop_assert_eq!(view.get(&self_member().id), Some(&self_member()));
        prop_assert_eq!(view.len(), live.len());
        prop_assert_eq!(view.revision(), model.revision());
        let ring_ids: Vec<&MemberId> = router.ring().members().map(|(id, _)| id).collect();
        let live_ids: Vec<&MemberId> = live.iter().map(|m| &m.id).collect();
        prop_assert_eq!(ring_ids, live_ids);
    }
    Ok((view, router))
}

/// Ids whose newest information is a `Down`: a Down newer than every snapshot and at least as
/// new as every `Up` of that id (a Down wins a tie).
fn newest_is_down(events: &[MembershipEvent]) -> Vec<MemberId> {
    let latest_snapshot = events
        .iter()
        .filter(|e| matches!(e, MembershipEvent::Snapshot { .. }))
        .map(MembershipEvent::revision)
        .max();
    let mut result = Vec::new();
    for id in events.iter().filter_map(event_subject) {
        let about: Vec<&MembershipEvent> = events
            .iter()
            .filter(|e| event_subject(e) == Some(id))
            .collect();
        let newest_down = about
            .iter()
            .filter(|e| matches!(e, MembershipEvent::Down { .. }))
            .map(|e| e.revision())
            .max();
        let newest_up = about
            .iter()
            .filter(|e| matches!(e, MembershipEvent::Up { .. }))
            .map(|e| e.revision())
            .max();
        if let Some(down) = newest_down {
            if latest_snapshot.is_none_or(|s| down > s)
                && newest_up.is_none_or(|up| down >= up)
                && !result.contains(id)
            {
                result.push(id.clone());
            }
        }
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Two fresh views fed the same events in two random orders, with duplicates, end equal,
    /// and equal to the model at every step; a member whose newest news is a Down is not live.
    #[test]
    fn views_converge_whatever_the_order((events, first, second) in events_and_two_orders(14)) {
        let (a, router_a) = deliver(&events, &first)?;
        let (b, router_b) = deliver(&events, &second)?;
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.members().collect::<Vec<_>>(), b.members().collect::<Vec<_>>());
        prop_assert_eq!(
            router_a.members().collect::<Vec<_>>(),
            router_b.members().collect::<Vec<_>>()
        );
        for id in newest_is_down(&events) {
            if id.as_str() != SELF_ID {
                prop_assert!(!a.contains(&id), "{:?} resurrected", id);
            }
        }
        prop_assert!(a.contains(&MemberId::new(SELF_ID)));
    }

    /// After a Down newer than anything seen, no Up at or below its revision brings the member
    /// back, whatever else arrives in between (as long as nothing is newer than the Down).
    #[test]
    fn stale_up_never_resurrects(
        history in prop::collection::vec(membership_event(), 0..12),
        id in member_id(),
        stale in prop::collection::vec((0u64..=12, member(), membership_event()), 1..8),
    ) {
        let down_revision = 12;
        let mut view = MembershipView::new(self_member());
        for event in history {
            view.apply(event);
        }
        view.apply(MembershipEvent::Down { revision: down_revision, id: id.clone() });
        for (revision, member, noise) in stale {
            let member = Member { id: id.clone(), ..member };
            view.apply(MembershipEvent::Up { revision, member });
            // Other stale news (revisions below 12) about anyone, this id included.
            view.apply(noise);
            if id.as_str() == SELF_ID {
                prop_assert_eq!(view.get(&id), Some(&self_member()));
            } else {
                prop_assert!(!view.contains(&id), "stale Up at {} resurrected {:?}", revision, id);
            }
        }
    }
}
