//! Proptest strategies shared by several test files.

use lcache_core::{Member, MemberId, MembershipEvent};
use proptest::prelude::*;
use proptest::sample::Index;

/// Id of the node whose view the membership and router tests build.
pub const SELF_ID: &str = "self";

/// Member ids events talk about: self and four others, so events collide often.
pub const MEMBER_IDS: [&str; 5] = [SELF_ID, "a", "b", "c", "d"];

/// The record of the node under test.
pub fn self_member() -> Member {
    Member::new(SELF_ID, "self.host:7000", 1)
}

/// One of [`MEMBER_IDS`].
pub fn member_id() -> impl Strategy<Value = MemberId> {
    prop::sample::select(&MEMBER_IDS[..]).prop_map(MemberId::new)
}

/// A member record over [`MEMBER_IDS`], two addresses and incarnations `0..3`.
pub fn member() -> impl Strategy<Value = Member> {
    (
        member_id(),
        prop::sample::select(&["h1:7000", "h2:7000"][..]),
        0u64..3,
    )
        .prop_map(|(id, addr, incarnation)| Member::new(id, addr, incarnation))
}

/// A discovery event with a revision in `0..12`: snapshots of up to five records (duplicate ids
/// included), ups and downs.
pub fn membership_event() -> impl Strategy<Value = MembershipEvent> {
    prop_oneof![
        1 => (0u64..12, prop::collection::vec(member(), 0..5))
            .prop_map(|(revision, members)| MembershipEvent::Snapshot { revision, members }),
        3 => (0u64..12, member()).prop_map(|(revision, member)| MembershipEvent::Up { revision, member }),
        2 => (0u64..12, member_id()).prop_map(|(revision, id)| MembershipEvent::Down { revision, id }),
    ]
}

/// A delivery order of `len` events: every index once in a random order, then some indices again
/// inserted at random places (duplicated deliveries).
pub fn delivery_order(len: usize) -> impl Strategy<Value = Vec<usize>> {
    let permutation = Just((0..len).collect::<Vec<usize>>()).prop_shuffle();
    let duplicates = prop::collection::vec((any::<Index>(), any::<Index>()), 0..6);
    (permutation, duplicates).prop_map(move |(mut order, duplicates)| {
        if len == 0 {
            return order;
        }
        for (which, at) in duplicates {
            let event = which.index(len);
            let at = at.index(order.len() + 1);
            order.insert(at, event);
        }
        order
    })
}

/// Events plus two independent delivery orders of them.
pub fn events_and_two_orders(
    max_events: usize,
) -> impl Strategy<Value = (Vec<MembershipEvent>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(membership_event(), 0..max_events).prop_flat_map(|events| {
        let len = events.len();
        (Just(events), delivery_order(len), delivery_order(len))
    })
}
