//! The registry host: an etcd-like store of leased keys with revisions and watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use turmoil::net::TcpListener;

use super::wire::{LineConn, LineWriter};
use super::{PORT, PROGRESS_INTERVAL};
use crate::history::{micros, Event, History};

/// Changes a watcher may have queued before it counts as too slow and is dropped (its client
/// reconnects and reads a fresh snapshot, like etcd cancelling a compacted watch).
const WATCH_QUEUE: usize = 256;
/// Watchers kept at most; the oldest is dropped past it.
const MAX_WATCHERS: usize = 256;
/// Leases kept at most; a grant past it is refused.
const MAX_LEASES: usize = 1_024;
/// How often expired leases are looked for.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(50);

/// One change of a watched key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Put {
        revision: u64,
        key: String,
        value: String,
    },
    Del {
        revision: u64,
        key: String,
    },
}

impl Change {
    fn key(&self) -> &str {
        match self {
            Change::Put { key, .. } | Change::Del { key, .. } => key,
        }
    }

    fn line(&self) -> String {
        match self {
            Change::Put {
                revision,
                key,
                value,
            } => format!("PUT {revision} {key} {value}"),
            Change::Del { revision, key } => format!("DEL {revision} {key}"),
        }
    }
}

#[derive(Debug)]
struct Kv {
    value: String,
    lease: u64,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    /// Simulated time (µs) after which the lease is gone.
    deadline_us: u64,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Change>,
}

#[derive(Debug, Default)]
struct Registry {
    revision: u64,
    next_lease: u64,
    kvs: BTreeMap<String, Kv>,
    leases: BTreeMap<u64, Lease>,
    watchers: Vec<Watcher>,
}

/// The registry's data. It lives outside the host's software, so it survives a crash of the
/// host (like etcd's disk); the host's connections and watches do not.
#[derive(Debug, Default)]
pub struct RegistryState {
    inner: Mutex<Registry>,
}

impl RegistryState {
    /// An empty registry at revision 0.
    pub fn new() -> Arc<Self> {
        Arc::new(RegistryState::default())
    }

    /// After a (re)start: every lease gets a full TTL again (as after an etcd leader change) and
    /// watches of the previous life are gone.
    fn restarted(&self, now_us: u64) {
        let mut r = self.inner.lock();
        for lease in r.leases.values_mut() {
            lease.deadline_us = now_us + micros(lease.ttl);
        }
        r.watchers.clear();
    }

    fn grant(&self, ttl: Duration, now_us: u64) -> Option<u64> {
        let mut r = self.inner.lock();
        if r.leases.len() >= MAX_LEASES {
            return None;
        }
        r.next_lease += 1;
        let id = r.next_lease;
        let deadline_us = now_us + micros(ttl);
        r.leases.insert(id, Lease { ttl, deadline_us });
        Some(id)
    }

    fn keepalive(&self, id: u64, now_us: u64) -> bool {
        let mut r = self.inner.lock();
        match r.leases.get_mut(&id) {
            Some(lease) => {
                lease.deadline_us = now_us + micros(lease.ttl);
                true
            }
            None => false,
        }
    }

    fn put(&self, key: &str, value: &str, lease: u64) -> Option<u64> {
        let mut r = self.inner.lock();
        if !r.leases.contains_key(&lease) {
            return None;
        }
        r.revision += 1;
        let revision = r.revision;
        r.kvs.insert(
            key.to_owned(),
            Kv {
                value: value.to_owned(),
                lease,
            },
        );
        notify(
            &mut r,
            Change::Put {
                revision,
                key: key.to_owned(),
                value: value.to_owned(),
            },
        );
        Some(revision)
    }

    /// Removes lease `id` and its keys, one revision per deleted key; returns the revision.
    fn revoke(r: &mut Registry, id: u64) -> (u64, Vec<String>) {
        r.leases.remove(&id);
        let keys: Vec<String> = r
            .kvs
            .iter()
            .filter(|(_, kv)| kv.lease == id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            r.kvs.remove(key);
            r.revision += 1;
            let revision = r.revision;
            notify(
                r,
                Change::Del {
                    revision,
                    key: key.clone(),
                },
            );
        }
        (r.revision, keys)
    }

    fn revoke_lease(&self, id: u64) -> (u64, Vec<String>) {
        RegistryState::revoke(&mut self.inner.lock(), id)
    }

    /// Revokes every lease whose deadline passed; returns (lease, deleted keys) per expiry.
    fn expire(&self, now_us: u64) -> Vec<(u64, Vec<String>)> {
        let mut r = self.inner.lock();
        let expired: Vec<u64> = r
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline_us <= now_us)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .map(|id| (id, RegistryState::revoke(&mut r, id).1))
            .collect()
    }

    /// A snapshot of the keys under `prefix` and a queue of the changes after it.
    fn watch(&self, prefix: &str) -> (u64, Vec<(String, String)>, mpsc::Receiver<Change>) {
        let mut r = self.inner.lock();
        let snapshot = r
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, kv)| (k.clone(), kv.value.clone()))
            .collect();
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        if r.watchers.len() >= MAX_WATCHERS {
            r.watchers.remove(0);
        }
        r.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
        });
        (r.revision, snapshot, rx)
    }

    fn revision(&self) -> u64 {
        self.inner.lock().revision
    }
}

/// Queues `change` for every watcher of its key; a watcher that is gone or too slow is dropped.
fn notify(r: &mut Registry, change: Change) {
    r.watchers
        .retain(|w| !change.key().starts_with(&w.prefix) || w.tx.try_send(change.clone()).is_ok());
}

fn now_us() -> u64 {
    turmoil::sim_elapsed().map_or(0, micros)
}

/// The software of the discovery host: serve the registry until the host is crashed.
pub async fn registry_software(state: Arc<RegistryState>, history: History) -> turmoil::Result {
    state.restarted(now_us());
    history.record(Event::Registry(format!(
        "registry up at revision {}",
        state.revision()
    )));
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    tokio::spawn(expire_leases(state.clone(), history.clone()));
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve_connection(
            state.clone(),
            history.clone(),
            LineConn::new(stream),
        ));
    }
}

async fn expire_leases(state: Arc<RegistryState>, history: History) {
    let mut ticker = tokio::time::interval(EXPIRY_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (lease, keys) in state.expire(now_us()) {
            history.record(Event::Registry(format!(
                "lease {lease} expired, deleted {keys:?} (revision {})",
                state.revision()
            )));
        }
    }
}

/// Answers requests on one connection until it closes or turns into a watch.
async fn serve_connection(state: Arc<RegistryState>, history: History, mut conn: LineConn) {
    while let Ok(Some(line)) = conn.recv().await {
        let words: Vec<&str> = line.split(' ').collect();
        let answer = match words.as_slice() {
            ["GRANT", ttl_ms] => match ttl_ms.parse::<u64>() {
                Ok(ms) if ms > 0 => match state.grant(Duration::from_millis(ms), now_us()) {
                    Some(id) => format!("LEASE {id}"),
                    None => "ERR too many leases".to_owned(),
                },
                _ => "ERR bad ttl".to_owned(),
            },
            ["KEEPALIVE", id] => match id.parse() {
                Ok(id) if state.keepalive(id, now_us()) => "OK".to_owned(),
                _ => "NOLEASE".to_owned(),
            },
            ["PUT", key, value, lease] => match lease.parse().ok().and_then(|l| {
                let revision = state.put(key, value, l)?;
                Some((l, revision))
            }) {
                Some((lease, revision)) => {
                    history.record(Event::Registry(format!(
                        "put {key}={value} lease {lease} (revision {revision})"
                    )));
                    format!("REV {revision}")
                }
                None => "NOLEASE".to_owned(),
            },
            ["REVOKE", id] => match id.parse() {
                Ok(id) => {
                    let (revision, keys) = state.revoke_lease(id);
                    history.record(Event::Registry(format!(
                        "lease {id} revoked, deleted {keys:?} (revision {revision})"
                    )));
                    format!("REV {revision}")
                }
                Err(_) => "ERR bad lease".to_owned(),
            },
            ["WATCH", prefix] => {
                let prefix = (*prefix).to_owned();
                serve_watch(&state, conn, &prefix).await;
                return;
            }
            _ => "ERR unknown request".to_owned(),
        };
        if conn.send(&answer).await.is_err() {
            return;
        }
    }
}

/// Sends a snapshot of `prefix`, then every change, with progress notifications when quiet,
/// until the client goes away or the watcher is dropped as too slow.
async fn serve_watch(state: &RegistryState, conn: LineConn, prefix: &str) {
    let (revision, snapshot, mut changes) = state.watch(prefix);
    let (mut reader, mut writer) = conn.split();
    if send_snapshot(&mut writer, revision, &snapshot)
        .await
        .is_err()
    {
        return;
    }
    loop {
        let line = tokio::select! {
            biased;
            change = changes.recv() => match change {
                Some(change) => change.line(),
                None => return,
            },
            // The client never writes on a watch: anything, or the end, closes it.
            _ = reader.recv() => return,
            () = tokio::time::sleep(PROGRESS_INTERVAL) => format!("PROGRESS {}", state.revision()),
        };
        if writer.send(&line).await.is_err() {
            return;
        }
    }
}

async fn send_snapshot(
    writer: &mut LineWriter,
    revision: u64,
    snapshot: &[(String, String)],
) -> std::io::Result<()> {
    writer
        .send(&format!("SNAPSHOT {revision} {}", snapshot.len()))
        .await?;
    for (key, value) in snapshot {
        writer.send(&format!("KV {key} {value}")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_keys_revisions_and_watches() {
        let s = RegistryState::default();
        let lease = s.grant(Duration::from_secs(1), 0).unwrap();
        assert_eq!(s.put("members/a", "a:1|1", lease), Some(1));
        assert_eq!(s.put("members/b", "b:1|1", 99), None, "unknown lease");
        let (revision, snapshot, mut rx) = s.watch("members/");
        assert_eq!(revision, 1);
        assert_eq!(snapshot, vec![("members/a".into(), "a:1|1".into())]);
        assert!(s.keepalive(lease, 500_000));
        assert!(s.expire(1_000_000).is_empty(), "kept alive");
        let expired = s.expire(1_500_000);
        assert_eq!(expired, vec![(lease, vec!["members/a".to_owned()])]);
        assert!(!s.keepalive(lease, 1_500_000));
        assert_eq!(
            rx.try_recv().unwrap(),
            Change::Del {
                revision: 2,
                key: "members/a".into()
            }
        );
    }

    #[test]
    fn a_restart_renews_leases() {
        let s = RegistryState::default();
        let lease = s.grant(Duration::from_secs(1), 0).unwrap();
        s.restarted(5_000_000);
        assert!(s.expire(5_500_000).is_empty());
        assert_eq!(s.expire(6_000_000).len(), 1);
        assert_eq!(s.revoke_lease(lease).1, Vec::<String>::new());
    }
}
