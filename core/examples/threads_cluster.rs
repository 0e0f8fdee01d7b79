//! The core without tokio: three LCache group state machines, each on a plain `std::thread`,
//! talking over `std::sync::mpsc` channels instead of gRPC. The threads are the runtime; every
//! decision (routing, singleflight, what to keep, invalidation) is the core's.
//!
//! Run it with `cargo run -p lcache-core --example threads_cluster`. It sets and reads keys through
//! every node, checks that each read sees the latest write, that a key nobody set is loaded once
//! on its owner however many nodes ask, and exits non-zero if anything is off.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lcache_core::group::{
    FetchOutcome, Fetched, FlightRef, GetStep, Group, GroupSettings, LoadOutcome, LoadSlots,
    Refusal, Reply, UnappliedSet, Work, WriteStep,
};
use lcache_core::{Member, MemberId, Policy, RingChange, RingConfig, Router, Timestamp};

/// The error of this runtime: the core's refusals, or a peer that did not answer.
#[derive(Debug, Clone)]
enum Error {
    Refused(Refusal),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}

/// Who waits on a flight: a client, or a peer's fetch.
enum Waiter {
    Client(Sender<Reply<Error>>),
    Peer {
        to: Sender<Message>,
        flight: FlightRef,
    },
}

/// What a node thread receives.
enum Message {
    Get {
        key: Bytes,
        forwarded: bool,
        waiter: Waiter,
    },
    Set {
        key: Bytes,
        value: Bytes,
        forwarded: bool,
        done: Sender<()>,
    },
    Invalidate {
        key: Bytes,
        done: Sender<()>,
    },
    Loaded {
        flight: FlightRef,
        value: Option<Bytes>,
    },
    Fetched {
        flight: FlightRef,
        reply: Reply<Error>,
    },
    Stop,
}

/// One node: its group, its peers' inboxes, its clock and its loader's call counter.
struct Node {
    group: Group<Waiter, Error>,
    inbox: Sender<Message>,
    peers: BTreeMap<MemberId, Sender<Message>>,
    epoch: Instant,
    loads: Arc<AtomicUsize>,
}

impl Node {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Serves messages until told to stop.
    fn run(mut self, inbox: Receiver<Message>) {
        while let Ok(message) = inbox.recv() {
            match message {
                Message::Get {
                    key,
                    forwarded,
                    waiter,
                } => self.get(key, forwarded, waiter),
                Message::Set {
                    key,
                    value,
                    forwarded,
                    done,
                } => self.set(key, value, forwarded, done),
                Message::Invalidate { key, done } => {
                    self.group.invalidate(&key);
                    let _ = done.send(());
                }
                Message::Loaded { flight, value } => {
                    let outcome = match value {
                        Some(value) => LoadOutcome::Value(Fetched { value, ttl: None }),
                        None => LoadOutcome::Missing,
                    };
                    let completion = self.group.loaded(&flight, outcome, self.now());
                    self.complete(completion);
                }
                Message::Fetched { flight, reply } => {
                    let outcome = FetchOutcome::Answered(reply);
                    let completion = self.group.fetched(&flight, outcome, self.now());
                    self.complete(completion);
                }
                Message::Stop => return,
            }
        }
    }

    fn get(&mut self, key: Bytes, forwarded: bool, waiter: Waiter) {
        let mut waiter = Some(waiter);
        let step = self.group.get(&key, forwarded, self.now(), || {
            waiter.take().expect("asked once")
        });
        match step {
            GetStep::Reply(reply) => answer(waiter.expect("not queued"), reply),
            GetStep::Wait => {}
            GetStep::Start(work) => self.start(work),
        }
    }

    /// Starts a load (on a worker thread, like a slow database) or a fetch (a message to the owner).
    fn start(&mut self, work: Work) {
        match work {
            Work::Load { flight, permit } => {
                let inbox = self.inbox.clone();
                let loads = self.loads.clone();
                thread::spawn(move || {
                    let _slot = permit;
                    loads.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20));
                    let value =
                        Bytes::from(format!("row:{}", String::from_utf8_lossy(flight.key())));
                    let _ = inbox.send(Message::Loaded {
                        flight,
                        value: Some(value),
                    });
                });
            }
            Work::Fetch { flight, owner } => {
                let waiter = Waiter::Peer {
                    to: self.inbox.clone(),
                    flight: flight.clone(),
                };
                let _ = self.peers[&owner.id].send(Message::Get {
                    key: flight.key().clone(),
                    forwarded: true,
                    waiter,
                });
            }
        }
    }

    fn complete(&mut self, completion: lcache_core::group::Completion<Waiter, Error>) {
        for delivery in completion.deliveries {
            for waiter in delivery.waiters {
                answer(waiter, delivery.reply.clone());
            }
        }
        if let Some(work) = completion.start {
            self.start(work);
        }
    }

    /// Applies a write where the core says, invalidating the other nodes before acknowledging.
    fn set(&mut self, key: Bytes, value: Bytes, forwarded: bool, done: Sender<()>) {
        match self
            .group
            .set(key.clone(), value, None, forwarded, self.now())
        {
            WriteStep::Applied { peers, .. } => {
                for peer in peers {
                    let (ack, acked) = channel();
                    let _ = self.peers[&peer.id].send(Message::Invalidate {
                        key: key.clone(),
                        done: ack,
                    });
                    // A peer answers its inbox in order; a stopped one would just not answer.
                    let _ = acked.recv_timeout(Duration::from_secs(1));
                }
                let _ = done.send(());
            }
            WriteStep::Forward {
                owner,
                write: UnappliedSet { value, .. },
            } => {
                // Forward, and acknowledge once the owner did; the owner's invalidation of this
                // node arrives on this node's inbox, so wait for the ack on a helper thread.
                let to = self.peers[&owner.id].clone();
                let inbox = self.inbox.clone();
                thread::spawn(move || {
                    let (ack, acked) = channel();
                    let _ = to.send(Message::Set {
                        key: key.clone(),
                        value,
                        forwarded: true,
                        done: ack,
                    });
                    let _ = acked.recv_timeout(Duration::from_secs(1));
                    let (forgot, forgotten) = channel();
                    let _ = inbox.send(Message::Invalidate { key, done: forgot });
                    let _ = forgotten.recv_timeout(Duration::from_secs(1));
                    let _ = done.send(());
                });
            }
            other => panic!("a client write was refused: {other:?}"),
        }
    }
}

fn answer(waiter: Waiter, reply: Reply<Error>) {
    match waiter {
        Waiter::Client(to) => {
            let _ = to.send(reply);
        }
        Waiter::Peer { to, flight } => {
            let _ = to.send(Message::Fetched { flight, reply });
        }
    }
}

fn settings(seed: u64) -> GroupSettings {
    GroupSettings {
        name: "rows".into(),
        budget_bytes: 1 << 20,
        policy: Policy::lru2(),
        shards: 4,
        default_ttl: None,
        hot: Some(lcache_core::group::HotSettings {
            budget_bytes: 1 << 17,
            lifetime: Duration::from_secs(5),
        }),
        misses: None,
        max_waiters_per_key: 1_000,
        has_loader: true,
        hash_seed: seed,
    }
}

fn main() {
    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|id| Member::new(*id, format!("thread:{id}"), 0))
        .collect();
    let inboxes: Vec<(Sender<Message>, Receiver<Message>)> =
        members.iter().map(|_| channel()).collect();
    let peers: BTreeMap<MemberId, Sender<Message>> = members
        .iter()
        .zip(&inboxes)
        .map(|(m, (tx, _))| (m.id.clone(), tx.clone()))
        .collect();
    let loads = Arc::new(AtomicUsize::new(0));
    let slots = LoadSlots::new(64);
    let mut handles = Vec::new();
    for (i, (member, (tx, rx))) in members.iter().zip(inboxes).enumerate() {
        let mut router = Router::new(member.clone(), RingConfig::default());
        let others: Vec<RingChange> = members
            .iter()
            .filter(|m| m.id != member.id)
            .cloned()
            .map(RingChange::Added)
            .collect();
        router.apply(&others);
        let node = Node {
            group: Group::new(settings(i as u64), Arc::new(router), slots.clone()).unwrap(),
            inbox: tx,
            peers: peers.clone(),
            epoch: Instant::now(),
            loads: loads.clone(),
        };
        handles.push(thread::spawn(move || node.run(rx)));
    }
    let nodes: Vec<Sender<Message>> = members.iter().map(|m| peers[&m.id].clone()).collect();
    let get = |node: usize, key: &str| -> Option<String> {
        let (tx, rx) = channel();
        nodes[node]
            .send(Message::Get {
                key: Bytes::from(key.to_owned()),
                forwarded: false,
                waiter: Waiter::Client(tx),
            })
            .unwrap();
        let reply = rx.recv_timeout(Duration::from_secs(5)).expect("an answer");
        match reply {
            Ok(found) => found.map(|f| String::from_utf8(f.value.to_vec()).unwrap()),
            Err(Error::Refused(refusal)) => panic!("node {node} refused a get: {refusal}"),
        }
    };
    let set = |node: usize, key: &str, value: &str| {
        let (tx, rx) = channel();
        nodes[node]
            .send(Message::Set {
                key: Bytes::from(key.to_owned()),
                value: Bytes::from(value.to_owned()),
                forwarded: false,
                done: tx,
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("acknowledged");
    };

    let mut failures = Vec::new();
    // Every node reads a key nobody set: the owner loads it once, the others fetch it.
    let readers: Vec<_> = (0..3)
        .map(|node| {
            let got = get(node, "user:42");
            (node, got)
        })
        .collect();
    for (node, got) in &readers {
        println!("node {} get user:42 -> {got:?}", members[*node].id);
        if got.as_deref() != Some("row:user:42") {
            failures.push(format!("node {node} read {got:?}"));
        }
    }
    // A write through any node is what every node reads next (copies were invalidated).
    for (round, writer) in [(1, 0usize), (2, 1), (3, 2)] {
        let value = format!("v{round}");
        set(writer, "user:42", &value);
        for reader in 0..3 {
            let got = get(reader, "user:42");
            println!(
                "after set {value} on {}: node {} reads {got:?}",
                members[writer].id, members[reader].id
            );
            if got.as_deref() != Some(value.as_str()) {
                failures.push(format!("after {value}, node {reader} read {got:?}"));
            }
        }
    }
    let loaded = loads.load(Ordering::SeqCst);
    println!("loader calls: {loaded}");
    if loaded != 1 {
        failures.push(format!("the loader ran {loaded} times, not once"));
    }
    for node in &nodes {
        let _ = node.send(Message::Stop);
    }
    for handle in handles {
        let _ = handle.join();
    }
    if !failures.is_empty() {
        println!("FAILED: {failures:?}");
        std::process::exit(1);
    }
    println!("ok: every read saw the latest write, and the key was loaded once");
}
