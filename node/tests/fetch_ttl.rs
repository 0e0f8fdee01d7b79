//! A value fetched from its owner is never reported, nor kept as a hot copy, with more lifetime
//! than it has left, however long the fetch took. Both were found by the simulation (`sim/`,
//! property S4): a hot copy outlived the owner's value by the fetch's transit time, and a get
//! that joined a fetch already in flight was told the remaining lifetime the owner had measured
//! before it joined.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lcache_core::member::{Member, MemberId};
use lcache_discovery::StaticDiscovery;
use lcache_node::{GroupConfig, HotCacheConfig, Node, NodeConfig, NodeService};
use lcache_transport::{
    CacheHandler, Deadline, DeleteRequest, Fetched, GetRequest, InvalidateRequest, SetRequest,
    Transport, TransportError,
};
use tokio::time::Instant;

const GROUP: &str = "g";
/// How long the owner's answer takes to arrive.
const TRANSIT: Duration = Duration::from_millis(300);
/// When (since the test started) the owner's value expires.
const EXPIRES_AFTER: Duration = Duration::from_millis(500);

/// An owner whose value expires at a fixed instant; it measures the remaining lifetime when
/// asked, and its answer then takes [`TRANSIT`] to arrive.
#[derive(Debug)]
struct SlowOwner {
    expires_at: Instant,
}

impl Transport for SlowOwner {
    async fn get(
        &self,
        _peer: &Member,
        _req: GetRequest,
        _deadline: Deadline,
    ) -> Result<Option<Fetched>, TransportError> {
        let left = self
            .expires_at
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero());
        tokio::time::sleep(TRANSIT).await;
        Ok(left.map(|ttl| Fetched {
            value: "v".into(),
            ttl: Some(ttl),
        }))
    }

    async fn set(
        &self,
        _peer: &Member,
        _req: SetRequest,
        _deadline: Deadline,
    ) -> Result<(), TransportError> {
        Ok(())
    }

    async fn delete(
        &self,
        _peer: &Member,
        _req: DeleteRequest,
        _deadline: Deadline,
    ) -> Result<bool, TransportError> {
        Ok(false)
    }

    async fn invalidate(
        &self,
        _peer: &Member,
        _req: InvalidateRequest,
        _deadline: Deadline,
    ) -> Result<(), TransportError> {
        Ok(())
    }

    fn forget(&self, _peer: &MemberId) {}
}

/// The remaining lifetime a get sent now is told, `None` on a miss.
async fn ttl_of(service: &NodeService<SlowOwner>, key: &str) -> Option<Duration> {
    let req = GetRequest {
        group: GROUP.into(),
        key: key.to_owned().into(),
        forwarded: false,
    };
    let fetched = service
        .get(req, Deadline::after(Duration::from_secs(5)), Instant::now())
        .await;
    fetched
        .unwrap()
        .map(|f| f.ttl.expect("the value has a TTL"))
}

#[tokio::test(start_paused = true)]
async fn a_fetched_value_never_outlives_the_owners() {
    let start = Instant::now();
    let me = Member::new("a", "a:1", 1);
    let owner = Member::new("b", "b:1", 1);
    let mut group = GroupConfig::new(GROUP);
    group.hot = Some(HotCacheConfig {
        budget_bytes: 1 << 20,
        lifetime: Duration::from_secs(60),
    });
    let config = NodeConfig::new("a", "a:1").with_groups(vec![group]);
    let transport = SlowOwner {
        expires_at: start + EXPIRES_AFTER,
    };
    let node = Node::start(config, transport, StaticDiscovery::new([me, owner]))
        .await
        .unwrap();
    for _ in 0..10_000 {
        if node.members().len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(Instant::now(), start, "joined without time passing");
    let key = (0..1_000)
        .map(|i| format!("k{i}"))
        .find(|k| node.owner(k.as_bytes()).id.as_str() == "b")
        .unwrap();
    let service = node.service();
    let left_at = |sent: Duration| EXPIRES_AFTER.saturating_sub(sent);

    // A get at 0 ms leads the fetch; one sent at 200 ms joins it. Both answers arrive at 300 ms.
    let (first, joined) = tokio::join!(ttl_of(&service, &key), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ttl_of(&service, &key).await
    });
    assert!(first.unwrap() <= left_at(Duration::ZERO));
    let joined = joined.unwrap();
    assert!(
        joined <= left_at(Duration::from_millis(200)),
        "a get sent at 200 ms was told {joined:?} are left of a value expiring at 500 ms"
    );

    // The hot copy is served with what is left of the owner's lifetime, and not after it.
    tokio::time::sleep_until(start + Duration::from_millis(450)).await;
    let copy = ttl_of(&service, &key).await.unwrap();
    assert!(
        copy <= left_at(Duration::from_millis(450)),
        "hot copy: {copy:?}"
    );
    tokio::time::sleep_until(start + Duration::from_millis(520)).await;
    assert_eq!(
        ttl_of(&service, &key).await,
        None,
        "served after the owner's value expired"
    );
}
