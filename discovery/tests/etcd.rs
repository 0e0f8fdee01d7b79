//! `EtcdDiscovery` against a real etcd (started per test; see `support/etcd_server.rs`).
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "support/etcd_server.rs"]
mod etcd_server;

use etcd_client::{Client, GetOptions};
use etcd_server::EtcdServer;
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::{MembershipEvent, MembershipView};
use lcache_discovery::{Discovery, EtcdConfig, EtcdDiscovery, Fence, EVENT_CHANNEL_CAPACITY};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn config(etcd: &EtcdServer, cluster: &str, ttl_secs: u64) -> EtcdConfig {
    let mut config =
        EtcdConfig::new([etcd.endpoint()], cluster).with_lease_ttl(Duration::from_secs(ttl_secs));
    config.request_timeout = Duration::from_secs(1);
    config
}

/// A joined member and the view its events build.
struct Joined {
    discovery: EtcdDiscovery,
    view: MembershipView,
    events: mpsc::Receiver<MembershipEvent>,
}

impl Joined {
    async fn join(config: EtcdConfig, id: &str, port: u16) -> Joined {
        let me = Member::new(id, format!("127.0.0.1:{port}"), 0);
        let discovery = EtcdDiscovery::new(config).unwrap();
        let (tx, events) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        discovery.join(me.clone(), tx, Fence::none()).await.unwrap();
        Joined {
            discovery,
            view: MembershipView::new(me),
            events,
        }
    }

    fn ids(&self) -> Vec<String> {
        self.view.members().map(|m| m.id.to_string()).collect()
    }

    /// Apply events until `done` holds for the view; panics after `limit`.
    async fn wait_for(&mut self, limit: Duration, done: impl Fn(&MembershipView) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.view) {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("view still {:?} after {limit:?}", self.ids()))
                .expect("event stream ended");
            self.view.apply(event);
        }
    }
}

async fn raw_client(etcd: &EtcdServer) -> Client {
    Client::connect([etcd.endpoint()], None).await.unwrap()
}

#[tokio::test]
async fn registers_a_readable_record_under_a_lease_and_sends_a_snapshot_first() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut a = Joined::join(config(&etcd, "layout", 10), "a", 7001).await;
    let first = a.events.recv().await.unwrap();
    let MembershipEvent::Snapshot { revision, members } = first else {
        panic!("first event must be a snapshot, got {first:?}");
    };
    assert!(revision > 0);
    let registration = a.discovery.registration().unwrap();
    assert_eq!(members, vec![registration.member.clone()]);
    assert_eq!(registration.member.addr, "127.0.0.1:7001");
    assert!(registration.member.incarnation >= 1);

    let mut client = raw_client(&etcd).await;
    let listed = client
        .get("/lcache/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let [kv] = listed.kvs() else {
        panic!("expected one key, got {:?}", listed.kvs());
    };
    assert_eq!(kv.key_str().unwrap(), "/lcache/layout/members/a");
    assert_eq!(
        kv.value_str().unwrap(),
        format!(
            "addr=127.0.0.1:7001 incarnation={}",
            registration.member.incarnation
        )
    );
    assert_eq!(kv.lease(), registration.lease_id);

    a.discovery.leave().await.unwrap();
    let after = client
        .get("/lcache/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(after.kvs().is_empty(), "leave revokes the lease");
    // Leaving twice is harmless, and the event stream ends.
    a.discovery.leave().await.unwrap();
    assert!(a.events.recv().await.is_none());
}

#[tokio::test]
async fn peers_see_joins_and_a_graceful_leave_at_once() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut a = Joined::join(config(&etcd, "graceful", 10), "a", 7001).await;
    let b = Joined::join(config(&etcd, "graceful", 10), "b", 7002).await;
    a.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;
    assert_eq!(a.ids(), ["a", "b"]);

    let left = Instant::now();
    b.discovery.leave().await.unwrap();
    a.wait_for(Duration::from_secs(2), |v| v.len() == 1).await;
    let took = left.elapsed();
    eprintln!("graceful leave seen after {took:?} (lease TTL 10s)");
    assert!(
        took < Duration::from_secs(2),
        "a revoked lease is seen at once, not after the TTL"
    );
}

#[tokio::test]
async fn a_member_that_stops_renewing_leaves_within_the_ttl() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut a = Joined::join(config(&etcd, "crash", 2), "a", 7001).await;
    let b = Joined::join(config(&etcd, "crash", 2), "b", 7002).await;
    a.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;

    // Dropping without leave is a crash: no revoke, renewals stop.
    let dropped = Instant::now();
    drop(b);
    a.wait_for(Duration::from_secs(5), |v| v.len() == 1).await;
    let took = dropped.elapsed();
    eprintln!("crashed member dropped after {took:?} (lease TTL 2s)");
    assert!(took <= Duration::from_millis(3_500), "took {took:?}");
}

#[tokio::test]
async fn a_lost_lease_is_replaced_by_a_new_registration() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let a = Joined::join(config(&etcd, "lost", 5), "a", 7001).await;
    let mut b = Joined::join(config(&etcd, "lost", 5), "b", 7002).await;
    b.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;
    let before = a.discovery.registration().unwrap();

    // Someone revokes a's lease (as etcd does when a node was cut off past its TTL).
    let mut client = raw_client(&etcd).await;
    client.lease_revoke(before.lease_id).await.unwrap();

    let id = MemberId::new("a");
    b.wait_for(Duration::from_secs(5), |v| {
        v.get(&id)
            .is_some_and(|m| m.incarnation > before.member.incarnation)
    })
    .await;
    let after = a.discovery.registration().unwrap();
    assert_ne!(after.lease_id, before.lease_id);
    assert!(after.member.incarnation > before.member.incarnation);
    let key = client.get("/lcache/lost/members/a", None).await.unwrap();
    assert_eq!(key.kvs()[0].lease(), after.lease_id);
}

#[tokio::test]
async fn a_deleted_key_is_written_again() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let a = Joined::join(config(&etcd, "deleted", 10), "a", 7001).await;
    let mut b = Joined::join(config(&etcd, "deleted", 10), "b", 7002).await;
    b.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;
    let mut client = raw_client(&etcd).await;
    client
        .delete("/lcache/deleted/members/a", None)
        .await
        .unwrap();
    b.wait_for(Duration::from_secs(5), |v| v.len() == 1).await;
    b.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;
    drop(a);
}

#[tokio::test]
async fn clusters_do_not_see_each_other() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut a = Joined::join(config(&etcd, "one", 10), "a", 7001).await;
    let _b = Joined::join(config(&etcd, "one-more", 10), "b", 7002).await;
    let _c = Joined::join(config(&etcd, "one", 10), "c", 7003).await;
    a.wait_for(Duration::from_secs(5), |v| v.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(event) = a.events.try_recv() {
        a.view.apply(event);
    }
    assert_eq!(a.ids(), ["a", "c"]);
}

/// A CA, etcd's certificate and a member's, written as PEM files into `dir`.
fn tls_files(dir: &std::path::Path) -> (etcd_server::EtcdServerTls, Vec<u8>, Vec<u8>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let issue = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &*ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (etcd_cert, etcd_key) = issue("etcd");
    let server = etcd_server::EtcdServerTls {
        cert: write("etcd.pem", &etcd_cert),
        key: write("etcd.key", &etcd_key),
        ca: write("ca.pem", &ca.pem()),
    };
    let (member_cert, member_key) = issue("member");
    (server, member_cert.into_bytes(), member_key.into_bytes())
}

#[tokio::test]
async fn joins_over_tls_and_reports_its_session() {
    let dir = std::env::temp_dir().join(format!("lcache-etcd-tls-{}", std::process::id()));
    let (server_tls, cert, key) = tls_files(&dir);
    let ca = std::fs::read(&server_tls.ca).unwrap();
    let Some(etcd) = EtcdServer::start_tls(server_tls).await else {
        return;
    };
    let mut secured = config(&etcd, "tls", 10);
    secured.tls = Some(lcache_discovery::EtcdTls {
        ca_pem: ca.clone(),
        identity: Some((cert, key)),
    });
    let mut a = Joined::join(secured.clone(), "a", 7001).await;
    a.wait_for(Duration::from_secs(5), |v| v.len() == 1).await;
    let session = |j: &Joined| j.discovery.session();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !session(&a).connected {
        assert!(
            Instant::now() < deadline,
            "the watch never reported established"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(session(&a).registered);

    // Without a client certificate etcd refuses the connection; plain http is refused by the
    // settings check.
    let mut anonymous = secured.clone();
    anonymous.tls = Some(lcache_discovery::EtcdTls {
        ca_pem: ca,
        identity: None,
    });
    anonymous.join_timeout = Duration::from_millis(1500);
    let refused = EtcdDiscovery::new(anonymous).unwrap();
    let (tx, _rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let joined = refused
        .join(Member::new("b", "127.0.0.1:7002", 0), tx, Fence::none())
        .await;
    assert!(joined.is_err(), "joined etcd without a client certificate");
    let mut plain = secured;
    plain.tls = None;
    assert!(
        EtcdDiscovery::new(plain).is_err(),
        "https:// without TLS settings"
    );

    a.discovery.leave().await.unwrap();
    assert!(!session(&a).connected);
    assert!(!session(&a).registered);
    let _ = std::fs::remove_dir_all(&dir);
}
