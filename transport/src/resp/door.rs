//! What every connection of one RESP front door shares: its settings ([`RespConfig`]) and its
//! counters (for `INFO`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::convert::MAX_GROUP_NAME_BYTES;
use crate::error::ServeError;
use crate::resp::codec::{RequestLimits, MAX_INLINE_BYTES};

/// The Redis version LCache's replies follow, reported by `INFO` and `HELLO` for client
/// libraries that check it.
pub(crate) const REDIS_COMPAT_VERSION: &str = "7.0.0";

/// Settings of a RESP front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespConfig {
    /// The group every key of this front door belongs to (a RESP command names no group).
    pub group: String,
    /// Connections served at once; one more is answered `-ERR max number of clients reached`
    /// and closed (Redis's `maxclients`).
    pub max_connections: usize,
    /// Bounds on one request's arguments (Redis's `proto-max-bulk-len`, and a cap on their
    /// number).
    pub limits: RequestLimits,
    /// Largest request buffered while incomplete (Redis's `client-query-buffer-limit`); a client
    /// that exceeds it gets an error and is disconnected. Bounds each connection's read buffer.
    pub max_query_buffer_bytes: usize,
    /// Time each command is given (RESP requests carry no deadline of their own); the node
    /// also caps it with its own request timeout.
    pub request_timeout: Duration,
    /// Turns a connection yields to the runtime after answering, while other connections are
    /// being answered, before it waits for its next request: keeps a busy worker from blocking
    /// in the kernel and having to be woken by the next request. A lone connection never
    /// lingers, and only a runtime with one worker thread does (with several, an idle one
    /// blocks whatever the others do). 0 turns it off.
    pub linger_turns: u32,
}

impl Default for RespConfig {
    fn default() -> Self {
        let max_bulk_bytes = 1024 * 1024;
        RespConfig {
            group: "default".to_owned(),
            max_connections: 10_000,
            limits: RequestLimits {
                max_args: 1024 * 1024,
                max_bulk_bytes,
            },
            max_query_buffer_bytes: 2 * max_bulk_bytes + MAX_INLINE_BYTES,
            request_timeout: Duration::from_secs(5),
            linger_turns: 8,
        }
    }
}

impl RespConfig {
    /// Refuses settings that cannot serve: an empty or too long group name, zero caps.
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |reason: String| Err(ServeError::InvalidConfig(reason));
        if self.group.is_empty() || self.group.len() > MAX_GROUP_NAME_BYTES {
            return invalid(format!(
                "RESP group name must be 1 to {MAX_GROUP_NAME_BYTES} bytes, got {:?}",
                self.group
            ));
        }
        if self.max_connections == 0 || self.limits.max_args == 0 {
            return invalid("RESP max_connections and max_args must be at least 1".into());
        }
        if self.max_query_buffer_bytes < MAX_INLINE_BYTES {
            return invalid(format!(
                "RESP max_query_buffer_bytes must be at least {MAX_INLINE_BYTES} (one inline \
                 request), got {}",
                self.max_query_buffer_bytes
            ));
        }
        Ok(())
    }
}

/// Counters of a front door, reported by `INFO`.
#[derive(Debug, Default)]
pub(crate) struct RespStats {
    pub(super) connected: AtomicUsize,
    pub(super) connections_received: AtomicU64,
    pub(super) rejected_connections: AtomicU64,
    commands_processed: AtomicU64,
    linger_turns: AtomicU64,
}

/// A snapshot of [`RespStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RespCounts {
    pub(crate) connected: usize,
    pub(crate) connections_received: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) commands_processed: u64,
    pub(crate) linger_turns: u64,
}

impl RespStats {
    /// Adds one connection's batch of answered commands (once per batch, not per command, to
    /// keep the shared counter off the per-command path).
    pub(crate) fn commands_processed(&self, n: u64) {
        if n > 0 {
            self.commands_processed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Commands answered so far, by every connection: tells a connection whether others are
    /// being served (see [`Linger`](crate::resp::linger::Linger)).
    pub(crate) fn answered(&self) -> u64 {
        self.commands_processed.load(Ordering::Relaxed)
    }

    /// Adds the turns one connection lingered after an answer.
    pub(crate) fn lingered(&self, turns: u64) {
        if turns > 0 {
            self.linger_turns.fetch_add(turns, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> RespCounts {
        RespCounts {
            connected: self.connected.load(Ordering::Relaxed),
            connections_received: self.connections_received.load(Ordering::Relaxed),
            rejected_connections: self.rejected_connections.load(Ordering::Relaxed),
            commands_processed: self.commands_processed.load(Ordering::Relaxed),
            linger_turns: self.linger_turns.load(Ordering::Relaxed),
        }
    }
}

/// What every connection of one front door shares.
#[derive(Debug)]
pub(crate) struct FrontDoor {
    pub(crate) config: RespConfig,
    pub(crate) stats: RespStats,
    /// The turns a connection may linger: the configured ones on a runtime of one worker, else
    /// none (see [`Linger`](crate::resp::linger::Linger)).
    pub(crate) linger_turns: u32,
}
