//! Discovery through etcd (v3 API): a lease, its keepalive, and a watch of the cluster's keys.
//!
//! - **Layout.** Each member writes `/lcache/<cluster>/members/<node-id>` =
//!   `addr=<host:port> incarnation=<n>` under its own lease, so
//!   `etcdctl get --prefix /lcache/` shows every cluster as text.
//! - **Registration.** A lease of [`EtcdConfig::lease_ttl`] (default 10 s), renewed every
//!   [`EtcdConfig::keepalive_interval`] (default a third of the TTL). If etcd says the lease is
//!   gone, or no renewal was confirmed for a whole TTL (the node was cut off), the node registers
//!   again under a new lease.
//! - **Incarnation.** The registered incarnation is the largest of the configured one, the etcd
//!   revision when the lease was granted, and the previous registration's plus one. A restarted
//!   node is granted its lease after its previous key was written, so it always registers a larger
//!   incarnation than its previous life (as long as etcd keeps its data).
//! - **Events.** A listing gives a `Snapshot` at the response header's revision; a watch from that
//!   revision + 1 gives `Up`/`Down` at each key's `mod_revision` (a deletion or a lease expiry is a
//!   `Down`). On compaction, cancellation or a broken stream the watcher lists again and resumes.
//!   Revisions are etcd's, shifted forward only if etcd's revision ever goes backwards.
//! - **Outages.** While etcd is unreachable nothing is sent, so the node keeps its last view; both
//!   loops retry with capped exponential backoff and jitter from a seeded [`ChaCha8Rng`].
//! - **Leaving.** [`Discovery::leave`] stops both loops and revokes the lease, so etcd deletes the
//!   key at once and peers drop the node now instead of after the TTL. Dropping an
//!   [`EtcdDiscovery`] without leaving (or a crash) stops the renewals: peers drop the node when the
//!   lease expires, within the TTL.
//!
//! [`ChaCha8Rng`]: rand_chacha::ChaCha8Rng

mod lease;
mod record;
mod watch;

/// The etcd client crate this discovery is built on (for tools and tests that talk to the same
/// etcd, e.g. to inspect or revoke a node's lease).
pub use etcd_client;
pub use record::KEY_ROOT;

use crate::backoff::{derive_seed, Backoff};
use crate::{Discovery, DiscoveryError, Fence, SessionState};
use etcd_client::{Client, ConnectOptions};
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use lease::{lock, Leases, Registrar, SharedLeases};
use record::Layout;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use watch::Watcher;

/// Settings of [`EtcdDiscovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Name of the cluster; members register under `/lcache/<cluster>/members/`.
    pub cluster: String,
    /// TTL of the registration lease, whole seconds (rounded up), at least 1 s. A node that stops
    /// renewing (crash, cut off) leaves its peers' views this long after its last renewal.
    pub lease_ttl: Duration,
    /// Period of lease renewals; `None` renews at a third of the TTL. Must be below the TTL.
    pub keepalive_interval: Option<Duration>,
    /// Longest wait for one etcd request (also the connect timeout).
    pub request_timeout: Duration,
    /// How long [`Discovery::join`] keeps retrying the first registration and listing.
    pub join_timeout: Duration,
    /// First retry delay after a failed etcd request.
    pub backoff_initial: Duration,
    /// Cap of the retry delay. Lease renewal retries are also capped at the keepalive interval,
    /// so an outage shorter than the TTL never costs the lease.
    pub backoff_max: Duration,
    /// Root seed of the retry jitter; `None` derives it from the node id (a stable hash), so
    /// nodes jitter differently and one node always draws the same delays.
    pub seed: Option<u64>,
    /// TLS to etcd (then every endpoint must be an `https://` URL); `None` talks plain text.
    pub tls: Option<EtcdTls>,
}

/// How to talk TLS to etcd: the CA etcd's certificate must chain to and, when etcd asks for
/// client certificates (`--client-cert-auth`), this node's certificate and key. All PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate(s) etcd's server certificate is verified against.
    pub ca_pem: Vec<u8>,
    /// This node's certificate chain and private key, presented to etcd.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Shows no key material.
impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl EtcdTls {
    /// The options etcd-client (tonic) takes.
    fn options(&self) -> etcd_client::TlsOptions {
        let options = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => options.identity(etcd_client::Identity::from_pem(cert, key)),
            None => options,
        }
    }
}

impl EtcdConfig {
    /// Default lease TTL.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

    /// Settings with defaults: 10 s lease renewed every 3.3 s, 2 s requests, 10 s to join,
    /// retries from 100 ms up to 5 s.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>, cluster: &str) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            cluster: cluster.to_string(),
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            keepalive_interval: None,
            request_timeout: Duration::from_secs(2),
            join_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            seed: None,
            tls: None,
        }
    }

    /// The same settings with another lease TTL.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The lease TTL etcd is asked for, rounded up to whole seconds.
    pub fn lease_ttl_secs(&self) -> u64 {
        let secs = self.lease_ttl.as_secs();
        if self.lease_ttl.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        }
    }

    /// The key prefix of this cluster's members, `/lcache/<cluster>/members/`.
    pub fn members_prefix(&self) -> Result<String, DiscoveryError> {
        Ok(Layout::new(&self.cluster)?.prefix().to_string())
    }

    /// The key member `id` registers under.
    pub fn member_key(&self, id: &MemberId) -> Result<String, DiscoveryError> {
        Layout::new(&self.cluster)?.key(id)
    }

    fn validate(&self) -> Result<(), DiscoveryError> {
        let invalid = |msg: String| Err(DiscoveryError::InvalidConfig(msg));
        Layout::new(&self.cluster)?;
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return invalid(format!(
                "etcd endpoints {:?}: give at least one URL like http://127.0.0.1:2379",
                self.endpoints
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl_secs() > i64::MAX as u64 {
            return invalid(format!(
                "lease TTL {:?} must be at least 1s",
                self.lease_ttl
            ));
        }
        if let Some(interval) = self.keepalive_interval {
            if interval.is_zero() || interval >= self.lease_ttl {
                return invalid(format!(
                    "keepalive interval {interval:?} must be above zero and below the lease TTL {:?}",
                    self.lease_ttl
                ));
            }
        }
        let scheme = |prefix: &str| self.endpoints.iter().any(|e| e.starts_with(prefix));
        if (self.tls.is_some() && scheme("http://")) || (self.tls.is_none() && scheme("https://")) {
            return invalid(format!(
                "etcd endpoints {:?}: give https:// URLs with TLS settings, http:// ones without",
                self.endpoints
            ));
        }
        if self.request_timeout.is_zero() || self.join_timeout.is_zero() {
            return invalid("request and join timeouts must be above zero".into());
        }
        Ok(())
    }
}

/// One registration of this node: the member as written to etcd and the lease it is under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The member record as registered (incarnation derived as described in the module docs).
    pub member: Member,
    /// The etcd lease holding the key.
    pub lease_id: i64,
}

/// Membership through etcd; see the [module docs](self).
#[derive(Debug)]
pub struct EtcdDiscovery {
    config: EtcdConfig,
    session: Mutex<Option<Session>>,
    flags: Arc<SessionFlags>,
}

/// What [`Discovery::session`] reports, kept up to date by the two loops.
#[derive(Debug, Default)]
pub(super) struct SessionFlags {
    /// The membership watch is established (set when etcd confirms it, cleared when it breaks).
    pub(super) watching: AtomicBool,
    /// The registration lease is alive (set when granted, cleared when lost or expired).
    pub(super) lease_alive: AtomicBool,
}

/// What a joined node runs: the client, the two loops and the leases to revoke on leave.
struct Session {
    client: Client,
    leases: SharedLeases,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("leases", &self.leases)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    /// Stop renewing and watching, without revoking: like a crash, peers notice at lease expiry.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl EtcdDiscovery {
    /// Discovery through the etcd cluster of `config` (checked now; nothing is dialled until
    /// [`Discovery::join`]).
    pub fn new(config: EtcdConfig) -> Result<Self, DiscoveryError> {
        config.validate()?;
        Ok(EtcdDiscovery {
            config,
            session: Mutex::new(None),
            flags: Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The latest registration of this node, once joined.
    pub fn registration(&self) -> Option<Registration> {
        let session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        session
            .as_ref()
            .and_then(|s| lock(&s.leases).current.clone())
    }

    async fn connect(&self) -> Result<Client, DiscoveryError> {
        let timeout = self.config.request_timeout;
        // HTTP/2 pings detect a silently dead connection; etcd refuses pings more frequent than
        // every 5 s (`--grpc-keepalive-min-time`), so stay above that.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout.max(Duration::from_secs(1)))
            .with_require_leader(true);
        if let Some(tls) = &self.config.tls {
            options = options.with_tls(tls.options());
        }
        let endpoints = self.config.endpoints.clone();
        call(
            || format!("connecting to etcd at {endpoints:?}"),
            timeout,
            Client::connect(&self.config.endpoints, Some(options)),
        )
        .await
    }

    /// Connect, register, send the first snapshot, then start the two background loops.
    async fn start(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> Result<Session, DiscoveryError> {
        let seed = self
            .config
            .seed
            .unwrap_or_else(|| lcache_core::hash::ring_hash(me.id.as_str().as_bytes()));
        let client = self.connect().await?;
        let (mut registrar, mut watcher) = self.loops(&client, me, events, fence, seed)?;
        let mut session = Session {
            client,
            leases: registrar.leases.clone(),
            tasks: Vec::new(),
        };
        let deadline = Instant::now() + self.config.join_timeout;
        let mut backoff = self.backoff(seed, "etcd-join", self.config.backoff_max);
        let lease = loop {
            match registrar.register().await {
                Ok(lease) => break lease,
                Err(err) => give_up_or_wait(deadline, &mut backoff, "registering", err).await?,
            }
        };
        let revision = loop {
            let err = match watcher.list().await {
                Ok(revision) => break revision,
                Err(err) => err,
            };
            if let Err(err) = give_up_or_wait(deadline, &mut backoff, "listing", err).await {
                if let Err(revoke_err) = self.revoke(&session).await {
                    tracing::warn!(error = %revoke_err, "revoking the lease of a failed join");
                }
                return Err(err);
            }
        };
        session.tasks.push(tokio::spawn(registrar.run(lease)));
        session.tasks.push(tokio::spawn(watcher.run(revision)));
        Ok(session)
    }

    /// The registration and observation loops of `me`, not started yet.
    fn loops(
        &self,
        client: &Client,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
        seed: u64,
    ) -> Result<(Registrar, Watcher), DiscoveryError> {
        let layout = Layout::new(&self.config.cluster)?;
        let ttl = Duration::from_secs(self.config.lease_ttl_secs());
        let renew_every = self.config.keepalive_interval.unwrap_or(ttl / 3);
        let self_missing = Arc::new(Notify::new());
        let registrar = Registrar {
            client: client.clone(),
            key: layout.key(&me.id)?,
            me: me.clone(),
            ttl,
            keepalive_interval: self.config.keepalive_interval,
            request_timeout: self.config.request_timeout,
            // Renewal retries never wait longer than a renewal period (see `backoff_max`).
            backoff: self.backoff(seed, "etcd-lease", self.config.backoff_max.min(renew_every)),
            leases: Arc::new(Mutex::new(Leases::default())),
            self_missing: self_missing.clone(),
            fence,
            flags: self.flags.clone(),
        };
        let watcher = Watcher {
            client: client.clone(),
            layout,
            me: me.id,
            events,
            request_timeout: self.config.request_timeout,
            backoff: self.backoff(seed, "etcd-watch", self.config.backoff_max),
            self_missing,
            offset: 0,
            last_sent: 0,
            flags: self.flags.clone(),
        };
        Ok((registrar, watcher))
    }

    fn backoff(&self, seed: u64, component: &str, max: Duration) -> Backoff {
        Backoff::new(
            self.config.backoff_initial,
            max,
            derive_seed(seed, component),
        )
    }

    /// Revoke every lease that may hold this node's key; a lease etcd no longer knows is fine.
    async fn revoke(&self, session: &Session) -> Result<(), DiscoveryError> {
        let to_revoke = lock(&session.leases).to_revoke();
        let mut result = Ok(());
        for id in to_revoke {
            let mut client = session.client.clone();
            let revoked = call(
                || format!("etcd lease revoke {id:x}"),
                self.config.request_timeout,
                client.lease_revoke(id),
            )
            .await;
            match revoked {
                Ok(_) => tracing::info!(lease = %format_args!("{id:x}"), "etcd lease revoked"),
                Err(err) if is_not_found(&err) => {}
                Err(err) => result = Err(err),
            }
        }
        result
    }
}

impl Discovery for EtcdDiscovery {
    /// Register `me`, send the first snapshot, then keep both up to date in the background.
    ///
    /// Retries with backoff for up to [`EtcdConfig::join_timeout`]; fails if etcd could not be
    /// reached by then (or if this discovery already joined).
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> Result<(), DiscoveryError> {
        if self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Err(DiscoveryError::InvalidConfig(
                "this etcd discovery has already joined".into(),
            ));
        }
        let started = Instant::now();
        let session = self.start(me.clone(), events, fence).await?;
        tracing::info!(node = %me.id, cluster = %self.config.cluster, took = ?started.elapsed(),
            "joined through etcd");
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(session);
        Ok(())
    }

    /// Stop renewing and watching, then revoke the lease so etcd deletes the key now.
    async fn leave(&self) -> Result<(), DiscoveryError> {
        let session = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut session) = session else {
            return Ok(());
        };
        for task in std::mem::take(&mut session.tasks) {
            task.abort();
            // A cancelled task reports `Err(cancelled)`; a panic in it is not ours to propagate.
            let _ = task.await;
        }
        self.flags.watching.store(false, Ordering::Relaxed);
        let revoked = self.revoke(&session).await;
        self.flags.lease_alive.store(false, Ordering::Relaxed);
        revoked
    }

    fn session(&self) -> SessionState {
        SessionState {
            connected: self.flags.watching.load(Ordering::Relaxed),
            registered: self.flags.lease_alive.load(Ordering::Relaxed),
        }
    }
}

/// After a failed join step: wait a backoff delay, or give up if that would pass `deadline`.
async fn give_up_or_wait(
    deadline: Instant,
    backoff: &mut Backoff,
    what: &str,
    err: DiscoveryError,
) -> Result<(), DiscoveryError> {
    if let DiscoveryError::Closed = err {
        return Err(err);
    }
    let delay = backoff.next_delay();
    if Instant::now() + delay >= deadline {
        return Err(DiscoveryError::Unavailable(format!(
            "gave up {what} through etcd before the join timeout: {err}"
        )));
    }
    tracing::warn!(error = %err, retry_in = ?delay, "{what} through etcd failed");
    tokio::time::sleep(delay).await;
    Ok(())
}

/// Await one etcd request, bounded by `after`, with `context` on failure.
async fn call<T>(
    context: impl FnOnce() -> String,
    after: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, DiscoveryError> {
    match tokio::time::timeout(after, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(DiscoveryError::Backend {
            context: context(),
            source: Box::new(err),
        }),
        Err(_) => Err(DiscoveryError::Timeout {
            context: context(),
            after,
        }),
    }
}

/// Whether etcd said the lease (or key) does not exist.
fn is_not_found(err: &DiscoveryError) -> bool {
    let DiscoveryError::Backend { source, .. } = err else {
        return false;
    };
    match source.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(status)) => status.code() == tonic::Code::NotFound,
        // etcd-client opens a keepalive stream only for a live lease, else reports this.
        Some(etcd_client::Error::LeaseKeepAliveError(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
#[path = "../../tests/support/etcd_server.rs"]
mod etcd_server;

#[cfg(test)]
mod tests {
    use super::watch::WatchEnd;
    use super::*;
    use etcd_client::PutOptions;

    #[test]
    fn defaults_are_documented_ones() {
        let c = EtcdConfig::new(["http://127.0.0.1:2379"], "prod");
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.lease_ttl_secs(), 10);
        assert_eq!(c.members_prefix().unwrap(), "/lcache/prod/members/");
        assert_eq!(
            c.member_key(&MemberId::new("n1")).unwrap(),
            "/lcache/prod/members/n1"
        );
        assert!(EtcdDiscovery::new(c).is_ok());
    }

    #[test]
    fn rejects_bad_settings() {
        let ok = || EtcdConfig::new(["http://127.0.0.1:2379"], "prod");
        let bad = [
            EtcdConfig::new(Vec::<String>::new(), "prod"),
            EtcdConfig::new(["http://h:1"], "a/b"),
            ok().with_lease_ttl(Duration::from_millis(500)),
            EtcdConfig {
                keepalive_interval: Some(Duration::from_secs(10)),
                ..ok()
            },
            EtcdConfig {
                request_timeout: Duration::ZERO,
                ..ok()
            },
        ];
        for config in bad {
            let err = EtcdDiscovery::new(config.clone()).unwrap_err();
            assert!(
                matches!(err, DiscoveryError::InvalidConfig(_)),
                "{config:?}: {err}"
            );
        }
        assert_eq!(
            ok().with_lease_ttl(Duration::from_millis(1500))
                .lease_ttl_secs(),
            2
        );
    }

    #[test]
    fn leases_to_revoke_are_current_then_holder() {
        let mut leases = Leases::default();
        assert!(leases.to_revoke().is_empty());
        leases.holder = Some(1);
        assert_eq!(leases.to_revoke(), [1]);
        leases.current = Some(Registration {
            member: Member::new("a", "h:1", 1),
            lease_id: 2,
        });
        assert_eq!(leases.to_revoke(), [2, 1]);
        leases.holder = Some(2);
        assert_eq!(leases.to_revoke(), [2]);
    }

    #[tokio::test]
    async fn join_against_nothing_fails_after_the_join_timeout() {
        // Port 9 (discard) on loopback: nothing listens there.
        let mut config = EtcdConfig::new(["http://127.0.0.1:9"], "c");
        config.join_timeout = Duration::from_millis(600);
        config.request_timeout = Duration::from_millis(200);
        let discovery = EtcdDiscovery::new(config).unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let err = discovery
            .join(Member::new("a", "127.0.0.1:1", 0), tx, Fence::none())
            .await
            .unwrap_err();
        assert!(matches!(err, DiscoveryError::Unavailable(_)), "{err}");
        assert!(discovery.registration().is_none());
        discovery.leave().await.unwrap();
    }

    /// Compaction is only visible to a watcher that is behind it, which no public call can
    /// arrange on demand; so this drives the watcher directly from a compacted revision.
    #[tokio::test]
    async fn a_compacted_watch_lists_again_and_resumes() {
        let Some(etcd) = etcd_server::EtcdServer::start().await else {
            return;
        };
        let discovery = EtcdDiscovery::new(EtcdConfig::new([etcd.endpoint()], "compact")).unwrap();
        let client = discovery.connect().await.unwrap();
        let mut raw = client.clone();
        let value = |port: u16| format!("addr=127.0.0.1:{port} incarnation=1");
        let key = |id: &str| format!("/lcache/compact/members/{id}");
        let stale = raw.put(key("b"), value(2), None).await.unwrap();
        let stale = stale.header().unwrap().revision();
        raw.put(key("c"), value(3), None).await.unwrap();
        raw.delete(key("c"), None).await.unwrap();
        let last = raw.put(key("d"), value(4), None).await.unwrap();
        raw.compact(last.header().unwrap().revision(), None)
            .await
            .unwrap();

        let (tx, mut rx) = mpsc::channel(16);
        let mut watcher = Watcher {
            client,
            layout: Layout::new("compact").unwrap(),
            me: MemberId::new("self"),
            events: tx,
            request_timeout: Duration::from_secs(2),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 1),
            self_missing: Arc::new(Notify::new()),
            offset: 0,
            last_sent: 0,
            flags: Arc::default(),
        };
        let end = watcher.watch_from(stale + 1).await;
        assert!(matches!(end, WatchEnd::Compacted(_)), "{end:?}");

        let task = tokio::spawn(watcher.run(stale));
        let event = rx.recv().await.unwrap();
        let MembershipEvent::Snapshot { members, .. } = event else {
            panic!("expected a fresh listing, got {event:?}");
        };
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "d"]);
        raw.put(key("e"), value(5), Some(PutOptions::new()))
            .await
            .unwrap();
        let event = rx.recv().await.unwrap();
        assert!(
            matches!(&event, MembershipEvent::Up { member, .. } if member.id.as_str() == "e"),
            "{event:?}"
        );
        task.abort();
    }
}
