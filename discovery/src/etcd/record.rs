//! The etcd key layout and the member record stored under each key.
//!
//! Key: `/lcache/<cluster>/members/<node-id>`. Value: one line of `name=value` fields,
//! `addr=127.0.0.1:7001 incarnation=42`, so `etcdctl get --prefix /lcache/` shows the cluster as
//! text. Readers ignore fields they do not know (so later versions may add some) and require
//! `addr` and `incarnation`.

use crate::DiscoveryError;
use lcache_core::member::{Member, MemberId};

/// First segment of every LCache key in etcd.
pub const KEY_ROOT: &str = "/lcache";

/// Where one cluster's members live in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `/lcache/<cluster>/members/`, with the trailing slash so cluster `a` never sees `ab`.
    prefix: String,
}

impl Layout {
    /// The layout of `cluster`, which must be non-empty and free of `/` and whitespace.
    pub(crate) fn new(cluster: &str) -> Result<Self, DiscoveryError> {
        check_segment("cluster name", cluster)?;
        Ok(Layout {
            prefix: format!("{KEY_ROOT}/{cluster}/members/"),
        })
    }

    /// The prefix every member key of the cluster starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of member `id`; the id must be a valid key segment (see [`check_segment`]).
    pub(crate) fn key(&self, id: &MemberId) -> Result<String, DiscoveryError> {
        check_segment("node id", id.as_str())?;
        Ok(format!("{}{id}", self.prefix))
    }

    /// The member id a key of this cluster names; `None` for keys outside the layout.
    pub(crate) fn id_of(&self, key: &[u8]) -> Option<MemberId> {
        let id = key.strip_prefix(self.prefix.as_bytes())?;
        let id = std::str::from_utf8(id).ok()?;
        check_segment("node id", id).ok()?;
        Some(MemberId::new(id))
    }
}

/// A key segment is non-empty UTF-8 without `/` or whitespace (whitespace would make
/// `etcdctl` output ambiguous), at most 255 bytes.
fn check_segment(what: &str, segment: &str) -> Result<(), DiscoveryError> {
    let bad = segment.is_empty()
        || segment.len() > 255
        || segment.chars().any(|c| c == '/' || c.is_whitespace());
    if bad {
        return Err(DiscoveryError::InvalidConfig(format!(
            "{what} `{segment}` must be 1..=255 bytes without `/` or whitespace"
        )));
    }
    Ok(())
}

/// The value stored under a member's key.
pub(crate) fn encode_value(member: &Member) -> String {
    format!("addr={} incarnation={}", member.addr, member.incarnation)
}

/// Why a stored value is not a member record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    /// The value is not UTF-8.
    #[error("value is not UTF-8")]
    NotUtf8,
    /// A required field is absent.
    #[error("value lacks `{0}=`")]
    Missing(&'static str),
    /// A field is not of the form `name=value`, or its value does not parse.
    #[error("bad field `{0}`")]
    BadField(String),
}

/// The member `id` described by a stored `value`.
pub(crate) fn decode_value(id: MemberId, value: &[u8]) -> Result<Member, RecordError> {
    let text = std::str::from_utf8(value).map_err(|_| RecordError::NotUtf8)?;
    let mut addr = None;
    let mut incarnation = None;
    for field in text.split_whitespace() {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| RecordError::BadField(field.to_string()))?;
        match name {
            "addr" if !value.is_empty() => addr = Some(value.to_string()),
            "incarnation" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| RecordError::BadField(field.to_string()))?;
                incarnation = Some(n);
            }
            "addr" => return Err(RecordError::BadField(field.to_string())),
            _ => {} // a field of a later version
        }
    }
    Ok(Member {
        id,
        addr: addr.ok_or(RecordError::Missing("addr"))?,
        incarnation: incarnation.ok_or(RecordError::Missing("incarnation"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let layout = Layout::new("prod").unwrap();
        assert_eq!(layout.prefix(), "/lcache/prod/members/");
        let key = layout.key(&MemberId::new("node-1")).unwrap();
        assert_eq!(key, "/lcache/prod/members/node-1");
        assert_eq!(layout.id_of(key.as_bytes()), Some(MemberId::new("node-1")));
        assert_eq!(layout.id_of(b"/lcache/prod/members/"), None);
        assert_eq!(layout.id_of(b"/lcache/prodx/members/a"), None);
        assert_eq!(layout.id_of(b"/lcache/prod/members/a/b"), None);
        assert_eq!(layout.id_of(b"/lcache/prod/members/\xff"), None);
    }

    #[test]
    fn rejects_unusable_names() {
        for bad in ["", "a/b", "a b", "tab\t"] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
            let layout = Layout::new("c").unwrap();
            assert!(layout.key(&MemberId::new(bad)).is_err(), "{bad:?}");
        }
        assert!(Layout::new(&"x".repeat(256)).is_err());
    }

    #[test]
    fn values_round_trip_and_read_as_text() {
        let member = Member::new("a", "127.0.0.1:7001", 42);
        let value = encode_value(&member);
        assert_eq!(value, "addr=127.0.0.1:7001 incarnation=42");
        assert_eq!(
            decode_value(member.id.clone(), value.as_bytes()),
            Ok(member)
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_values_rejected() {
        let id = || MemberId::new("a");
        assert_eq!(
            decode_value(id(), b"zone=eu incarnation=1 addr=h:1 "),
            Ok(Member::new("a", "h:1", 1))
        );
        assert_eq!(
            decode_value(id(), b"addr=h:1"),
            Err(RecordError::Missing("incarnation"))
        );
        assert_eq!(
            decode_value(id(), b"incarnation=1"),
            Err(RecordError::Missing("addr"))
        );
        assert!(matches!(
            decode_value(id(), b"addr=h:1 incarnation=-1"),
            Err(RecordError::BadField(_))
        ));
        assert!(matches!(
            decode_value(id(), b"addr= incarnation=1"),
            Err(RecordError::BadField(_))
        ));
        assert!(matches!(
            decode_value(id(), b"junk"),
            Err(RecordError::BadField(_))
        ));
        assert_eq!(decode_value(id(), b"\xff"), Err(RecordError::NotUtf8));
    }
}
