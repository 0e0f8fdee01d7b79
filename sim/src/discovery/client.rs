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
use lcache_discovery::{Discovery, DiscoveryError, EVENT_CHANNEL_CAPACITY};
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

/// A running registration: the tasks' stop switch and the lease they hold.
#[derive(Debug)]
struct Session {
    cancel: CancellationToken,
    lease: Arc<Mutex<Option<u64>>>,
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
    /// Starts registering `me` and watching members in the background; returns at once (the
    /// registry may be unreachable: the tasks keep retrying, the node serves meanwhile).
    async fn join(
        &self,
        me: Member,
        events: mpsc::Sender<MembershipEvent>,
    ) -> Result<(), DiscoveryError> {
        let cancel = CancellationToken::new();
        let lease = Arc::new(Mutex::new(None));
        let how = self.misdelivery.lock().take();
        let cut = how.as_ref().map(|how| how.cut.clone());
        let keeper = keep_registered(me, self.lease_ttl, lease.clone(), cut);
        let (watched, relayed) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let watcher = watch_members(watched);
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
        Ok(())
    }

    /// Stops the tasks and revokes the lease, so peers see the departure at once.
    async fn leave(&self) -> Result<(), DiscoveryError> {
        let Some(session) = self.session.lock().take() else {
            return Ok(());
        };
        session.cancel.cancel();
        let Some(lease) = *session.lease.lock() else {
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

/// Keeps `me` registered under a live lease, forever (until cancelled); while `cut` says so,
/// sends nothing (as if the link to the registry were down).
async fn keep_registered(
    me: Member,
    ttl: Duration,
    lease: Arc<Mutex<Option<u64>>>,
    mut cut: Option<watch::Receiver<bool>>,
) {
    let mut backoff = Backoff::new();
    loop {
        if let Ok(mut conn) = connect().await {
            // Returns on a broken connection; the lease may still be alive.
            let _ = keep_lease(&mut conn, &me, ttl, &lease, &mut backoff, &mut cut).await;
        }
        backoff.wait().await;
    }
}

/// Waits while the node is cut off from discovery.
async fn while_cut(cut: &mut Option<watch::Receiver<bool>>) {
    if let Some(cut) = cut {
        let _ = cut.wait_for(|c| !*c).await;
    }
}

/// On one connection: register if needed, then renew every `ttl / 3`.
async fn keep_lease(
    conn: &mut LineConn,
    me: &Member,
    ttl: Duration,
    lease: &Mutex<Option<u64>>,
    backoff: &mut Backoff,
    cut: &mut Option<watch::Receiver<bool>>,
) -> io::Result<()> {
    loop {
        while_cut(cut).await;
        let current = *lease.lock();
        match current {
            None => {
                let id = register(conn, me, ttl).await?;
                *lease.lock() = Some(id);
                backoff.reset();
            }
            Some(id) => {
                tokio::time::sleep(ttl / 3).await;
                while_cut(cut).await;
                let answer = call(conn, &format!("KEEPALIVE {id}")).await?;
                if answer != "OK" {
                    // Expired while we were cut off: register again under a new lease.
                    *lease.lock() = None;
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
/// re-reading a snapshot whenever the watch breaks or goes quiet for too long.
async fn watch_members(events: mpsc::Sender<MembershipEvent>) {
    let mut backoff = Backoff::new();
    loop {
        match watch_once(&events, &mut backoff).await {
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
    if events
        .send(MembershipEvent::Snapshot { revision, members })
        .await
        .is_err()
    {
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
