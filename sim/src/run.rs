//! The driver of one run: builds the turmoil world, steps it, applies the fault schedule,
//! heals, demands convergence, lets the verifier run, then checks the history.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::watch;

use crate::checker::{check_all, Violation};
use crate::client::{client_software, verifier_software, ClientContext};
use crate::cluster::Cluster;
use crate::discovery::{registry_software, RegistryState, HOST as DISCOVERY};
use crate::faults::{schedule, FaultAction, Scheduled};
use crate::history::{millis, Entry, Event, History};
use crate::node_host::{node_software, NodeContext, NodeCtl};
use crate::options::{Mutation, Options};
use crate::rng::component_seed;

/// How often the driver checks convergence and node software after the heal.
const POLL: Duration = Duration::from_millis(50);
/// Simulated time the verifier may take after convergence.
const VERIFY_BUDGET: Duration = Duration::from_secs(90);
/// Events shown before a violation.
const CONTEXT_EVENTS: usize = 40;

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The options the seed gave.
    pub options: Options,
    /// XXH3-64 of the ordered history.
    pub trace_hash: u64,
    /// Simulated time the run took.
    pub sim_time: Duration,
    /// Requests the clients sent.
    pub requests: usize,
    /// Faults injected (repairs not counted).
    pub faults: usize,
    /// Time from the heal to convergence, if it converged.
    pub converged_after: Option<Duration>,
    /// The first property broken, if any.
    pub violation: Option<Violation>,
    /// The first violation of each property broken.
    pub violations: Vec<Violation>,
    /// The whole history.
    pub entries: Vec<Entry>,
}

impl RunReport {
    /// The one line every run prints (`violated=` lists the properties broken, comma
    /// separated; `scripts/sim-soak.sh` reads it).
    pub fn summary(&self) -> String {
        let mut violated: Vec<&str> = self.violations.iter().map(|v| v.property).collect();
        violated.sort_unstable();
        violated.dedup();
        format!(
            "seed={} trace_hash={:016x} sim_secs={} requests={} faults={} violated={}",
            self.options.seed,
            self.trace_hash,
            self.sim_time.as_secs(),
            self.requests,
            self.faults,
            violated.join(",")
        )
    }

    /// The violations the checkers find when they look only at requests, loads and peer calls
    /// for keys starting with `prefix` (and the rest of the history: faults, views, stats):
    /// isolates one scenario's findings from earlier violations of the same rule. Rules that
    /// count across keys (C1, the load cap) may read differently on the subset.
    pub fn violations_for_keys(&self, prefix: &str) -> Vec<Violation> {
        let mine = |key: &str| key.starts_with(prefix);
        let mut dropped_ops = BTreeSet::new();
        let mut dropped_calls = BTreeSet::new();
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .filter_map(|e| {
                let keep = match &e.event {
                    Event::Invoke { op, request, .. } if !mine(request.key()) => {
                        dropped_ops.insert(*op);
                        false
                    }
                    Event::Return { op, .. } => !dropped_ops.contains(op),
                    Event::LoadStart { key, .. } | Event::LoadEnd { key, .. } => mine(key),
                    Event::PeerCall {
                        node,
                        inc,
                        call,
                        key,
                        ..
                    } if !mine(key) => {
                        dropped_calls.insert((node.clone(), *inc, *call));
                        false
                    }
                    Event::PeerReturn {
                        node, inc, call, ..
                    } => !dropped_calls.contains(&(node.clone(), *inc, *call)),
                    Event::ForeignKeys { node, inc, keys } => {
                        let keys: Vec<String> = keys.iter().filter(|k| mine(k)).cloned().collect();
                        return (!keys.is_empty()).then(|| Entry {
                            at_us: e.at_us,
                            event: Event::ForeignKeys {
                                node: node.clone(),
                                inc: *inc,
                                keys,
                            },
                        });
                    }
                    _ => true,
                };
                keep.then(|| e.clone())
            })
            .collect();
        check_all(&entries, &self.options)
            .into_iter()
            .map(|v| Violation {
                message: format!("{} [{}]", v.message, entries[v.entry]),
                ..v
            })
            .collect()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let mutation = match self.options.mutation {
            Mutation::None => String::new(),
            m => format!("LCACHE_SIM_MUTATION={m} "),
        };
        format!(
            "{mutation}LCACHE_SIM_SEED={} cargo test -p lcache-sim --test sim sweep -- --nocapture",
            self.options.seed
        )
    }

    /// A failure report: seed, property, the events before it and how to replay; `None` if the
    /// run broke nothing.
    pub fn failure(&self) -> Option<String> {
        let v = self.violation.as_ref()?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "seed {} ({})",
            self.options.seed, self.options.mutation
        );
        let _ = writeln!(out, "{v}");
        for other in self
            .violations
            .iter()
            .filter(|o| (o.property, o.rule) != (v.property, v.rule))
        {
            let _ = writeln!(out, "also: {other}");
        }
        let from = v.entry.saturating_sub(CONTEXT_EVENTS);
        let _ = writeln!(out, "last {} events before it:", v.entry + 1 - from);
        for entry in self.entries.iter().take(v.entry + 1).skip(from) {
            let _ = writeln!(out, "  {entry}");
        }
        let _ = writeln!(out, "options: {:?}", self.options);
        let _ = writeln!(out, "replay: {}", self.replay_command());
        Some(out)
    }
}

/// Runs seed `seed` with `mutation` (use [`Mutation::None`] for the real system).
pub fn run(seed: u64, mutation: Mutation) -> RunReport {
    install_panic_hook();
    let options = Arc::new(Options::from_seed(seed, mutation));
    let history = History::new();
    let faults = schedule(&options);
    let late: BTreeSet<String> = options
        .node_names()
        .into_iter()
        .rev()
        .take(options.late_joiners)
        .collect();
    let cluster = Arc::new(Cluster::new(
        options
            .node_names()
            .iter()
            .map(|name| NodeCtl::new(name, !late.contains(name))),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (go, go_rx) = watch::channel(false);
    let limit = options.heal_at() + options.convergence_bound() + VERIFY_BUDGET;
    let mut sim = turmoil::Builder::new()
        .rng_seed(component_seed(seed, "turmoil"))
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(limit + Duration::from_secs(60))
        .tick_duration(options.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(options.latency_max)
        .tcp_capacity(4_096)
        .build();

    let registry = RegistryState::new();
    let h = history.clone();
    sim.host(DISCOVERY, move || {
        registry_software(registry.clone(), h.clone())
    });
    for ctl in cluster.ctls() {
        let ctx = NodeContext {
            ctl: ctl.clone(),
            options: options.clone(),
            history: history.clone(),
        };
        sim.host(ctl.name(), move || node_software(ctx.clone()));
    }
    let client_ctx = |name: &str| ClientContext {
        name: name.to_owned(),
        options: options.clone(),
        history: history.clone(),
        cluster: cluster.clone(),
        stop: stop.clone(),
    };
    for name in options.client_names() {
        sim.client(name.as_str(), client_software(client_ctx(&name)));
    }
    sim.client("verifier", verifier_software(client_ctx("verifier"), go_rx));

    let mut driver = Driver {
        options: &options,
        history: &history,
        cluster: &cluster,
        stop: &stop,
        go: &go,
        links: BTreeMap::new(),
        crashed: BTreeSet::new(),
        discovery_down: false,
        latency_spiked: false,
        stalled: BTreeSet::new(),
        faults: 0,
    };
    let converged_after = driver.drive(&mut sim, &faults, limit);
    let sim_time = sim.elapsed();
    let faults_injected = driver.faults;
    drop(sim);
    let entries = history.entries();
    let mut violations = check_all(&entries, &options);
    if history.overflowed() {
        violations.push(Violation {
            property: "S5",
            rule: "",
            message: "the history overflowed its bound".into(),
            entry: entries.len().saturating_sub(1),
        });
    }
    let violation = violations.iter().min_by_key(|v| v.entry).cloned();
    RunReport {
        options: (*options).clone(),
        trace_hash: crate::history::trace_hash(&entries),
        sim_time,
        requests: entries
            .iter()
            .filter(|e| matches!(e.event, Event::Invoke { .. }))
            .count(),
        faults: faults_injected,
        converged_after,
        violation,
        violations,
        entries,
    }
}

struct Driver<'a> {
    options: &'a Options,
    history: &'a History,
    cluster: &'a Cluster,
    stop: &'a AtomicBool,
    go: &'a watch::Sender<bool>,
    /// Faulted links and the fault on each.
    links: BTreeMap<(String, String), FaultAction>,
    crashed: BTreeSet<String>,
    discovery_down: bool,
    latency_spiked: bool,
    /// Nodes whose discovery watch is stalled.
    stalled: BTreeSet<String>,
    faults: usize,
}

impl Driver<'_> {
    /// Steps the world until every client finished, a host failed, convergence timed out or
    /// `limit` passed. Returns the time convergence took.
    fn drive(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        faults: &[Scheduled],
        limit: Duration,
    ) -> Option<Duration> {
        let heal_at = self.options.heal_at();
        let bound = self.options.convergence_bound();
        let quiesce = heal_at
            + self.options.connect_timeout
            + self.options.call_timeout
            + Duration::from_secs(2);
        let mut next_fault = 0;
        let mut healed = false;
        let mut converged: Option<Duration> = None;
        let mut go_sent = false;
        let mut next_poll = Duration::ZERO;
        loop {
            let now = sim.elapsed();
            self.history.set_driver_time(now);
            while let Some(fault) = faults.get(next_fault).filter(|f| f.at <= now) {
                self.apply(sim, fault.action.clone());
                next_fault += 1;
            }
            if !healed && now >= heal_at {
                self.heal(sim, bound);
                healed = true;
            }
            if now >= next_poll {
                next_poll = now + POLL;
                if let Some(stopped) = self.stopped_node(sim) {
                    self.history.record(Event::HostError(format!(
                        "the software of {stopped} stopped on its own"
                    )));
                    return converged;
                }
                if healed && converged.is_none() {
                    match self.convergence() {
                        Ok(()) => {
                            let after = now - heal_at;
                            self.history.record(Event::Converged {
                                after_ms: millis(after),
                            });
                            converged = Some(after);
                        }
                        Err(detail) if now > heal_at + bound => {
                            self.history.record(Event::ConvergenceTimeout { detail });
                            return None;
                        }
                        Err(_) => {}
                    }
                }
            }
            if converged.is_some() && !go_sent && now >= quiesce {
                self.go.send_replace(true);
                go_sent = true;
            }
            if now >= limit {
                self.history.record(Event::HostError(format!(
                    "the run did not finish within {limit:?} of simulated time"
                )));
                return converged;
            }
            if let Some(panic) = take_panic() {
                self.history
                    .record(Event::HostError(format!("panic: {panic}")));
                return converged;
            }
            // A host whose runtime shuts down on a task's panic makes turmoil's step panic;
            // that is a host failure of the run, not of the test process.
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.step()));
            let Ok(stepped) = stepped else {
                self.history.set_driver_time(sim.elapsed());
                let panic = take_panic().unwrap_or_else(|| "a host's runtime panicked".into());
                self.history
                    .record(Event::HostError(format!("panic: {panic}")));
                return converged;
            };
            match stepped {
                Ok(true) => return converged,
                Ok(false) => {}
                Err(err) => {
                    self.history.set_driver_time(sim.elapsed());
                    let panic = take_panic().map(|p| format!(" (panic: {p})"));
                    self.history.record(Event::HostError(format!(
                        "{err}{}",
                        panic.unwrap_or_default()
                    )));
                    return converged;
                }
            }
        }
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, action: FaultAction) {
        if action.is_fault() {
            self.faults += 1;
        }
        self.history.record(Event::Fault(action.clone()));
        match &action {
            FaultAction::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
            FaultAction::PartitionOneway(a, b) => sim.partition_oneway(a.as_str(), b.as_str()),
            FaultAction::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
            FaultAction::Repair(a, b) => sim.repair(a.as_str(), b.as_str()),
            FaultAction::Release(a, b) => sim.release(a.as_str(), b.as_str()),
            FaultAction::Crash(n) => {
                if let Some(ctl) = self.cluster.ctl(n) {
                    ctl.clear_running();
                }
                self.crash_silently(sim, n);
                self.crashed.insert(n.clone());
            }
            FaultAction::Restart(n) => {
                sim.bounce(n.as_str());
                self.crashed.remove(n);
            }
            FaultAction::Leave(n) | FaultAction::Join(n) => {
                if let Some(ctl) = self.cluster.ctl(n) {
                    ctl.set_up(matches!(action, FaultAction::Join(_)));
                }
            }
            FaultAction::SlowLink(a, b, max) => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), *max)
            }
            FaultAction::FastLink(a, b) => {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), self.options.latency_max)
            }
            FaultAction::LatencySpike(max) => {
                sim.set_max_message_latency(*max);
                self.latency_spiked = true;
            }
            FaultAction::LatencyReset => {
                sim.set_max_message_latency(self.options.latency_max);
                self.latency_spiked = false;
            }
            FaultAction::DiscoveryDown => {
                self.crash_silently(sim, DISCOVERY);
                self.discovery_down = true;
            }
            FaultAction::DiscoveryUp => {
                sim.bounce(DISCOVERY);
                self.discovery_down = false;
            }
            FaultAction::StallWatch(n) | FaultAction::ResumeWatch(n) => {
                let stall = matches!(action, FaultAction::StallWatch(_));
                if let Some(ctl) = self.cluster.ctl(n) {
                    ctl.stall_watch(stall);
                }
                if stall {
                    self.stalled.insert(n.clone());
                } else {
                    self.stalled.remove(n);
                }
            }
        }
        if let Some((a, b)) = action.link() {
            let pair = (a.to_owned(), b.to_owned());
            if action.is_fault() {
                self.links.insert(pair, action);
            } else {
                self.links.remove(&pair);
            }
        }
    }

    /// Crashes host `name` so that nothing it sends while its runtime is torn down leaves it.
    ///
    /// A crash drops the host's tokio runtime, and tokio shuts tasks down in an order that
    /// depends on process-global task ids; the FIN/RST segments the dropped sockets send would
    /// then draw turmoil's rng (latency) in that order, and two runs of a seed would differ.
    /// Cutting the host's outgoing links for the moment of the crash makes the teardown silent
    /// (a crashed machine sends no goodbyes either); the links are then put back as they were.
    fn crash_silently(&self, sim: &mut turmoil::Sim<'_>, name: &str) {
        let others: Vec<String> = self.hosts().into_iter().filter(|h| h != name).collect();
        for other in &others {
            sim.partition_oneway(name, other.as_str());
        }
        sim.crash(name);
        for other in &others {
            let (a, b) = if name <= other.as_str() {
                (name.to_owned(), other.clone())
            } else {
                (other.clone(), name.to_owned())
            };
            match self.links.get(&(a, b)) {
                None | Some(FaultAction::SlowLink(..)) => sim.repair_oneway(name, other.as_str()),
                Some(FaultAction::Partition(..)) => {}
                Some(FaultAction::PartitionOneway(from, to)) => {
                    sim.repair(from.as_str(), to.as_str());
                    sim.partition_oneway(from.as_str(), to.as_str());
                }
                Some(FaultAction::Hold(a, b)) => sim.hold(a.as_str(), b.as_str()),
                Some(_) => {}
            }
        }
    }

    /// Every host of the run.
    fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![DISCOVERY.to_owned()];
        hosts.extend(self.options.node_names());
        hosts.extend(self.options.client_names());
        hosts.push("verifier".to_owned());
        hosts
    }

    /// Repairs every link, restores latency and discovery, stops the workload; nodes that are
    /// down stay down (their departure must show in the views) unless fewer than two would
    /// serve.
    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, bound: Duration) {
        for (_, fault) in std::mem::take(&mut self.links) {
            let repair = match fault {
                FaultAction::Hold(a, b) => FaultAction::Release(a, b),
                FaultAction::Partition(a, b) | FaultAction::PartitionOneway(a, b) => {
                    FaultAction::Repair(a, b)
                }
                FaultAction::SlowLink(a, b, _) => FaultAction::FastLink(a, b),
                _ => continue,
            };
            self.apply(sim, repair);
        }
        if self.latency_spiked {
            self.apply(sim, FaultAction::LatencyReset);
        }
        if self.discovery_down {
            self.apply(sim, FaultAction::DiscoveryUp);
        }
        for node in std::mem::take(&mut self.stalled) {
            self.apply(sim, FaultAction::ResumeWatch(node));
        }
        let mut down: Vec<String> = self
            .cluster
            .ctls()
            .filter(|ctl| !ctl.desired_up() || self.crashed.contains(ctl.name()))
            .map(|ctl| ctl.name().to_owned())
            .collect();
        while self.options.nodes - down.len() < 2 && !down.is_empty() {
            let name = down.remove(0);
            let action = if self.crashed.contains(&name) {
                FaultAction::Restart(name)
            } else {
                FaultAction::Join(name)
            };
            self.apply(sim, action);
        }
        self.stop.store(true, Ordering::Relaxed);
        let live = self
            .cluster
            .ctls()
            .map(|ctl| ctl.name().to_owned())
            .filter(|name| !down.contains(name))
            .collect();
        self.history.record(Event::Heal {
            bound_ms: millis(bound),
            live,
        });
    }

    /// A node whose software ended although it was neither crashed nor asked to leave.
    fn stopped_node(&self, sim: &mut turmoil::Sim<'_>) -> Option<String> {
        self.cluster
            .ctls()
            .map(|ctl| ctl.name())
            .find(|name| !self.crashed.contains(*name) && !sim.is_host_running(*name))
            .map(str::to_owned)
    }

    /// `Ok` when every live node serves, routes to exactly the live set (ids and incarnations)
    /// and all agree on every key's owner; else what differs.
    fn convergence(&self) -> Result<(), String> {
        let mut want = Vec::new();
        let mut probes = Vec::new();
        for ctl in self.cluster.ctls() {
            if !ctl.desired_up() || self.crashed.contains(ctl.name()) {
                continue;
            }
            let running = ctl
                .running()
                .ok_or_else(|| format!("{} is not serving yet", ctl.name()))?;
            want.push((ctl.name().to_owned(), running.inc));
            probes.push((ctl.name().to_owned(), running.probe));
        }
        for (name, probe) in &probes {
            let got: Vec<(String, u64)> = probe
                .members()
                .into_iter()
                .map(|m| (m.id.to_string(), m.incarnation))
                .collect();
            if got != want {
                return Err(format!(
                    "{name} routes to {got:?}, the live set is {want:?}"
                ));
            }
        }
        for key in self.options.key_names() {
            let owners: BTreeSet<String> = probes
                .iter()
                .map(|(_, p)| p.owner(key.as_bytes()).id.to_string())
                .collect();
            if owners.len() > 1 {
                return Err(format!("nodes disagree on the owner of {key}: {owners:?}"));
            }
        }
        Ok(())
    }
}

thread_local! {
    /// Panics seen on this thread (a run and its hosts all run on the thread that calls [`run`]).
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Chains a panic hook that remembers each panic's message on its thread, so the driver can
/// report a panic inside a host (which tokio turns into a silently stopped runtime).
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The simulated source panics on purpose; whether the node contains it is for the
            // checkers to judge (a panic that escapes takes its host down, which they see).
            let deliberate = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.contains(crate::loader::DELIBERATE_PANIC));
            if deliberate {
                return;
            }
            let _ = PANICS.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    p.push(info.to_string());
                }
            });
            previous(info);
        }));
    });
    let _ = PANICS.try_with(|p| p.borrow_mut().clear());
}

fn take_panic() -> Option<String> {
    PANICS
        .try_with(|p| p.borrow_mut().drain(..).next())
        .ok()
        .flatten()
}
