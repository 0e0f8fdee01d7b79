//! The `lcache-bench` load generator: drives LCache, Redis and memcached with the same workload
//! and reports throughput, latency percentiles and the ratios between them.

pub mod backend;
pub mod cpu;
pub mod report;
pub mod run;
pub mod workload;
