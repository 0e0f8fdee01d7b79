//! The RESP front door: serves a [`CacheHandler`](crate::CacheHandler) over the Redis protocol
//! (RESP2), so `redis-cli`, `redis-benchmark` and Redis client libraries can use an LCache node.
//!
//! Every command goes through the same handler as a gRPC request (owner routing, loader,
//! singleflight, hot cache, admission). A front door serves one group ([`RespConfig::group`]):
//! a RESP command names no group, so the port is the group.
//!
//! Commands: `GET`, `SET` (with `EX`/`PX`), `DEL`, `EXISTS`, `MGET`, `PING`, `ECHO`, `QUIT`,
//! `INFO`, and what client libraries send when they connect (`HELLO 2`, `CLIENT SETNAME`/
//! `SETINFO`/`ID`/`GETNAME`, `COMMAND`, `SELECT 0`, `CONFIG GET`). Anything else answers
//! `-ERR unknown command ...` and the connection stays usable.
//!
//! - [`codec`]: the request decoder and reply encoder (a `tokio_util` codec).
//! - `commands`: the command table, arity and option parsing.
//! - `session`: one connection's read → answer → write loop.
//! - `linger`: when a connection keeps its worker awake for the next request.
//! - `info`: the `INFO` text.
//! - `server`: the listener, the connection cap and shutdown.

pub mod codec;
mod commands;
mod door;
mod info;
mod linger;
mod server;
mod session;

pub use codec::{
    Args, Parsed, ProtocolError, Reply, Request, RequestLimits, RespCodec, MAX_INLINE_BYTES,
};
pub use door::RespConfig;
pub use server::{serve, serve_with_incoming};
