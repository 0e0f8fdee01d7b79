//! `Router` fed by a `MembershipView`: forwarded requests stay local, others are local exactly
//! when this node owns the key, and the owner is the ring's choice over the view's members.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lcache_core::{MemberId, MembershipView, Ring, RingConfig, Route, Router};
use lcache_proptests::strategy::{membership_event, self_member};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn route_is_local_iff_forwarded_or_owned(
        events in prop::collection::vec(membership_event(), 0..16),
        vnodes in 1u32..64,
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..200),
    ) {
        let config = RingConfig { vnodes };
        let mut view = MembershipView::new(self_member());
        let mut router = Router::new(self_member(), config);
        for event in events {
            router.apply(&view.apply(event));
        }
        // An independent ring over the view's members.
        let mut reference = Ring::new(config);
        reference.set_members(view.members().map(|m| (m.id.clone(), 1))).unwrap();
        let self_id = self_member().id;

        for key in &keys {
            prop_assert_eq!(router.route(key, true), Route::Local, "forwarded never hops");
            let owner = router.owner(key);
            prop_assert_eq!(Some(&owner.id), reference.owner(key));
            prop_assert_eq!(Some(owner), view.get(&owner.id), "owner is a live member");
            let local = owner.id == self_id;
            prop_assert_eq!(router.is_local(key), local);
            match router.route(key, false) {
                Route::Local => prop_assert!(local, "local route for a key owned by {:?}", owner.id),
                Route::Peer(peer) => {
                    prop_assert!(!local);
                    prop_assert_ne!(&peer.id, &self_id);
                    prop_assert_eq!(&peer, owner);
                }
            }
        }
        prop_assert_eq!(router.len(), view.len(), "the router knows every live member");
        prop_assert!(!router.is_empty(), "self is always a member");
        let alone = view.len() == 1;
        if alone {
            prop_assert!(keys.iter().all(|k| router.route(k, false) == Route::Local));
        }
        prop_assert_eq!(router.self_id(), &MemberId::new(self_id.as_str()));
    }
}
