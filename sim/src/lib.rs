//! Deterministic cluster simulation of LCache with turmoil: partitions, crashes, churn —
//! seeded and replayable.
//!
//! What runs is what ships: every node is the real [`lcache_node::Node`] runtime serving the
//! real gRPC server ([`lcache_node::server::run_with_incoming`] on a turmoil listener) and
//! calling peers through the real [`lcache_transport::GrpcTransport`] over turmoil's network.
//! Discovery is a simulated etcd on its own host ([`discovery`]), reached through the same
//! [`lcache_discovery::Discovery`] trait, so partitions cut nodes off from it too and leases
//! expire in simulated time. Client hosts run a seeded workload through the real
//! [`lcache_transport::CacheClient`].
//!
//! A run ([`run::run`]) is one `u64` seed. The seed picks the options ([`options`]: cluster
//! size, workload mix, fault rates — "swarm testing"), the fault schedule ([`faults`]), every
//! loader's and client's choices, and turmoil's own rng ([`rng`]); each host's tokio rng is
//! seeded by turmoil too (the workspace builds with `--cfg tokio_unstable`, see
//! `.cargo/config.toml`). A safety phase with faults is followed by a heal and a liveness phase
//! that demands convergence within a stated bound, then a verifier's writes and reads. The
//! ordered [`history`] of everything that happened is checked ([`checker`]: S1–S5, L1, L2 of
//! DESIGN.md) and hashed (S6: one seed, one trace hash).
//!
//! [`doubles`] holds deliberately broken components; the test suite shows the checkers catch
//! each of them.
#![warn(missing_docs)]

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
