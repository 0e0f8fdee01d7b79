//! Client hosts: the seeded workload of the safety phase, and the verifier of the liveness
//! phase. Both speak to nodes through the real [`CacheClient`] over turmoil and record every
//! request and response.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_transport::{CacheClient, ClientConfig, ClientError};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::history::{millis, sim_now, Event, FailKind, History, Outcome, Phase, Request};
use crate::node_host::{Running, GROUP, PORT, RESET_STREAM_MEMORY};
use crate::options::Options;
use crate::rng::component_rng;

/// Longest message kept from a client error.
const MAX_MESSAGE: usize = 160;
/// Probe rounds the verifier runs at most before giving up on the data path.
const MAX_PROBE_ROUNDS: u32 = 8;
/// Attempts the verifier makes at most to get one write acknowledged.
const MAX_WRITE_ATTEMPTS: u32 = 5;
/// Lifetime of the verifier's values (longer than any run).
const L2_TTL_MS: u64 = 600_000;

/// Everything a client host needs.
#[derive(Debug, Clone)]
pub struct ClientContext {
    /// Host name.
    pub name: String,
    /// The run's options.
    pub options: Arc<Options>,
    /// The run's history.
    pub history: History,
    /// The node hosts.
    pub cluster: Arc<Cluster>,
    /// Set by the driver when the safety phase ends: workers finish their request and stop.
    pub stop: Arc<AtomicBool>,
}

/// A connection to one node, as of one incarnation of it.
#[derive(Debug)]
struct Conn {
    client: CacheClient,
    since: Duration,
    inc: u64,
}

/// One sequential requester with its connections.
#[derive(Debug)]
struct Session {
    label: String,
    ctx: ClientContext,
    conns: BTreeMap<String, Conn>,
}

impl Session {
    fn new(label: String, ctx: ClientContext) -> Self {
        Session {
            label,
            ctx,
            conns: BTreeMap::new(),
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            connect_timeout: self.ctx.options.connect_timeout,
            request_timeout: self.ctx.options.call_timeout,
            http2_keepalive_interval: Some(Duration::from_millis(500)),
            http2_keepalive_timeout: Duration::from_millis(500),
            http2_reset_stream_duration: RESET_STREAM_MEMORY,
            ..ClientConfig::default()
        }
    }

    /// Sends `request` to `node`, recording it and its outcome.
    async fn perform(&mut self, node: &str, request: Request, phase: Phase) -> Outcome {
        let inc = self
            .ctx
            .cluster
            .ctl(node)
            .map_or(0, |ctl| ctl.incarnation());
        if self.conns.get(node).is_some_and(|c| c.inc != inc) {
            // The node restarted: a real client learns it from its broken connection.
            self.conns.remove(node);
        }
        let now = sim_now();
        let since = self.conns.get(node).map_or(now, |c| c.since);
        let o = &self.ctx.options;
        let deadline = o.connect_timeout + o.call_timeout;
        let op =
            self.ctx
                .history
                .invoke(&self.label, node, request.clone(), phase, since, deadline);
        let outcome = match self.client(node, inc, now).await {
            Ok(client) => call(&client, &request).await,
            Err(err) => Outcome::Failed {
                kind: FailKind::Connect,
                message: short(&err),
            },
        };
        if matches!(
            outcome,
            Outcome::Failed {
                kind: FailKind::Timeout | FailKind::Unavailable | FailKind::Connect,
                ..
            }
        ) {
            self.conns.remove(node);
        }
        self.ctx.history.record(Event::Return {
            op,
            outcome: outcome.clone(),
        });
        outcome
    }

    async fn client(
        &mut self,
        node: &str,
        inc: u64,
        now: Duration,
    ) -> Result<CacheClient, ClientError> {
        if let Some(conn) = self.conns.get(node) {
            return Ok(conn.client.clone());
        }
        let addr = format!("{node}:{PORT}");
        let client =
            CacheClient::connect_with_connector(&addr, self.config(), crate::net::connector())
                .await?;
        self.conns.insert(
            node.to_owned(),
            Conn {
                client: client.clone(),
                since: now,
                inc,
            },
        );
        Ok(client)
    }
}

async fn call(client: &CacheClient, request: &Request) -> Outcome {
    let result = match request {
        Request::Get { key } => client
            .get(GROUP, Bytes::from(key.clone()))
            .await
            .map(|found| match found {
                Some(f) => Outcome::Value {
                    value: String::from_utf8_lossy(&f.value).into_owned(),
                    ttl_ms: f.ttl.map(millis),
                },
                None => Outcome::Miss,
            }),
        Request::Set { key, value, ttl_ms } => client
            .set(
                GROUP,
                Bytes::from(key.clone()),
                Bytes::from(value.clone()),
                ttl_ms.map(Duration::from_millis),
            )
            .await
            .map(|()| Outcome::Stored),
        Request::Delete { key } => client
            .delete(GROUP, Bytes::from(key.clone()))
            .await
            .map(|existed| Outcome::Deleted { existed }),
    };
    result.unwrap_or_else(|err| Outcome::Failed {
        kind: fail_kind(&err),
        message: short(&err),
    })
}

fn fail_kind(err: &ClientError) -> FailKind {
    match err {
        ClientError::DeadlineExceeded { .. } => FailKind::Timeout,
        ClientError::Unavailable { .. } => FailKind::Unavailable,
        ClientError::ResourceExhausted { .. } => FailKind::Overloaded,
        ClientError::InvalidAddress { .. }
        | ClientError::MessageTooLarge { .. }
        | ClientError::UnknownGroup { .. }
        | ClientError::InvalidArgument { .. } => FailKind::Invalid,
        // tonic reports some broken connections as UNKNOWN "transport error".
        ClientError::Failed { message, .. } if message.contains("transport error") => {
            FailKind::Unavailable
        }
        ClientError::Failed { .. } => FailKind::Other,
    }
}

fn short(err: &ClientError) -> String {
    let mut text = err.to_string();
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The software of a workload client host: `workers` sequential requesters until told to stop.
pub async fn client_software(ctx: ClientContext) -> turmoil::Result {
    let workers: Vec<_> = (0..ctx.options.workers)
        .map(|w| tokio::spawn(worker(ctx.clone(), w)))
        .collect();
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

async fn worker(ctx: ClientContext, w: usize) {
    let o = ctx.options.clone();
    let label = format!("{}.{w}", ctx.name);
    let mut rng = component_rng(o.seed, &format!("client/{label}"));
    let mut session = Session::new(label.clone(), ctx.clone());
    let nodes = o.node_names();
    let keys = o.key_names();
    let total: u32 = o.mix.iter().sum();
    let mut seq = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        let (Some(node), Some(key)) = (nodes.choose(&mut rng), keys.choose(&mut rng)) else {
            return;
        };
        let roll = rng.random_range(0..total.max(1));
        let key = key.clone();
        let request = if roll < o.mix[0] {
            Request::Get { key }
        } else if roll < o.mix[0] + o.mix[1] {
            let ttl = o.set_ttls.choose(&mut rng).copied().flatten();
            Request::Set {
                value: format!("S:{key}:{label}.{seq}"),
                key,
                ttl_ms: ttl.map(millis),
            }
        } else {
            Request::Delete { key }
        };
        seq += 1;
        session.perform(node, request, Phase::Safety).await;
        let think = rng.random_range(0..=millis(o.think_max));
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// The software of the verifier host: once the driver says the cluster converged, probe every
/// node-to-node path until it serves without fallbacks, then write keys (set, maybe delete),
/// wait out hot copies, and read every key on every live node (L2).
pub async fn verifier_software(
    ctx: ClientContext,
    mut go: watch::Receiver<bool>,
) -> turmoil::Result {
    go.wait_for(|go| *go).await?;
    let live = ctx.cluster.live();
    if live.is_empty() {
        return Ok(());
    }
    let mut session = Session::new("verifier".to_owned(), ctx.clone());
    probe_data_path(&mut session, &live).await;
    let mut rng = component_rng(ctx.options.seed, "verifier");
    let mut keys = ctx.options.key_names();
    keys.shuffle(&mut rng);
    keys.truncate(ctx.options.l2_keys);
    let names: Vec<String> = live.iter().map(|(name, _)| name.clone()).collect();
    for key in &keys {
        let set = |attempt: u32| Request::Set {
            key: key.clone(),
            value: format!("V:{key}:{attempt}"),
            ttl_ms: Some(L2_TTL_MS),
        };
        let mut acked = write(&mut session, &mut rng, &names, set).await;
        if acked && rng.random_bool(0.5) {
            let delete = |_| Request::Delete { key: key.clone() };
            acked = write(&mut session, &mut rng, &names, delete).await;
        }
        if !acked {
            ctx.history
                .record(Event::WriteNotAcknowledged { key: key.clone() });
        }
        record_owner_evictions(&ctx, &live, key);
    }
    tokio::time::sleep(ctx.options.hot_lifetime() + Duration::from_millis(200)).await;
    for key in &keys {
        for node in &names {
            let get = Request::Get { key: key.clone() };
            session.perform(node, get, Phase::L2Read).await;
        }
        record_owner_evictions(&ctx, &live, key);
    }
    Ok(())
}

/// Gets one key owned by each node through every other node until a round sees no fallback,
/// no peer error and no failure: connections broken by partitions are noticed and replaced
/// (turmoil's TCP never retransmits what a partition dropped).
async fn probe_data_path(session: &mut Session, live: &[(String, Running)]) {
    let Some((_, first)) = live.first() else {
        return;
    };
    let mut probe_keys: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..10_000 {
        if probe_keys.len() == live.len() {
            break;
        }
        let key = format!("p{i}");
        let owner = first.probe.owner(key.as_bytes()).id.to_string();
        probe_keys.entry(owner).or_insert(key);
    }
    let troubles = || -> u64 {
        live.iter()
            .map(|(_, r)| {
                let s = r.probe.group_stats();
                s.counters.fallbacks + s.counters.fetch_errors
            })
            .sum()
    };
    for round in 1..=MAX_PROBE_ROUNDS {
        let before = troubles();
        let mut clean = true;
        for (node, _) in live {
            for (owner, key) in &probe_keys {
                if owner == node {
                    continue;
                }
                let get = Request::Get { key: key.clone() };
                let outcome = session.perform(node, get, Phase::Probe).await;
                clean &= matches!(outcome, Outcome::Value { .. } | Outcome::Miss);
            }
        }
        if clean && troubles() == before {
            session.ctx.history.record(Event::DataPath {
                rounds: round,
                ready: true,
            });
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    session.ctx.history.record(Event::DataPath {
        rounds: MAX_PROBE_ROUNDS,
        ready: false,
    });
}

/// Sends the write made by `request(attempt)` to random live nodes until one acknowledges it.
async fn write(
    session: &mut Session,
    rng: &mut rand_chacha::ChaCha8Rng,
    names: &[String],
    request: impl Fn(u32) -> Request,
) -> bool {
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        let Some(node) = names.choose(rng) else {
            return false;
        };
        let outcome = session
            .perform(node, request(attempt), Phase::L2Write)
            .await;
        if matches!(outcome, Outcome::Stored | Outcome::Deleted { .. }) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

fn record_owner_evictions(ctx: &ClientContext, live: &[(String, Running)], key: &str) {
    let Some((_, first)) = live.first() else {
        return;
    };
    let owner = first.probe.owner(key.as_bytes()).id.to_string();
    let evictions = live
        .iter()
        .find(|(name, _)| *name == owner)
        .map_or(0, |(_, r)| r.probe.group_stats().evictions());
    ctx.history.record(Event::OwnerEvictions {
        key: key.to_owned(),
        owner,
        evictions,
    });
}
