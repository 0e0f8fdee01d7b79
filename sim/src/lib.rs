//! Deterministic cluster simulation of LCache with turmoil: partitions, crashes, churn, lease
//! loss, misbehaving loaders and impatient clients — seeded and replayable.
//!
//! What runs is what ships: every node is the real [`lcache_node::Node`] runtime serving the
//! real gRPC server ([`lcache_node::server::run_with_incoming`] on a turmoil listener) and
//! calling peers through the real [`lcache_transport::GrpcTransport`] over turmoil's network,
//! wrapped by [`recording::Recording`], which writes every peer call into the history.
//! Discovery is a simulated etcd on its own host ([`discovery`]), reached through the same
//! [`lcache_discovery::Discovery`] trait, so partitions cut nodes off from it too, leases expire
//! in simulated time, and watch events can be held back, duplicated, reordered or replayed from
//! an old watch. Client hosts run a seeded workload through the real
//! [`lcache_transport::CacheClient`]: patient and impatient workers, cancellations, bursts on a
//! hot key, clients that claim to be a peer (`hops = 1`).
//!
//! A run ([`run::run`]) is one `u64` seed. The seed picks the options ([`options`]: cluster
//! size, workload mix, caps, loader behaviour, fault rates — "swarm testing"), the fault
//! schedule ([`faults`]), every loader's and client's choices, and turmoil's own rng ([`rng`]);
//! each host's tokio rng is seeded by turmoil too (the workspace builds with
//! `--cfg tokio_unstable`, see `.cargo/config.toml`). A safety phase with faults is followed by
//! a heal and a liveness phase that demands convergence within a stated bound, then a verifier
//! reads and writes every key and runs targeted [`scenarios`]. The ordered [`history`] of
//! everything that happened is checked ([`checker`]: S1–S5, S7–S9, F1, C1, L1, L2 of DESIGN.md,
//! with clean and quiet windows computed from the history) and hashed (S6: one seed, one trace
//! hash).
//!
//! [`doubles`] holds deliberately broken components; the test suite shows the checkers catch
//! each of them. `sim/FINDINGS.md` lists what the simulation finds in the node.
//!
//! Node-facing code — what moves when the node's API changes — lives in [`node_host`],
//! [`recording`] and [`doubles`] only.
#![warn(missing_docs)]

pub mod buggify;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod discovery;
pub mod doubles;
pub mod faults;
pub mod history;
pub mod loader;
pub mod net;
pub mod node_host;
pub mod options;
pub mod recording;
pub mod rng;
pub mod run;
pub mod scenarios;

/// Whether this build seeds each simulated host's tokio rng (it needs `--cfg tokio_unstable`,
/// which `.cargo/config.toml` sets; a `RUSTFLAGS` environment variable replaces it). Without
/// it, tokio's select macro inside tonic, hyper and h2 picks branches at random and two runs of
/// one seed may differ.
pub const TOKIO_RNG_SEEDED: bool = cfg!(tokio_unstable);

pub use checker::Violation;
pub use options::{Mutation, Options};
pub use run::{run, RunReport};
