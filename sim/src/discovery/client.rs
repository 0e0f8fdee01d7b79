//! [`SimDiscovery`]: the node's [`Discovery`] over the simulated registry, behaving like an etcd
//! client: a lease kept alive, re-registration when it is lost, a watch that re-reads a snapshot
//! after every reconnection.
//!
//! Between the watch and the node sits a relay that misdelivers on purpose, as seeded by
//! [`DiscoveryChaos`]: it duplicates events, swaps neighbours, replays an event of an old watch
//! after a reconnection's snapshot, and holds every event back while the driver stalls this
//! node's watch (long view disagreement).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use lcache_core::member::{Member, MemberId};
use lcache_core::membership::MembershipEvent;
use lcache_discovery::{Discovery, DiscoveryError, Fence, EVENT_CHANNEL_CAPACITY};
use parking_lot::Mutex;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::options::DiscoveryChaos;

use super::wire::{invalid, LineConn};
use super::{HOST, MAX_BACKOFF, MIN_BACKOFF, PORT, PREFIX, REQUEST_TIMEOUT, WATCH_IDLE_TIMEOUT};

/// Members a snapshot may list at most.
const MAX_SNAPSHOT: usize = 1_024;

/// The lease this node's registration is under, and when the registry last confirmed it.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: u64,
    renewed_at: tokio::time::Instant,
}

/// A running registration: the tasks' stop switch and the lease they hold.
#[derive(Debug)]
struct Session {
    cancel: CancellationToken,
    lease: Arc<Mutex<Option<Held>>>,
}

/// Events of old watches the relay keeps for replays.
const REPLAY_MEMORY: usize = 16;
/// Longest an event held back for reordering waits for the next one.
const REORDER_WINDOW: Duration = Duration::from_millis(300);

/// How the relay misdelivers: the seed's rates, its rng, and the driver's stall switch.
#[derive(Debug)]
pub struct Misdelivery {
    /// Rates.
    pub chaos: DiscoveryChaos,
    /// This node's rng for them.
    pub rng: ChaCha8Rng,
    /// `true` while the driver stalls this node's watch.
    pub stalled: watch::Receiver<bool>,
    /// `true` while the node is cut off from discovery (no renewals, no events).
    pub cut: watch::Receiver<bool>,
}

/// Discovery through the simulated registry host.
#[derive(Debug)]
pub struct SimDiscovery {
    lease_ttl: Duration,
    session: Mutex<Option<Session>>,
    misdelivery: Mutex<Option<Misdelivery>>,
}

impl SimDiscovery {
    /// A client registering under leases of `lease_ttl`, delivering watch events as `how`.
    pub fn new(lease_ttl: Duration, how: Misdelivery) -> Self {
        SimDiscovery {
            lease_ttl,
            session: Mutex::new(None),
            misdelivery: Mutex::new(Some(how)),
        }
    }
}

impl Discovery for SimDiscovery {
    /// Starts registering `me` and watching members in the background; returns once `me` is
    /// registered and a first snapshot of the members was read, as the etcd discovery does (a
    /// node that served before would own every key in a view of itself alone, and acknowledge
    /// writes its peers never see). While the registry is unreachable it keeps waiting.
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
        fence: Fence,
    ) -> Result<(), DiscoveryError> {
        let cancel = CancellationToken::new();
        let lease = Arc::new(Mutex::new(None));
        let how = self.misdelivery.lock().take();
        let cut = how.as_ref().map(|how| how.cut.clone());
        let (registered_tx, mut registered) = watch::channel(false);
        let (listed_tx, mut listed) = watch::channel(false);
        let keeper = keep_registered(me, self.lease_ttl, lease.clone(), fence, cut, registered_tx);
        let (watched, relayed) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let watcher = watch_members(watched, events.clone(), listed_tx);
        let relay: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match how {
            Some(how) => Box::pin(relay(relayed, events, how)),
            None => Box::pin(relay_plain(relayed, events)),
        };
        for task in [
            Box::pin(keeper) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
            Box::pin(watcher),
            relay,
        ] {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {}
                    () = task => {}
                }
            });
        }
        let old = self.session.lock().replace(Session { cancel, lease });
        if let Some(old) = old {
            old.cancel.cancel();
        }
        // The senders live as long as their tasks; a task gone means the session was cancelled.
        let _ = registered.wait_for(|done| *done).await;
        let _ = listed.wait_for(|done| *done).await;
        Ok(())
    }

    /// Stops the tasks and revokes the lease, so peers see the departure at once.
    async fn leave(&self) -> Result<(), DiscoveryError> {
        let Some(session) = self.session.lock().take() else {
            return Ok(());
        };
        session.cancel.cancel();
        let Some(Held { id: lease, .. }) = *session.lease.lock() else {
            return Ok(());
        };
        let revoke = async {
            let mut conn = LineConn::connect(HOST, PORT).await?;
            conn.call(&format!("REVOKE {lease}")).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, revoke).await {
            Ok(Ok(answer)) if answer.starts_with("REV ") => Ok(()),
            Ok(Ok(answer)) => Err(DiscoveryError::Unavailable(answer)),
            Ok(Err(err)) => Err(DiscoveryError::Unavailable(err.to_string())),
            Err(_) => Err(DiscoveryError::Unavailable("revoke timed out".into())),
        }
    }
}

/// Passes watch events on unchanged.
async fn relay_plain(mut from: mpsc::Receiver<MembershipEvent>, to: mpsc::Sender<MembershipEvent>) {
    while let Some(event) = from.recv().await {
        if to.send(event).await.is_err() {
            return;
        }
    }
}

/// Passes watch events on, misdelivered as `how` says: held while stalled, duplicated, swapped
/// with the next one, and old events replayed after a reconnection's snapshot.
async fn relay(
    mut from: mpsc::Receiver<MembershipEvent>,
    to: mpsc::Sender<MembershipEvent>,
    mut how: Misdelivery,
) {
    let mut held: Option<MembershipEvent> = None;
    let mut old: Vec<MembershipEvent> = Vec::new();
    loop {
        if *how.stalled.borrow() || *how.cut.borrow() {
            // Wait out the stall; events queue in the channel (bounded: the watcher blocks).
            if how.stalled.wait_for(|s| !*s).await.is_err()
                || how.cut.wait_for(|c| !*c).await.is_err()
            {
                return;
            }
            continue;
        }
        let next = if held.is_some() {
            // A held event waits for the next one, but not for long.
            match tokio::time::timeout(REORDER_WINDOW, from.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    let Some(h) = held.take() else { continue };
                    if to.send(h).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else {
            from.recv().await
        };
        let Some(event) = next else {
            return;
        };
        let c = how.chaos;
        let mut out = Vec::with_capacity(3);
        let snapshot = matches!(event, MembershipEvent::Snapshot { .. });
        if let Some(h) = held.take() {
            out.push(event.clone());
            out.push(h);
        } else if !snapshot && how.rng.random_range(0..100) < c.reorder_pct {
            held = Some(event.clone());
        } else {
            out.push(event.clone());
        }
        if how.rng.random_range(0..100) < c.duplicate_pct {
            out.push(event.clone());
        }
        if snapshot && !old.is_empty() && how.rng.random_range(0..100) < c.replay_pct {
            let i = how.rng.random_range(0..old.len());
            out.push(old[i].clone());
        }
        if !snapshot {
            if old.len() >= REPLAY_MEMORY {
                old.remove(0);
            }
            old.push(event);
        }
        for event in out {
            if to.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Doubling delay between reconnection attempts.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(MIN_BACKOFF)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }

    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

/// One request/response, bounded by [`REQUEST_TIMEOUT`].
async fn call(conn: &mut LineConn, line: &str) -> io::Result<String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, conn.call(line)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "registry timed out",
        )),
    }
}

async fn connect() -> io::Result<LineConn> {
    match tokio::time::timeout(REQUEST_TIMEOUT, LineConn::connect(HOST, PORT)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Keeps `me` registered under a live lease, forever (until cancelled). When the lease is lost
/// — the registry says so, or no renewal was confirmed for a whole TTL (cut off: the registry
/// has certainly dropped it) — raises `fence` before registering again. While `cut` says so,
/// sends nothing (as if the link to the registry were down).
async fn keep_registered(
    me: Member,
    ttl: Duration,
    lease: Arc<Mutex<Option<Held>>>,
    fence: Fence,
    mut cut: Option<watch::Receiver<bool>>,
    registered: watch::Sender<bool>,
) {
    let mut attempts = Attempts {
        backoff: Backoff::new(),
        registered_before: false,
        registered,
    };
    loop {
        if let Ok(mut conn) = connect().await {
            // Returns on a broken connection; the lease may still be alive.
            let _ = keep_lease(&mut conn, &me, ttl, &lease, &fence, &mut attempts, &mut cut).await;
        }
        drop_if_expired(&lease, ttl, &fence);
        attempts.backoff.wait().await;
        drop_if_expired(&lease, ttl, &fence);
    }
}

/// The registration's retry state across connections.
struct Attempts {
    backoff: Backoff,
    /// Whether this node registered once already (a new registration is then a return).
    registered_before: bool,
    /// Told once the first registration is done.
    registered: watch::Sender<bool>,
}

/// Forgets the lease (raising the fence) if no renewal was confirmed for a whole TTL.
fn drop_if_expired(lease: &Mutex<Option<Held>>, ttl: Duration, fence: &Fence) {
    let mut held = lease.lock();
    if held.is_some_and(|h| h.renewed_at.elapsed() >= ttl) {
        *held = None;
        drop(held);
        fence.raise();
    }
}

/// Waits while the node is cut off from discovery, noticing meanwhile when its lease has
/// certainly expired.
async fn while_cut(
    cut: &mut Option<watch::Receiver<bool>>,
    lease: &Mutex<Option<Held>>,
    ttl: Duration,
    fence: &Fence,
) {
    let Some(cut) = cut else { return };
    while *cut.borrow_and_update() {
        tokio::select! {
            biased;
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(ttl / 3) => drop_if_expired(lease, ttl, fence),
        }
    }
    drop_if_expired(lease, ttl, fence);
}

/// On one connection: register if needed, then renew every `ttl / 3`.
async fn keep_lease(
    conn: &mut LineConn,
    me: &Member,
    ttl: Duration,
    lease: &Mutex<Option<Held>>,
    fence: &Fence,
    attempts: &mut Attempts,
    cut: &mut Option<watch::Receiver<bool>>,
) -> io::Result<()> {
    loop {
        while_cut(cut, lease, ttl, fence).await;
        let current = *lease.lock();
        match current {
            None => {
                if attempts.registered_before {
                    // Peers dropped this node with its lease; whatever it kept since (serving
                    // in its own stale view) goes too, just before peers route to it again.
                    fence.raise();
                }
                let asked = tokio::time::Instant::now();
                let id = register(conn, me, ttl).await?;
                attempts.registered_before = true;
                attempts.registered.send_replace(true);
                *lease.lock() = Some(Held {
                    id,
                    renewed_at: asked,
                });
                attempts.backoff.reset();
            }
            Some(held) => {
                tokio::time::sleep(ttl / 3).await;
                while_cut(cut, lease, ttl, fence).await;
                let asked = tokio::time::Instant::now();
                let answer = call(conn, &format!("KEEPALIVE {}", held.id)).await?;
                if answer == "OK" {
                    if let Some(h) = lease.lock().as_mut().filter(|h| h.id == held.id) {
                        h.renewed_at = asked;
                    }
                } else if lease.lock().is_some_and(|h| h.id == held.id) {
                    // Expired while we were cut off: fence, then register again.
                    *lease.lock() = None;
                    fence.raise();
                }
            }
        }
    }
}

/// Grants a lease and puts `me` under it; returns the lease.
async fn register(conn: &mut LineConn, me: &Member, ttl: Duration) -> io::Result<u64> {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let answer = call(conn, &format!("GRANT {ttl_ms}")).await?;
    let id: u64 = answer
        .strip_prefix("LEASE ")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| invalid(answer.clone()))?;
    let put = format!("PUT {PREFIX}{} {}|{} {id}", me.id, me.addr, me.incarnation);
    let answer = call(conn, &put).await?;
    if answer.starts_with("REV ") {
        Ok(id)
    } else {
        Err(invalid(answer))
    }
}

/// Watches members forever (until cancelled or the node stops listening), reconnecting and
/// re-reading a snapshot whenever the watch breaks or goes quiet for too long. The first
/// snapshot goes to `first` directly (not through the misdelivering relay), then `listed` is
/// told.
async fn watch_members(
    events: mpsc::Sender<MembershipEvent>,
    first: mpsc::Sender<MembershipEvent>,
    listed: watch::Sender<bool>,
) {
    let mut backoff = Backoff::new();
    let mut first = Some((first, listed));
    loop {
        match watch_once(&events, &mut backoff, &mut first).await {
            Ok(Closed::Receiver) => return,
            Ok(Closed::Watch) | Err(_) => backoff.wait().await,
        }
    }
}

enum Closed {
    /// The node dropped its receiver.
    Receiver,
    /// The watch ended; reconnect.
    Watch,
}

async fn watch_once(
    events: &mpsc::Sender<MembershipEvent>,
    backoff: &mut Backoff,
    first: &mut Option<(mpsc::Sender<MembershipEvent>, watch::Sender<bool>)>,
) -> io::Result<Closed> {
    let mut conn = connect().await?;
    let header = call(&mut conn, &format!("WATCH {PREFIX}")).await?;
    let (revision, count) = parse_snapshot_header(&header)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let line = recv(&mut conn, REQUEST_TIMEOUT).await?;
        let rest = line
            .strip_prefix("KV ")
            .ok_or_else(|| invalid(line.clone()))?;
        let (key, value) = rest.split_once(' ').ok_or_else(|| invalid(line.clone()))?;
        members.push(parse_member(key, value)?);
    }
    let snapshot = MembershipEvent::Snapshot { revision, members };
    if let Some((direct, listed)) = first.take() {
        // The first listing goes straight to the node, like etcd's initial range read (a stalled
        // or misdelivering watch only affects what follows it).
        if direct.send(snapshot).await.is_err() {
            return Ok(Closed::Receiver);
        }
        listed.send_replace(true);
    } else if events.send(snapshot).await.is_err() {
        return Ok(Closed::Receiver);
    }
    backoff.reset();
    loop {
        let line = match recv(&mut conn, WATCH_IDLE_TIMEOUT).await {
            Ok(line) => line,
            Err(_) => return Ok(Closed::Watch),
        };
        let Some(event) = parse_change(&line)? else {
            continue;
        };
        if events.send(event).await.is_err() {
            return Ok(Closed::Receiver);
        }
    }
}

async fn recv(conn: &mut LineConn, timeout: Duration) -> io::Result<String> {
    match tokio::time::timeout(timeout, conn.recv()).await {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "watch closed")),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "watch idle")),
    }
}

fn parse_snapshot_header(line: &str) -> io::Result<(u64, usize)> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("SNAPSHOT"), Some(revision), Some(count), None) => {
            let revision = revision.parse().map_err(|_| invalid(line))?;
            let count: usize = count.parse().map_err(|_| invalid(line))?;
            if count > MAX_SNAPSHOT {
                return Err(invalid("snapshot too large"));
            }
            Ok((revision, count))
        }
        _ => Err(invalid(line)),
    }
}

/// A watch line as a membership event; `None` for a progress notification.
fn parse_change(line: &str) -> io::Result<Option<MembershipEvent>> {
    let words: Vec<&str> = line.split(' ').collect();
    match words.as_slice() {
        ["PROGRESS", _] => Ok(None),
        ["PUT", revision, key, value] => Ok(Some(MembershipEvent::Up {
            revision: revision.parse().map_err(|_| invalid(line))?,
            member: parse_member(key, value)?,
        })),
        ["DEL", revision, key] => Ok(Some(MembershipEvent::Down {
            revision: revision.parse().map_err(|_| invalid(line))?,
            id: MemberId::new(member_id(key)?),
        })),
        _ => Err(invalid(line)),
    }
}

fn member_id(key: &str) -> io::Result<&str> {
    key.strip_prefix(PREFIX)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid(key))
}

/// `members/<id>` and `<addr>|<incarnation>` as a member.
fn parse_member(key: &str, value: &str) -> io::Result<Member> {
    let id = member_id(key)?;
    let (addr, incarnation) = value.rsplit_once('|').ok_or_else(|| invalid(value))?;
    let incarnation = incarnation.parse().map_err(|_| invalid(value))?;
    Ok(Member::new(id, addr, incarnation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_lines() {
        assert_eq!(parse_change("PROGRESS 4").unwrap(), None);
        assert_eq!(
            parse_change("PUT 5 members/n1 n1:9000|3").unwrap(),
            Some(MembershipEvent::Up {
                revision: 5,
                member: Member::new("n1", "n1:9000", 3)
            })
        );
        assert_eq!(
            parse_change("DEL 6 members/n1").unwrap(),
            Some(MembershipEvent::Down {
                revision: 6,
                id: MemberId::new("n1")
            })
        );
        assert!(parse_change("DEL x members/n1").is_err());
        assert!(parse_change("PUT 5 other/n1 a|1").is_err());
        assert_eq!(parse_snapshot_header("SNAPSHOT 7 2").unwrap(), (7, 2));
        assert!(parse_snapshot_header("SNAPSHOT 7 99999").is_err());
    }
}
