//! Observation: list the cluster's keys (a snapshot), then watch them from the next revision; on
//! compaction, cancellation or a broken stream, list again and resume.

use super::record::{decode_value, Layout};
use super::{call, SessionFlags};
use crate::backoff::Backoff;
use crate::DiscoveryError;
use etcd_client::{Client, GetOptions, KeyValue, WatchOptions};
use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Why a watch ended.
#[derive(Debug)]
pub(super) enum WatchEnd {
    /// The start revision was compacted away: list again at once.
    Compacted(i64),
    /// etcd cancelled the watch, or the stream broke or ended: list again after a backoff.
    Interrupted(DiscoveryError),
    /// The node's event receiver is gone.
    Closed,
}

/// Feeds the node's membership events from etcd.
pub(super) struct Watcher {
    pub(super) client: Client,
    pub(super) layout: Layout,
    pub(super) me: MemberId,
    pub(super) events: mpsc::Sender<MembershipEvent>,
    pub(super) request_timeout: Duration,
    pub(super) backoff: Backoff,
    /// Told when the listing lacks this node, so the registrar writes its key again.
    pub(super) self_missing: Arc<Notify>,
    /// Added to etcd revisions so the revisions the node sees never go backwards, even if etcd
    /// was rebuilt from scratch and its revisions restarted (see [`Watcher::list`]).
    pub(super) offset: u64,
    /// Highest revision handed to the node so far (offset included).
    pub(super) last_sent: u64,
    /// Where the watch reports whether it is established.
    pub(super) flags: Arc<SessionFlags>,
}

impl Watcher {
    /// List every member and send the snapshot; returns the etcd revision it reflects.
    pub(super) async fn list(&mut self) -> Result<i64, DiscoveryError> {
        let prefix = self.layout.prefix().to_string();
        let response = call(
            || format!("etcd get --prefix {prefix}"),
            self.request_timeout,
            self.client
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = response
            .header()
            .map(|h| h.revision())
            .filter(|r| *r > 0)
            .ok_or_else(|| {
                DiscoveryError::Unavailable("etcd listing carries no revision".into())
            })?;
        let mut members = Vec::new();
        for kv in response.kvs() {
            if let Some(member) = self.member_of(kv) {
                members.push(member);
            }
        }
        if !members.iter().any(|m| m.id == self.me) {
            self.self_missing.notify_one();
        }
        let etcd_revision = u64::try_from(revision).unwrap_or(0);
        if etcd_revision.saturating_add(self.offset) < self.last_sent {
            tracing::warn!(node = %self.me, etcd_revision, last = self.last_sent,
                "etcd revision went backwards (etcd rebuilt?); shifting revisions forward");
            self.offset = self.last_sent;
        }
        tracing::debug!(node = %self.me, revision, members = members.len(), "etcd snapshot");
        let event = MembershipEvent::Snapshot {
            revision: self.shift(revision),
            members,
        };
        self.send(event).await?;
        Ok(revision)
    }

    /// Follow changes from `start` (an etcd revision) until the watch ends.
    pub(super) async fn watch_from(&mut self, start: i64) -> WatchEnd {
        let prefix = self.layout.prefix().to_string();
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let opened = call(
            || format!("etcd watch --prefix {prefix} from revision {start}"),
            self.request_timeout,
            self.client.watch(prefix.as_str(), Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => return WatchEnd::Interrupted(err),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return WatchEnd::Interrupted(DiscoveryError::Unavailable(
                        "etcd closed the watch stream".into(),
                    ))
                }
                Err(err) => {
                    return WatchEnd::Interrupted(DiscoveryError::Backend {
                        context: format!("etcd watch --prefix {prefix}"),
                        source: Box::new(err),
                    })
                }
            };
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted(response.compact_revision());
            }
            if response.canceled() {
                return WatchEnd::Interrupted(DiscoveryError::Unavailable(format!(
                    "etcd cancelled the watch: {:?}",
                    response.cancel_reason()
                )));
            }
            if response.created() {
                self.backoff.reset();
                self.flags.watching.store(true, Ordering::Relaxed);
            }
            for event in response.events() {
                let Some(event) = event.kv().and_then(|kv| self.event_of(kv)) else {
                    continue;
                };
                if let MembershipEvent::Down { id, .. } = &event {
                    if *id == self.me {
                        self.self_missing.notify_one();
                    }
                }
                if self.send(event).await.is_err() {
                    return WatchEnd::Closed;
                }
            }
        }
    }

    /// Follow the cluster forever, starting after the snapshot at `revision` (the task running
    /// this is aborted on leave or drop; it also ends when the node drops its receiver).
    pub(super) async fn run(mut self, mut revision: i64) {
        loop {
            match self.watch_from(revision.saturating_add(1)).await {
                WatchEnd::Closed => return,
                WatchEnd::Compacted(compacted) => {
                    tracing::info!(node = %self.me, compacted, watched_from = revision + 1,
                        "etcd compacted past the watch; listing again");
                }
                WatchEnd::Interrupted(err) => {
                    self.flags.watching.store(false, Ordering::Relaxed);
                    let delay = self.backoff.next_delay();
                    tracing::warn!(node = %self.me, error = %err, retry_in = ?delay,
                        "etcd watch interrupted; keeping the last view and listing again");
                    tokio::time::sleep(delay).await;
                }
            }
            revision = loop {
                match self.list().await {
                    Ok(revision) => break revision,
                    Err(DiscoveryError::Closed) => return,
                    Err(err) => {
                        let delay = self.backoff.next_delay();
                        tracing::warn!(node = %self.me, error = %err, retry_in = ?delay,
                            "listing etcd failed; keeping the last view");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
        }
    }

    /// The member a listed key describes; malformed records are skipped (a member nobody can
    /// dial is as good as absent).
    fn member_of(&self, kv: &KeyValue) -> Option<Member> {
        let id = self.layout.id_of(kv.key())?;
        match decode_value(id.clone(), kv.value()) {
            Ok(member) => Some(member),
            Err(err) => {
                tracing::warn!(node = %self.me, peer = %id, error = %err,
                    "ignoring a malformed member record in etcd");
                None
            }
        }
    }

    /// The membership event a watched change means, at the key's modification revision.
    ///
    /// A deletion (etcd reports it with `version == 0`: "a deletion resets the version to zero")
    /// or a malformed value is a `Down`; a well-formed put is an `Up`.
    fn event_of(&self, kv: &KeyValue) -> Option<MembershipEvent> {
        let id = self.layout.id_of(kv.key())?;
        let revision = self.shift(kv.mod_revision());
        if kv.version() == 0 {
            return Some(MembershipEvent::Down { revision, id });
        }
        Some(match self.member_of(kv) {
            Some(member) => MembershipEvent::Up { revision, member },
            None => MembershipEvent::Down { revision, id },
        })
    }

    fn shift(&self, etcd_revision: i64) -> u64 {
        u64::try_from(etcd_revision)
            .unwrap_or(0)
            .saturating_add(self.offset)
    }

    async fn send(&mut self, event: MembershipEvent) -> Result<(), DiscoveryError> {
        let revision = event.revision();
        self.events
            .send(event)
            .await
            .map_err(|_| DiscoveryError::Closed)?;
        self.last_sent = self.last_sent.max(revision);
        Ok(())
    }
}
