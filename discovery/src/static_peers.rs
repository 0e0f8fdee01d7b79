//! A fixed list of peers: the embedded default, needing no external service.

use crate::{Discovery, DiscoveryError, Fence};
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// Revision of the single snapshot a static cluster ever produces.
const STATIC_REVISION: u64 = 1;

/// Discovery from a fixed peer list given at start (for example `--peers a=host:port,...`).
///
/// Every node of a static cluster is assumed alive; a dead peer is handled by the node's
/// fallback to loading locally, not by the view.
#[derive(Debug, Clone, Default)]
pub struct StaticDiscovery {
    peers: BTreeMap<MemberId, Member>,
}

impl StaticDiscovery {
    /// A static cluster made of `peers` (self may be among them; it is replaced by the joining node).
    pub fn new(peers: impl IntoIterator<Item = Member>) -> Self {
        let peers = peers.into_iter().map(|m| (m.id.clone(), m)).collect();
        StaticDiscovery { peers }
    }

    /// The configured peers, sorted by id.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.peers.values()
    }
}

impl Discovery for StaticDiscovery {
    /// Sends the one snapshot; a static registration is never lost, so `fence` is never raised.
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        _fence: Fence,
    ) -> Result<(), DiscoveryError> {
        let mut members = self.peers.clone();
        members.insert(me.id.clone(), me);
        let snapshot = MembershipEvent::Snapshot {
            revision: STATIC_REVISION,
            members: members.into_values().collect(),
        };
        events
            .send(snapshot)
            .await
            .map_err(|_| DiscoveryError::Closed)
    }

    async fn leave(&self) -> Result<(), DiscoveryError> {
        Ok(())
    }
}

/// Parse a peer list `ID=HOST:PORT,ID=HOST:PORT,...` (whitespace around items is ignored).
///
/// Every peer gets incarnation 0; ids must be unique and addresses must carry a port.
pub fn parse_peers(spec: &str) -> Result<Vec<Member>, DiscoveryError> {
    let mut seen = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            DiscoveryError::InvalidConfig(format!("peer `{item}` is not of the form ID=HOST:PORT"))
        })?;
        let (id, addr) = (id.trim(), addr.trim());
        if id.is_empty() {
            return Err(DiscoveryError::InvalidConfig(format!(
                "peer `{item}` has an empty id"
            )));
        }
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(DiscoveryError::InvalidConfig(format!(
                "peer `{id}` address `{addr}` is not HOST:PORT"
            )));
        }
        let member = Member {
            id: MemberId::new(id),
            addr: addr.to_string(),
            incarnation: 0,
        };
        if seen.insert(member.id.clone(), member).is_some() {
            return Err(DiscoveryError::InvalidConfig(format!(
                "peer id `{id}` appears twice"
            )));
        }
    }
    Ok(seen.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, addr: &str, incarnation: u64) -> Member {
        Member {
            id: MemberId::new(id),
            addr: addr.to_string(),
            incarnation,
        }
    }

    #[test]
    fn parses_peer_lists() {
        let peers = parse_peers(" b=127.0.0.1:7002, a=localhost:7001 ,").unwrap();
        assert_eq!(
            peers,
            vec![
                member("a", "localhost:7001", 0),
                member("b", "127.0.0.1:7002", 0)
            ]
        );
        assert!(parse_peers("").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_peer_lists() {
        for bad in [
            "a",
            "=h:1",
            "a=h",
            "a=:1",
            "a=h:port",
            "a=h:70000",
            "a=h:1,a=h:2",
        ] {
            let err = parse_peers(bad).unwrap_err();
            assert!(
                matches!(err, DiscoveryError::InvalidConfig(_)),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn join_sends_one_snapshot_with_self_replacing_its_static_entry() {
        let discovery = StaticDiscovery::new(parse_peers("a=h:1,b=h:2").unwrap());
        let (tx, mut rx) = mpsc::channel(4);
        discovery
            .join(member("a", "h:9", 3), tx, Fence::none())
            .await
            .unwrap();
        let event = rx.recv().await.unwrap();
        let MembershipEvent::Snapshot { revision, members } = event else {
            panic!("expected a snapshot, got {event:?}");
        };
        assert_eq!(revision, STATIC_REVISION);
        assert_eq!(members, vec![member("a", "h:9", 3), member("b", "h:2", 0)]);
        // The sender was dropped with join's scope: no further events.
        assert!(rx.recv().await.is_none());
        discovery.leave().await.unwrap();
    }

    #[tokio::test]
    async fn join_reports_a_closed_receiver() {
        let discovery = StaticDiscovery::default();
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = discovery
            .join(member("a", "h:1", 0), tx, Fence::none())
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::Closed));
    }
}
