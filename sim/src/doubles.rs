//! Deliberately broken test doubles. Each wraps a real component behind the same trait the node
//! uses and breaks one promise; the sweep in `tests/` asserts the checkers catch every one of
//! them within 100 seeds (see [`crate::Mutation`]).

use std::collections::BTreeMap;

use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use lcache_discovery::Fence;
use lcache_discovery::{Discovery, DiscoveryError, EVENT_CHANNEL_CAPACITY};
use lcache_node::{LoadError, Loaded, Loader};
use lcache_transport::{
    Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, SetRequest, Transport,
    TransportError,
};
use tokio::sync::mpsc;

use crate::options::{key_index, key_name};

/// A transport that acknowledges forwarded deletes without sending them: the owner keeps the
/// value the client was told is gone. Caught by L2.
#[derive(Debug)]
pub struct DropDeletes<T>(pub T);

impl<T: Transport> Transport for DropDeletes<T> {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        self.0.get(peer, req, deadline).await
    }

    async fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.0.set(peer, req, deadline).await
    }

    async fn delete(
        &self,
        _peer: &Member,
        _req: DeleteRequest,
        _deadline: Deadline,
    ) -> Result<bool, TransportError> {
        Ok(true)
    }

    async fn invalidate(
        &self,
        peer: &Member,
        req: InvalidateRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.0.invalidate(peer, req, deadline).await
    }

    fn forget(&self, peer: &MemberId) {
        self.0.forget(peer);
    }
}

/// A discovery that never reports a departure: `Down` events are swallowed and every snapshot
/// is widened to every member ever seen. Caught by L1 (a crashed or departed node stays in the
/// views).
#[derive(Debug)]
pub struct NoDepartures<D>(pub D);

impl<D: Discovery> Discovery for NoDepartures<D> {
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> Result<(), DiscoveryError> {
        let (tx, mut rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        tokio::spawn(async move {
            let mut seen: BTreeMap<MemberId, Member> = BTreeMap::new();
            while let Some(event) = rx.recv().await {
                let event = match event {
                    MembershipEvent::Down { .. } => continue,
                    MembershipEvent::Up { revision, member } => {
                        seen.insert(member.id.clone(), member.clone());
                        MembershipEvent::Up { revision, member }
                    }
                    MembershipEvent::Snapshot { revision, members } => {
                        for member in members {
                            seen.insert(member.id.clone(), member);
                        }
                        MembershipEvent::Snapshot {
                            revision,
                            members: seen.values().cloned().collect(),
                        }
                    }
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        self.0.join(me, tx, fence).await
    }

    async fn leave(&self) -> Result<(), DiscoveryError> {
        self.0.leave().await
    }
}

/// A loader that answers for the next key of the workload: `k03` gets `k04`'s value. Caught by
/// S1 (the value was produced for another key).
#[derive(Debug)]
pub struct WrongKeyLoader<L> {
    /// The loader asked instead.
    pub inner: L,
    /// Size of the workload's key space.
    pub keys: usize,
}

#[async_trait::async_trait]
impl<L: Loader> Loader for WrongKeyLoader<L> {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let text = String::from_utf8_lossy(key);
        match key_index(&text) {
            Some(i) if self.keys > 1 => {
                let other = key_name((i + 1) % self.keys);
                self.inner.load(other.as_bytes()).await
            }
            _ => self.inner.load(key).await,
        }
    }
}

/// A loader that stretches every lifetime the source gives twentyfold. Caught by S4 (values are
/// served after the source's lifetime, as the history records it).
#[derive(Debug)]
pub struct StretchTtl<L>(pub L);

#[async_trait::async_trait]
impl<L: Loader> Loader for StretchTtl<L> {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let loaded = self.0.load(key).await?;
        Ok(loaded.map(|mut l| {
            l.ttl = l.ttl.map(|ttl| ttl * 20);
            l
        }))
    }
}
