//! Who a node is: its stable [`MemberId`] and the [`Member`] record peers use to reach it.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Stable identity of a node, the same across its restarts.
///
/// The id is what the ring hashes (see [`crate::ring`]), so it must not change while a node keeps
/// its place in the cluster. Cloning is cheap (a shared `Arc<str>`); ordering, equality and hashing
/// are those of the string, so ids sort the same way in every process.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// An id with the given text.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        MemberId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberId {
    fn from(id: &str) -> Self {
        MemberId::new(id)
    }
}

impl From<String> for MemberId {
    fn from(id: String) -> Self {
        MemberId::new(id)
    }
}

impl From<Arc<str>> for MemberId {
    fn from(id: Arc<str>) -> Self {
        MemberId(id)
    }
}

impl AsRef<str> for MemberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by [`MemberId`] be queried with a plain `&str`.
impl Borrow<str> for MemberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A live member: its id, the address peers dial, and an incarnation that grows on each restart.
///
/// The incarnation tells a restarted node (same id, maybe same address) from its previous life.
/// The derived order (id, then address, then incarnation) is only a deterministic total order for
/// tie-breaking; it carries no notion of "newer".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Stable identity, hashed onto the ring.
    pub id: MemberId,
    /// Address peers dial to reach this member, as `host:port`.
    pub addr: String,
    /// Grows each time the member restarts.
    pub incarnation: u64,
}

impl Member {
    /// A member record.
    pub fn new(id: impl Into<MemberId>, addr: impl Into<String>, incarnation: u64) -> Self {
        Member {
            id: id.into(),
            addr: addr.into(),
            incarnation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn id_behaves_like_its_text() {
        let a = MemberId::new("node-a");
        let b: MemberId = String::from("node-b").into();
        assert_eq!(a.as_str(), "node-a");
        assert_eq!(a.to_string(), "node-a");
        assert_eq!(format!("{a:?}"), "\"node-a\"");
        assert!(a < b);
        assert_eq!(a, MemberId::from("node-a"));
    }

    #[test]
    fn id_clone_shares_storage() {
        let a = MemberId::new("node-a");
        let c = a.clone();
        assert!(std::ptr::eq(a.as_str(), c.as_str()));
    }

    #[test]
    fn maps_keyed_by_id_accept_str_queries() {
        let mut m = BTreeMap::new();
        m.insert(MemberId::new("x"), 1);
        assert_eq!(m.get("x"), Some(&1));
    }

    #[test]
    fn member_new_fills_fields() {
        let m = Member::new("a", "10.0.0.1:7000", 3);
        assert_eq!(m.id.as_str(), "a");
        assert_eq!(m.addr, "10.0.0.1:7000");
        assert_eq!(m.incarnation, 3);
    }
}
