//! Client hosts: the seeded workload of the safety phase, and the verifier of the liveness
//! phase. Both speak to nodes through the real [`CacheClient`] over turmoil and record every
//! request and response.
//!
//! The workload's workers are drawn from the seed: patient or impatient (tiny deadlines), some
//! cancelling requests mid-flight, some claiming to be a peer (`hops = 1`); bursts of
//! concurrent gets on one hot key exercise coalescing and admission.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcache_transport::{CacheClient, ClientConfig, ClientError};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::history::{
    millis, sim_now, Event, FailKind, History, Invocation, Outcome, Phase, Request,
};
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

/// How a requester behaves: its calls' timeout, and whether it claims to be a peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    pub(crate) call_timeout: Duration,
    pub(crate) as_peer: bool,
}

/// One requester (sequential, except where the verifier overlaps its own calls on purpose)
/// with its connections.
#[derive(Debug)]
pub(crate) struct Session {
    label: String,
    pub(crate) ctx: ClientContext,
    profile: Profile,
    conns: BTreeMap<String, Conn>,
}

/// One call, already recorded as invoked: its op id, the connection (`None`: connecting
/// failed, and that was recorded), what to send, and when to give up early.
#[derive(Debug, Clone)]
struct Call {
    op: u64,
    client: Option<CacheClient>,
    request: Request,
    /// Give up after this long (a cancellation mid-flight), if set.
    cancel_after: Option<Duration>,
}

impl Session {
    pub(crate) fn new(label: String, ctx: ClientContext) -> Self {
        let profile = Profile {
            call_timeout: ctx.options.call_timeout,
            as_peer: false,
        };
        Session {
            label,
            ctx,
            profile,
            conns: BTreeMap::new(),
        }
    }

    pub(crate) fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            connect_timeout: self.ctx.options.connect_timeout,
            request_timeout: self.profile.call_timeout,
            http2_keepalive_interval: Some(Duration::from_millis(500)),
            http2_keepalive_timeout: Duration::from_millis(500),
            http2_reset_stream_duration: RESET_STREAM_MEMORY,
            ..ClientConfig::default()
        }
    }

    /// Sends `request` to `node`, recording it and its outcome.
    pub(crate) async fn perform(&mut self, node: &str, request: Request, phase: Phase) -> Outcome {
        self.perform_cancelling(node, request, phase, None).await
    }

    /// Like [`Session::perform`], giving up after `cancel_after` if set.
    async fn perform_cancelling(
        &mut self,
        node: &str,
        request: Request,
        phase: Phase,
        cancel_after: Option<Duration>,
    ) -> Outcome {
        let call = self.prepare(node, request, phase, cancel_after).await;
        let failed_connect = call.client.is_none();
        let outcome = execute(&self.ctx.history, call).await;
        if failed_connect
            || matches!(
                outcome,
                Outcome::Failed {
                    kind: FailKind::Timeout | FailKind::Unavailable | FailKind::Connect,
                    ..
                }
            )
        {
            self.conns.remove(node);
        }
        outcome
    }

    /// Sends `request` to `node` in a task of its own (the verifier overlaps calls with it).
    pub(crate) async fn spawn(
        &mut self,
        node: &str,
        request: Request,
        phase: Phase,
    ) -> tokio::task::JoinHandle<Outcome> {
        let call = self.prepare(node, request, phase, None).await;
        let history = self.ctx.history.clone();
        tokio::spawn(async move { execute(&history, call).await })
    }

    /// Connects if needed and describes the call; a failed connection leaves `client` empty
    /// (the call then records a connect failure).
    async fn prepare(
        &mut self,
        node: &str,
        request: Request,
        phase: Phase,
        cancel_after: Option<Duration>,
    ) -> Call {
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
        let deadline = o.connect_timeout + self.profile.call_timeout;
        let op = self.ctx.history.invoke(Invocation {
            client: &self.label,
            node,
            request: request.clone(),
            phase,
            conn_since: since,
            deadline,
            as_peer: self.profile.as_peer,
        });
        let client = match self.client(node, inc, now).await {
            Ok(client) => Some(client),
            Err(err) => {
                self.ctx.history.record(Event::Return {
                    op,
                    outcome: Outcome::Failed {
                        kind: FailKind::Connect,
                        message: short(&err),
                    },
                });
                None
            }
        };
        Call {
            op,
            client,
            request,
            cancel_after,
        }
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
        let mut client =
            CacheClient::connect_with_connector(&addr, self.config(), crate::net::connector())
                .await?;
        if self.profile.as_peer {
            client = client.as_peer();
        }
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

/// Runs a prepared call (already recorded as invoked) and records its outcome. A call without a client already recorded its connect failure.
async fn execute(history: &History, call: Call) -> Outcome {
    let op = call.op;
    let Some(client) = call.client else {
        return Outcome::Failed {
            kind: FailKind::Connect,
            message: "connect failed".into(),
        };
    };
    let outcome = match call.cancel_after {
        Some(after) => {
            match tokio::time::timeout(after, self::call(&client, &call.request)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Failed {
                    kind: FailKind::Cancelled,
                    message: format!("cancelled by the client after {after:?}"),
                },
            }
        }
        None => self::call(&client, &call.request).await,
    };
    history.record(Event::Return {
        op,
        outcome: outcome.clone(),
    });
    outcome
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

/// The software of a workload client host: `workers` sequential requesters, and bursts of
/// concurrent gets of one hot key if the seed has them, until told to stop.
pub async fn client_software(ctx: ClientContext) -> turmoil::Result {
    let mut tasks: Vec<_> = (0..ctx.options.workers)
        .map(|w| tokio::spawn(worker(ctx.clone(), w)))
        .collect();
    if ctx.options.workload.bursts_per_minute > 0.0 {
        tasks.push(tokio::spawn(bursts(ctx.clone())));
    }
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// A worker's profile, drawn from the seed: impatient (a tiny call timeout) and/or claiming to
/// be a peer (`hops = 1`).
fn draw_profile(o: &Options, rng: &mut ChaCha8Rng) -> Profile {
    let w = &o.workload;
    let impatient = rng.random_range(0..100) < w.impatient_pct;
    let as_peer = rng.random_range(0..100) < w.as_peer_pct;
    let call_timeout = if impatient {
        Duration::from_millis(rng.random_range(1..=millis(w.tiny_deadline_max).max(1)))
    } else {
        o.call_timeout
    };
    Profile {
        call_timeout,
        as_peer,
    }
}

async fn worker(ctx: ClientContext, w: usize) {
    let o = ctx.options.clone();
    let label = format!("{}.{w}", ctx.name);
    let mut rng = component_rng(o.seed, &format!("client/{label}"));
    let profile = draw_profile(&o, &mut rng);
    let mut session = Session::new(label.clone(), ctx.clone()).with_profile(profile);
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
        let cancel = (rng.random_range(0..100) < o.workload.cancel_pct).then(|| {
            let max = millis(profile.call_timeout).max(2);
            Duration::from_millis(rng.random_range(1..max))
        });
        session
            .perform_cancelling(node, request, Phase::Safety, cancel)
            .await;
        let think = rng.random_range(0..=millis(o.think_max));
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// Bursts of concurrent gets of one hot key on one node, at exponential intervals; half of the
/// bursts are impatient (tiny deadlines), so admission and load caps get exercised.
async fn bursts(ctx: ClientContext) {
    let o = ctx.options.clone();
    let label = format!("{}.burst", ctx.name);
    let mut rng = component_rng(o.seed, &format!("bursts/{label}"));
    let nodes = o.node_names();
    let keys = o.key_names();
    let patient = Session::new(label.clone(), ctx.clone());
    let impatient = Session::new(label.clone(), ctx.clone()).with_profile(Profile {
        call_timeout: o.workload.tiny_deadline_max,
        as_peer: false,
    });
    let mut sessions = [patient, impatient];
    while !ctx.stop.load(Ordering::Relaxed) {
        let gap = -(1.0 - rng.random::<f64>()).ln() * 60.0 / o.workload.bursts_per_minute;
        tokio::time::sleep(Duration::from_secs_f64(gap.min(60.0))).await;
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let (Some(node), Some(key)) = (nodes.choose(&mut rng), keys.choose(&mut rng)) else {
            return;
        };
        let size = rng.random_range(2..=o.workload.burst_max.max(2));
        let session = &mut sessions[usize::from(rng.random_bool(0.5))];
        let mut calls = Vec::with_capacity(size);
        for _ in 0..size {
            let get = Request::Get { key: key.clone() };
            calls.push(session.spawn(node, get, Phase::Safety).await);
        }
        for call in calls {
            let _ = call.await;
        }
    }
}

/// The software of the verifier host: once the driver says the cluster converged, probe every
/// node-to-node path until it serves without fallbacks; read every workload key on every node
/// (whatever survived the faults must be the latest write or newer); write keys (set, maybe
/// delete), wait out hot copies and read every key on every live node (L2); then run the
/// targeted scenarios of [`crate::scenarios`].
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
    let names: Vec<String> = live.iter().map(|(name, _)| name.clone()).collect();
    for key in ctx.options.key_names() {
        for node in &names {
            let get = Request::Get { key: key.clone() };
            session.perform(node, get, Phase::Verify).await;
        }
    }
    let mut rng = component_rng(ctx.options.seed, "verifier");
    let mut keys = ctx.options.key_names();
    keys.shuffle(&mut rng);
    keys.truncate(ctx.options.l2_keys);
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
    crate::scenarios::run(&mut session, &live, &mut rng).await;
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
