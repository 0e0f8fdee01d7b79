//! The `lcache-bench` load generator: drives LCache, Redis and memcached with the same workload
//! and reports throughput, latency percentiles and the ratios between them.
//!
//! A package of its own, so the node library does not depend on Redis or memcached clients.
#![warn(missing_docs)]

pub mod backend;
pub mod cpu;
pub mod report;
pub mod run;
pub mod workload;
