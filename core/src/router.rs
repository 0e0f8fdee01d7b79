//! Where a request is served: on this node or on the key's owner.

use std::collections::BTreeMap;

use crate::member::{Member, MemberId};
use crate::membership::RingChange;
use crate::ring::{Ring, RingConfig};

/// Weight every member gets on the router's ring ([`Member`] carries no weight yet).
const MEMBER_WEIGHT: u32 = 1;

/// Where to serve one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Serve it on this node.
    Local,
    /// Forward it to this member, the key's owner.
    Peer(Member),
}

/// Maps keys to members: a [`Ring`] plus the address of every member, kept in step with the
/// [`crate::membership::MembershipView`] through its [`RingChange`]s. This node is always a member.
#[derive(Debug, Clone)]
pub struct Router {
    self_member: Member,
    ring: Ring,
    /// Every member on the ring, self included.
    members: BTreeMap<MemberId, Member>,
    /// The same members in the ring's id order, so a key's owner is found by the ring's index
    /// (no id comparisons on the request path); and where self is among them.
    by_index: Vec<Member>,
    self_index: usize,
}

impl Router {
    /// A router whose ring holds only `self_member`.
    pub fn new(self_member: Member, ring: RingConfig) -> Self {
        let mut router = Router {
            members: BTreeMap::from([(self_member.id.clone(), self_member.clone())]),
            self_member,
            ring: Ring::new(ring),
            by_index: Vec::new(),
            self_index: 0,
        };
        router.sync_ring();
        router
    }

    /// Applies live-set changes to the ring and the address book. Changes about this node's own id
    /// are ignored: self is never removed or altered. `Added` of a known member and `Updated` of an
    /// unknown one are treated alike (upsert).
    pub fn apply(&mut self, changes: &[RingChange]) {
        for change in changes {
            match change {
                RingChange::Added(member) | RingChange::Updated(member) => {
                    if member.id != self.self_member.id {
                        self.members.insert(member.id.clone(), member.clone());
                    }
                }
                RingChange::Removed(id) => {
                    if *id != self.self_member.id {
                        self.members.remove(id);
                    }
                }
            }
        }
        self.sync_ring();
    }

    /// The member owning `key`.
    pub fn owner(&self, key: &[u8]) -> &Member {
        self.ring
            .owner_index(key)
            .and_then(|index| self.by_index.get(index))
            // Unreachable: self is always on the ring and the ring mirrors `members`.
            .unwrap_or(&self.self_member)
    }

    /// Whether this node owns `key`, by position on the ring.
    fn owns(&self, key: &[u8]) -> bool {
        self.ring
            .owner_index(key)
            .is_none_or(|index| index == self.self_index)
    }

    /// Where to serve a request for `key`: [`Route::Local`] if this node owns the key or the
    /// request was already forwarded once (`forwarded`; so views that disagree cannot make a
    /// forwarding loop), else [`Route::Peer`] with the owner.
    pub fn route(&self, key: &[u8], forwarded: bool) -> Route {
        if forwarded {
            return Route::Local;
        }
        if self.owns(key) {
            Route::Local
        } else {
            Route::Peer(self.owner(key).clone())
        }
    }

    /// Whether `key` is owned by this node.
    pub fn is_local(&self, key: &[u8]) -> bool {
        self.owns(key)
    }

    /// All members, self included, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }

    /// Number of members, self included (never 0).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: self is always a member. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// This node's id.
    pub fn self_id(&self) -> &MemberId {
        &self.self_member.id
    }

    /// The ring in use, for inspection.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    fn sync_ring(&mut self) {
        let members = self.members.keys().map(|id| (id.clone(), MEMBER_WEIGHT));
        let synced = self.ring.set_members(members);
        debug_assert!(synced.is_ok(), "MEMBER_WEIGHT is a valid weight");
        // The ring's ids are `members`' keys in the same (id) order.
        self.by_index = self.members.values().cloned().collect();
        self.self_index = self
            .ring
            .ids()
            .iter()
            .position(|id| *id == self.self_member.id)
            .unwrap_or(0);
        debug_assert!(self.by_index.iter().map(|m| &m.id).eq(self.ring.ids()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MembershipEvent, MembershipView};

    fn m(id: &str) -> Member {
        Member::new(id, format!("{id}:7000"), 1)
    }

    fn router() -> Router {
        Router::new(m("self"), RingConfig { vnodes: 64 })
    }

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..2_000).map(|i| format!("key-{i}").into_bytes())
    }

    #[test]
    fn alone_everything_is_local() {
        let r = router();
        assert_eq!(r.self_id().as_str(), "self");
        assert_eq!(r.len(), 1);
        for k in keys() {
            assert_eq!(r.route(&k, false), Route::Local);
            assert_eq!(r.owner(&k), &m("self"));
        }
    }

    #[test]
    fn routes_to_owner_unless_forwarded() {
        let mut r = router();
        r.apply(&[RingChange::Added(m("a")), RingChange::Added(m("b"))]);
        let (mut local, mut remote) = (0, 0);
        for k in keys() {
            let owner = r.owner(&k).clone();
            assert_eq!(Some(&owner.id), r.ring().owner(&k));
            match r.route(&k, false) {
                Route::Local => {
                    assert_eq!(owner.id.as_str(), "self");
                    local += 1;
                }
                Route::Peer(peer) => {
                    assert_eq!(peer, owner);
                    assert_ne!(peer.id.as_str(), "self");
                    remote += 1;
                }
            }
            assert_eq!(
                r.route(&k, true),
                Route::Local,
                "forwarded requests never hop again"
            );
        }
        assert!(local > 0 && remote > 0);
    }

    #[test]
    fn updates_change_addresses_and_removals_move_keys_home() {
        let mut r = router();
        r.apply(&[RingChange::Added(m("a"))]);
        let remote_key = keys().find(|k| !r.is_local(k)).unwrap();
        let moved = Member::new("a", "new-host:7001", 2);
        r.apply(&[RingChange::Updated(moved.clone())]);
        assert_eq!(r.route(&remote_key, false), Route::Peer(moved));
        r.apply(&[RingChange::Removed(MemberId::new("a"))]);
        assert_eq!(r.route(&remote_key, false), Route::Local);
        assert_eq!(r.members().collect::<Vec<_>>(), vec![&m("self")]);
    }

    #[test]
    fn self_is_never_removed_or_altered() {
        let mut r = router();
        r.apply(&[
            RingChange::Removed(MemberId::new("self")),
            RingChange::Updated(Member::new("self", "elsewhere:1", 9)),
        ]);
        assert_eq!(r.members().collect::<Vec<_>>(), vec![&m("self")]);
        assert!(r.ring().contains(&MemberId::new("self")));
        assert_eq!(r.route(b"k", false), Route::Local);
    }

    #[test]
    fn follows_a_membership_view() {
        let mut view = MembershipView::new(m("self"));
        let mut r = router();
        let events = [
            MembershipEvent::Snapshot {
                revision: 2,
                members: vec![m("a"), m("b"), m("c")],
            },
            MembershipEvent::Down {
                revision: 3,
                id: MemberId::new("b"),
            },
        ];
        for e in events {
            r.apply(&view.apply(e));
        }
        assert_eq!(
            r.members().collect::<Vec<_>>(),
            view.members().collect::<Vec<_>>()
        );
        let ids: Vec<_> = r.ring().members().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "self"]);
    }

    #[test]
    fn two_routers_with_one_view_agree_on_owners() {
        let all = [m("self"), m("a"), m("b")];
        let mut mine = router();
        let mut theirs = Router::new(m("a"), RingConfig { vnodes: 64 });
        let added: Vec<_> = all.iter().cloned().map(RingChange::Added).collect();
        mine.apply(&added);
        theirs.apply(&added);
        for k in keys() {
            assert_eq!(mine.owner(&k), theirs.owner(&k));
        }
    }
}
