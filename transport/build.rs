//! Compiles `proto/lcache/v1/cache.proto` with protox (pure Rust, no `protoc` binary) and generates the
//! prost messages and tonic client/server code from the resulting descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/lcache/v1/cache.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile(["lcache/v1/cache.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .bytes(".lcache.v1")
        // Maps encode in key order, so a message always has the same bytes.
        .btree_map(".lcache.v1")
        // tonic's codec with small buffers (see src/codec.rs).
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
