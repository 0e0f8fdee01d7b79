//! What one gRPC get allocates, server and client together (an in-process server and client on
//! loopback, the allocator instrumented): tonic's codec started every request's decode buffer
//! and every answer's encode buffer at 8 KiB, a size the allocator keeps few of per page, and a
//! node whose allocator gives empty pages back to the OS at once (as `lcache-node`'s does) then
//! faulted them in again on nearly every get: 32 µs of CPU per get instead of 12 with 100,000
//! keys (README, Measured). Measured here: 25,685 bytes per get with those buffers, 10,324 with
//! the service's own codec (`src/codec.rs`), 2,400 with the HTTP/2 server of `src/h2server.rs`,
//! 1,760 once a connection reuses the allocation of a stream answered at its first poll.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::alloc::System;

use common::{Fake, TestServer, GROUP};
use lcache_transport::{CacheClient, ClientConfig, ServerConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Gets measured after the warm-up.
const GETS: usize = 500;

#[tokio::test(flavor = "current_thread")]
async fn a_get_of_a_small_value_allocates_no_8_kib_codec_buffers() {
    let server = TestServer::start(Fake::new(), ServerConfig::default()).await;
    let client = CacheClient::connect(&server.addr.to_string(), ClientConfig::default())
        .await
        .unwrap();
    client.set(GROUP, "k", vec![b'v'; 100], None).await.unwrap();
    for _ in 0..100 {
        client.get(GROUP, "k").await.unwrap().unwrap();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..GETS {
        client.get(GROUP, "k").await.unwrap().unwrap();
    }
    let stats = region.change();
    let per_get = stats.bytes_allocated / GETS;
    println!(
        "MEASURED one get of 100 B, server and client: {per_get} bytes in {} allocations",
        stats.allocations / GETS
    );
    assert!(
        per_get < 16 * 1024,
        "{per_get} bytes allocated per get: 8 KiB codec buffers per call are back"
    );
    // 1,760 bytes on 2026-12-06 (later); 2,400 while every stream's future got an allocation of its
    // own (640 bytes) even when it was answered at its first poll; 4,692 while each stream's
    // future still carried the request's head (an `async fn` keeps its arguments in its state,
    // twice: 1,536 bytes per stream) and every header map was allocated for six entries at its
    // first insert (624 + 32 bytes each).
    assert!(
        per_get < 2_000,
        "{per_get} bytes allocated per get: is a stream's future allocated afresh again, or has it grown?"
    );
}
