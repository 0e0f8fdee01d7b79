//! Deliberately broken test doubles. Each wraps a real component behind the same trait the node
//! uses (or the probe the monitor reads) and breaks one promise; the test suite asserts the
//! checkers catch every one of them within 200 seeds (see [`crate::Mutation`]).
//!
//! Node-facing code, kept small: it moves with the node's transport API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_core::group::Tier;
use lcache_transport::GroupStats;

use crate::node_host::Probe;

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

/// Methods of [`Transport`] a double passes unchanged to the transport it wraps (`$field`).
macro_rules! pass_through {
    ($field:tt, get) => {
        async fn get(
            &self,
            peer: &Member,
            req: GetRequest,
            deadline: Deadline,
        ) -> Result<Option<Fetched>, TransportError> {
            self.$field.get(peer, req, deadline).await
        }
    };
    ($field:tt, set) => {
        async fn set(
            &self,
            peer: &Member,
            req: SetRequest,
            deadline: Deadline,
        ) -> Result<(), TransportError> {
            self.$field.set(peer, req, deadline).await
        }
    };
    ($field:tt, delete) => {
        async fn delete(
            &self,
            peer: &Member,
            req: DeleteRequest,
            deadline: Deadline,
        ) -> Result<bool, TransportError> {
            self.$field.delete(peer, req, deadline).await
        }
    };
    ($field:tt, invalidate) => {
        async fn invalidate(
            &self,
            peer: &Member,
            req: InvalidateRequest,
            deadline: Deadline,
        ) -> Result<(), TransportError> {
            self.$field.invalidate(peer, req, deadline).await
        }
    };
    ($field:tt, forget) => {
        fn forget(&self, peer: &MemberId) {
            self.$field.forget(peer);
        }
    };
    ($field:tt: $($method:ident),+) => {
        $(pass_through!($field, $method);)+
    };
}

/// A transport that acknowledges forwarded deletes without sending them: the owner keeps the
/// value the client was told is gone. Caught by L2.
#[derive(Debug)]
pub struct DropDeletes<T>(pub T);

impl<T: Transport> Transport for DropDeletes<T> {
    pass_through!(0: get, set);

    async fn delete(
        &self,
        _peer: &Member,
        _req: DeleteRequest,
        _deadline: Deadline,
    ) -> Result<bool, TransportError> {
        Ok(true)
    }

    pass_through!(0: invalidate, forget);
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

/// A transport that acknowledges forwarded sets at once and sends them to the owner only a
/// little later (write-behind): the client's next read through the same node still finds the
/// older value. Caught by S7 (read-your-writes).
#[derive(Debug)]
pub struct LazySets<T>(pub Arc<T>);

/// How long [`LazySets`] sits on a write before sending it.
const LAZY_SET_DELAY: Duration = Duration::from_millis(300);

impl<T: Transport> Transport for LazySets<T> {
    pass_through!(0: get);

    async fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let (inner, peer) = (self.0.clone(), peer.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LAZY_SET_DELAY).await;
            let _ = inner.set(&peer, req, deadline).await;
        });
        Ok(())
    }

    pass_through!(0: delete, invalidate, forget);
}

/// How long [`StaleGets`] keeps an answer.
const STALE_MEMORY: Duration = Duration::from_secs(5);

/// A transport that remembers the owner's answer to a peer get for a few seconds and answers
/// later gets of the key from that memory, forgetting only on writes through its own node: the
/// other nodes' readers see an overwritten value long after the write. Caught by S8 (no
/// resurrection / real-time staleness).
#[derive(Debug)]
pub struct StaleGets<T> {
    inner: T,
    memory: parking_lot::Mutex<BTreeMap<Bytes, (tokio::time::Instant, Fetched)>>,
}

impl<T> StaleGets<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        StaleGets {
            inner,
            memory: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }
}

impl<T: Transport> Transport for StaleGets<T> {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        let now = tokio::time::Instant::now();
        if let Some((at, fetched)) = self.memory.lock().get(&req.key) {
            if now.duration_since(*at) < STALE_MEMORY {
                // Claims no lifetime, as a value without expiry would.
                return Ok(Some(Fetched {
                    value: fetched.value.clone(),
                    ttl: None,
                }));
            }
        }
        let key = req.key.clone();
        let result = self.inner.get(peer, req, deadline).await;
        if let Ok(Some(fetched)) = &result {
            if fetched.ttl.is_none() {
                self.memory.lock().insert(key, (now, fetched.clone()));
            }
        }
        result
    }

    async fn set(
        &self,
        peer: &Member,
        req: SetRequest,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.memory.lock().remove(&req.key);
        self.inner.set(peer, req, deadline).await
    }

    async fn delete(
        &self,
        peer: &Member,
        req: DeleteRequest,
        deadline: Deadline,
    ) -> Result<bool, TransportError> {
        self.memory.lock().remove(&req.key);
        self.inner.delete(peer, req, deadline).await
    }

    pass_through!(inner: invalidate, forget);
}

/// A transport that reports half of all peer gets as unreachable without sending them, so the
/// node falls back to loading keys it does not own while the cluster is healthy. Caught by S9
/// (one load per miss across the cluster).
#[derive(Debug)]
pub struct FallbackAlways<T> {
    inner: T,
    rng: parking_lot::Mutex<rand_chacha::ChaCha8Rng>,
}

impl<T> FallbackAlways<T> {
    /// Wraps `inner`, the transport of `node`'s incarnation `inc` in the run of `seed`.
    pub fn new(inner: T, seed: u64, node: &str, inc: u64) -> Self {
        FallbackAlways {
            inner,
            rng: parking_lot::Mutex::new(crate::rng::component_rng(
                seed,
                &format!("fallback-always/{node}/{inc}"),
            )),
        }
    }
}

impl<T: Transport> Transport for FallbackAlways<T> {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        if rand::Rng::random_bool(&mut *self.rng.lock(), 0.5) {
            return Err(TransportError::Unreachable {
                peer: peer.id.clone(),
                addr: peer.addr.clone(),
                reason: "pretended unreachable (broken double)".into(),
            });
        }
        self.inner.get(peer, req, deadline).await
    }

    pass_through!(inner: set, delete, invalidate, forget);
}

/// A transport that routes every peer get through another node first, unmarked (`hops = 0`),
/// which forwards it to the owner: a request travels two hops, and the middle node forwards a
/// key no client asked it for. Caught by F1 (forward at most once).
#[derive(Debug)]
pub struct Detour<T> {
    inner: T,
    me: String,
    nodes: Vec<String>,
}

impl<T> Detour<T> {
    /// Wraps `inner`, the transport of node `me` among `nodes`.
    pub fn new(inner: T, me: &str, nodes: Vec<String>) -> Self {
        Detour {
            inner,
            me: me.to_owned(),
            nodes,
        }
    }
}

impl<T: Transport> Transport for Detour<T> {
    async fn get(
        &self,
        peer: &Member,
        req: GetRequest,
        deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        let via = self
            .nodes
            .iter()
            .find(|n| **n != self.me && *n != peer.id.as_str());
        if let Some(via) = via {
            let member = Member::new(via.as_str(), format!("{via}:{}", crate::node_host::PORT), 0);
            let detour = GetRequest {
                forwarded: false,
                ..req.clone()
            };
            if let Ok(found) = self.inner.get(&member, detour, deadline).await {
                return Ok(found);
            }
        }
        self.inner.get(peer, req, deadline).await
    }

    pass_through!(inner: set, delete, invalidate, forget);
}

/// A probe whose byte counts under-report each store by a quarter, as a store with broken
/// accounting would (the stores' own counters are what it reports). Caught by S2, which
/// recounts the bytes from the listed entries.
#[derive(Debug)]
pub struct UndercountBytes<P>(pub P);

impl<P: Probe> Probe for UndercountBytes<P> {
    fn members(&self) -> Vec<Member> {
        self.0.members()
    }

    fn owner(&self, key: &[u8]) -> Member {
        self.0.owner(key)
    }

    fn group_stats(&self) -> GroupStats {
        let mut stats = self.0.group_stats();
        for tier in &mut stats.tiers {
            tier.store.bytes -= tier.store.bytes / 4;
        }
        stats
    }

    fn store_usage(&self) -> Vec<(u64, u64)> {
        self.0
            .store_usage()
            .into_iter()
            .map(|(bytes, budget)| (bytes - bytes / 4, budget))
            .collect()
    }

    fn entries(&self) -> Vec<(Bytes, usize, Tier)> {
        self.0.entries()
    }
}
