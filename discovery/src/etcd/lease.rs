//! Registration: this node's key under a lease, the lease kept alive, and a new lease when the
//! old one is lost.

use super::record::encode_value;
use super::{call, is_not_found, Registration, SessionFlags};
use crate::backoff::Backoff;
use crate::{DiscoveryError, Fence};
use etcd_client::{Client, PutOptions};
use lcache_core::member::Member;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Leases of this node that may hold its key; what `leave` revokes.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// The latest registration (its lease granted, its key maybe not yet written).
    pub(super) current: Option<Registration>,
    /// The lease the key was last written under.
    pub(super) holder: Option<i64>,
}

impl Leases {
    /// Every lease worth revoking, current first, without duplicates.
    pub(super) fn to_revoke(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.current.iter().map(|r| r.lease_id).collect();
        if let Some(holder) = self.holder {
            if !ids.contains(&holder) {
                ids.push(holder);
            }
        }
        ids
    }
}

pub(super) type SharedLeases = Arc<Mutex<Leases>>;

pub(super) fn lock(leases: &SharedLeases) -> std::sync::MutexGuard<'_, Leases> {
    leases.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lease this node's key is written under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    id: i64,
    /// TTL etcd granted (it may raise the one asked for).
    ttl: Duration,
    /// When etcd last confirmed the lease (the TTL runs from no later than this).
    renewed_at: Instant,
}

impl Lease {
    /// Whether etcd has certainly let the lease expire by `now`, barring a renewal we never heard of.
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.renewed_at) >= self.ttl
    }
}

/// Why keeping a lease alive stopped.
#[derive(Debug)]
enum KeepAliveEnd {
    /// etcd says (or the TTL proves) the lease is gone: register again with a new one.
    Lost(String),
    /// The connection failed; the lease may still be alive.
    Broken(DiscoveryError),
}

/// Registers the node and keeps it registered.
pub(super) struct Registrar {
    pub(super) client: Client,
    pub(super) key: String,
    /// The node as configured; its incarnation is a floor for the registered one.
    pub(super) me: Member,
    pub(super) ttl: Duration,
    pub(super) keepalive_interval: Option<Duration>,
    pub(super) request_timeout: Duration,
    pub(super) backoff: Backoff,
    pub(super) leases: SharedLeases,
    /// Signalled by the watcher when the cluster listing lacks this node.
    pub(super) self_missing: Arc<Notify>,
    /// Raised before registering again after the registration was lost.
    pub(super) fence: Fence,
    /// Where the registrar reports whether its lease is alive.
    pub(super) flags: Arc<SessionFlags>,
}

impl Registrar {
    /// Grant a lease and write the key under it.
    ///
    /// The registered incarnation is the largest of the configured one, the etcd revision at the
    /// grant, and the previous registration's plus one: a restarted or re-registered node always
    /// registers after its previous key was written, so at a larger revision.
    pub(super) async fn register(&mut self) -> Result<Lease, DiscoveryError> {
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let grant = call(
            || format!("etcd lease grant (ttl {ttl_secs}s)"),
            self.request_timeout,
            self.client.lease_grant(ttl_secs, None),
        )
        .await?;
        if !grant.error().is_empty() || grant.id() == 0 || grant.ttl() <= 0 {
            return Err(DiscoveryError::Unavailable(format!(
                "etcd refused a lease: {:?}",
                grant.error()
            )));
        }
        let revision = grant
            .header()
            .and_then(|h| u64::try_from(h.revision()).ok())
            .unwrap_or(0);
        let member = {
            let mut leases = lock(&self.leases);
            let previous = leases
                .current
                .as_ref()
                .map_or(0, |r| r.member.incarnation.saturating_add(1));
            let member = Member {
                incarnation: self.me.incarnation.max(revision).max(previous),
                ..self.me.clone()
            };
            leases.current = Some(Registration {
                member: member.clone(),
                lease_id: grant.id(),
            });
            member
        };
        let lease = Lease {
            id: grant.id(),
            ttl: Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1)),
            renewed_at: Instant::now(),
        };
        self.put(&member, lease.id).await?;
        self.flags.lease_alive.store(true, Ordering::Relaxed);
        tracing::info!(node = %member.id, key = %self.key, lease = %format_args!("{:x}", lease.id),
            incarnation = member.incarnation, ttl = ?lease.ttl, "registered in etcd");
        Ok(lease)
    }

    /// Write the key under `lease`.
    async fn put(&self, member: &Member, lease: i64) -> Result<(), DiscoveryError> {
        let mut client = self.client.clone();
        call(
            || format!("etcd put {}", self.key),
            self.request_timeout,
            client.put(
                self.key.as_str(),
                encode_value(member),
                Some(PutOptions::new().with_lease(lease)),
            ),
        )
        .await?;
        lock(&self.leases).holder = Some(lease);
        Ok(())
    }

    /// Keep the node registered forever (the task running this is aborted on leave or drop).
    pub(super) async fn run(mut self, mut lease: Lease) {
        loop {
            match self.keep_alive(&mut lease).await {
                KeepAliveEnd::Broken(err) if !lease.expired(Instant::now()) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(node = %self.me.id, error = %err, retry_in = ?delay,
                        "etcd lease keepalive failed; retrying with the same lease");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                KeepAliveEnd::Broken(err) => {
                    self.flags.lease_alive.store(false, Ordering::Relaxed);
                    tracing::warn!(node = %self.me.id, error = %err,
                        "etcd unreachable for longer than the lease TTL; registering again");
                }
                KeepAliveEnd::Lost(reason) => {
                    self.flags.lease_alive.store(false, Ordering::Relaxed);
                    tracing::warn!(node = %self.me.id, reason, "etcd lease lost; registering again");
                    // A short pause (the backoff restarts from its first delay once a lease is
                    // renewed), so a lease that keeps vanishing cannot make this loop spin.
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
            lease = self.register_again().await;
        }
    }

    /// Register with a new lease, retrying with backoff until it works. Peers dropped this node
    /// when its lease went: before every attempt it drops what it holds, including whatever it
    /// kept while it retried (it kept serving in its own, stale, view), so nothing from the gap
    /// is served once peers route to it again.
    async fn register_again(&mut self) -> Lease {
        loop {
            self.fence.raise();
            match self.register().await {
                Ok(lease) => {
                    self.backoff.reset();
                    return lease;
                }
                Err(err) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(node = %self.me.id, error = %err, retry_in = ?delay,
                        "registering in etcd failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn interval(&self, lease: &Lease) -> Duration {
        self.keepalive_interval
            .unwrap_or(lease.ttl / 3)
            .max(Duration::from_millis(10))
    }

    /// Renew `lease` every keepalive interval until that fails.
    async fn keep_alive(&mut self, lease: &mut Lease) -> KeepAliveEnd {
        let opened = call(
            || format!("etcd lease keepalive {:x}", lease.id),
            self.request_timeout,
            self.client.lease_keep_alive(lease.id),
        )
        .await;
        let (mut keeper, mut responses) = match opened {
            Ok(pair) => pair,
            Err(err) if is_not_found(&err) => return KeepAliveEnd::Lost(err.to_string()),
            Err(err) => return KeepAliveEnd::Broken(err),
        };
        // Opening the stream renewed the lease once.
        lease.renewed_at = Instant::now();
        self.backoff.reset();
        let interval = self.interval(lease);
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.self_missing.notified() => {
                    let member = lock(&self.leases).current.as_ref().map(|r| r.member.clone());
                    let Some(member) = member else { continue };
                    tracing::warn!(node = %self.me.id, key = %self.key,
                        "this node's key is missing from etcd; fencing, then writing it again");
                    // Peers saw the key gone and took over this node's keys: drop what it
                    // holds before the key reappears.
                    self.fence.raise();
                    match self.put(&member, lease.id).await {
                        Ok(()) => {}
                        Err(err) if is_not_found(&err) => return KeepAliveEnd::Lost(err.to_string()),
                        Err(err) => return KeepAliveEnd::Broken(err),
                    }
                }
                _ = ticker.tick() => {
                    if lease.expired(Instant::now()) {
                        return KeepAliveEnd::Lost(format!(
                            "no keepalive answer within the lease TTL ({:?})", lease.ttl
                        ));
                    }
                    if let Err(err) = keeper.keep_alive().await {
                        return KeepAliveEnd::Broken(DiscoveryError::Backend {
                            context: format!("etcd lease keepalive {:x}", lease.id),
                            source: Box::new(err),
                        });
                    }
                }
                response = responses.message() => match response {
                    Ok(Some(response)) if response.ttl() > 0 => {
                        lease.renewed_at = Instant::now();
                    }
                    Ok(Some(_)) => {
                        return KeepAliveEnd::Lost("etcd reports the lease expired".into());
                    }
                    Ok(None) => {
                        return KeepAliveEnd::Broken(DiscoveryError::Unavailable(
                            "etcd closed the lease keepalive stream".into(),
                        ));
                    }
                    Err(err) => {
                        return KeepAliveEnd::Broken(DiscoveryError::Backend {
                            context: format!("etcd lease keepalive {:x}", lease.id),
                            source: Box::new(err),
                        });
                    }
                },
            }
        }
    }
}
