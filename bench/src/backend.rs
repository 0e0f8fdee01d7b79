//! The systems the load generator drives: LCache over gRPC, Redis over RESP and memcached over its
//! text protocol. Workers may share connections where the client multiplexes (LCache, Redis);
//! memcached's client needs exclusive access, so each memcached worker has its own connection.

use anyhow::{bail, Context, Result};
use async_memcached::AsciiProtocol;
use bytes::Bytes;
use lcache_transport::proto;
use lcache_transport::{CacheClient, ClientConfig};
use std::fmt;
use std::time::Duration;

/// tonic's generated `lcache.v1.Cache` client over tonic's own channel.
pub type TonicClient = proto::cache_client::CacheClient<tonic::transport::Channel>;

/// Timeout of one request, the same for every backend.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of establishing one connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which protocol a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An LCache node (or several, connections spread round-robin), gRPC `lcache.v1`.
    Lcache,
    /// An LCache node over gRPC through tonic's own `Channel` and the generated client, instead
    /// of LCache's `CacheClient` (a hand-written HTTP/2 client): measures what that client saves.
    LcacheTonic,
    /// An LCache node's RESP front door (`lcache-node --resp-listen`), through the same Redis
    /// client as [`Kind::Redis`].
    LcacheResp,
    /// A redis-server, RESP (`GET`/`SET`) on a multiplexed connection.
    Redis,
    /// A memcached, text protocol (`get`/`set`).
    Memcached,
}

impl Kind {
    /// Whether several workers can have calls in flight on one connection of this kind at once
    /// (LCache's HTTP/2 client and Redis's multiplexed connection can; async-memcached's client
    /// cannot, it takes `&mut self` for every call).
    pub fn multiplexes(self) -> bool {
        match self {
            Kind::Lcache | Kind::LcacheTonic | Kind::LcacheResp | Kind::Redis => true,
            Kind::Memcached => false,
        }
    }

    /// Whether the target is LCache (over either protocol): ratios compare these to the others.
    pub fn is_lcache(self) -> bool {
        matches!(self, Kind::Lcache | Kind::LcacheTonic | Kind::LcacheResp)
    }

    /// How many connections to open for `workers` workers when asked for `connections`: at most
    /// `connections` (and no more than there are workers) for a kind that multiplexes, one per
    /// worker otherwise.
    pub fn connections_for(self, connections: usize, workers: usize) -> usize {
        if self.multiplexes() {
            connections.min(workers)
        } else {
            workers
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Lcache => "LCache",
            Kind::LcacheTonic => "LCache (tonic Channel)",
            Kind::LcacheResp => "LCache (RESP)",
            Kind::Redis => "Redis",
            Kind::Memcached => "memcached",
        })
    }
}

/// One system under test: `NAME=KIND://HOST:PORT[,HOST:PORT...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Label in the report, e.g. `lcache-1`.
    pub name: String,
    /// Protocol.
    pub kind: Kind,
    /// Addresses; connection `i` goes to `addrs[i % addrs.len()]`.
    pub addrs: Vec<String>,
}

impl Target {
    /// Parses `NAME=KIND://HOST:PORT[,HOST:PORT...]` with KIND `lcache` (gRPC, LCache's client),
    /// `tonic` (gRPC, tonic's `Channel`), `resp` (an LCache RESP port), `redis` or `memcached`.
    pub fn parse(spec: &str) -> Result<Target> {
        let Some((name, url)) = spec.split_once('=') else {
            bail!("target {spec:?} is not NAME=KIND://HOST:PORT");
        };
        let Some((kind, addrs)) = url.split_once("://") else {
            bail!("target {spec:?}: expected KIND://HOST:PORT");
        };
        let kind = match kind {
            "lcache" => Kind::Lcache,
            "tonic" => Kind::LcacheTonic,
            "resp" | "lcache-resp" => Kind::LcacheResp,
            "redis" => Kind::Redis,
            "memcached" | "memcache" => Kind::Memcached,
            other => {
                bail!("unknown target kind {other:?} (expected lcache, tonic, resp, redis, memcached)")
            }
        };
        let addrs: Vec<String> = addrs
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if name.trim().is_empty() || addrs.is_empty() {
            bail!("target {spec:?} needs a name and at least one address");
        }
        if addrs
            .iter()
            .any(|a| a.contains('/') || a.rsplit_once(':').is_none())
        {
            bail!("target {spec:?}: addresses are HOST:PORT");
        }
        Ok(Target {
            name: name.trim().to_owned(),
            kind,
            addrs,
        })
    }

    /// Opens connection number `index` (to `addrs[index % len]`).
    pub async fn connect(&self, index: usize, group: &str) -> Result<Conn> {
        let Some(addr) = self.addrs.get(index % self.addrs.len().max(1)) else {
            bail!("{}: no address to connect to", self.name);
        };
        let connecting = async {
            Ok::<_, anyhow::Error>(match self.kind {
                Kind::Lcache => {
                    let config = ClientConfig {
                        connect_timeout: CONNECT_TIMEOUT,
                        request_timeout: REQUEST_TIMEOUT,
                        ..ClientConfig::default()
                    };
                    Conn::Lcache {
                        client: CacheClient::connect(addr, config).await?,
                        group: group.to_owned(),
                    }
                }
                Kind::LcacheTonic => {
                    let channel =
                        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                            .connect_timeout(CONNECT_TIMEOUT)
                            .timeout(REQUEST_TIMEOUT)
                            .tcp_nodelay(true)
                            .connect()
                            .await?;
                    Conn::Tonic {
                        client: TonicClient::new(channel),
                        group: group.to_owned(),
                    }
                }
                Kind::Redis | Kind::LcacheResp => {
                    let client = redis::Client::open(format!("redis://{addr}/"))?;
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(REQUEST_TIMEOUT));
                    Conn::Redis(
                        client
                            .get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    )
                }
                Kind::Memcached => {
                    Conn::Memcached(async_memcached::Client::new(format!("tcp://{addr}")).await?)
                }
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .with_context(|| format!("{}: connecting to {addr} timed out", self.name))?
            .with_context(|| format!("{}: cannot connect to {addr}", self.name))
    }
}

/// One worker's handle on a connection to a target. LCache and Redis handles may share their
/// connection with other workers' (see [`Conn::share`]); a memcached handle owns its own.
pub enum Conn {
    /// An LCache client (its own HTTP/2 connection) and the group it reads and writes.
    Lcache {
        /// The client.
        client: CacheClient,
        /// The group.
        group: String,
    },
    /// tonic's generated client over tonic's `Channel` (its own HTTP/2 connection).
    Tonic {
        /// The client.
        client: TonicClient,
        /// The group.
        group: String,
    },
    /// A Redis connection (to a redis-server or to an LCache RESP port).
    Redis(redis::aio::MultiplexedConnection),
    /// A memcached connection.
    Memcached(async_memcached::Client),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conn::Lcache { .. } => "Conn::Lcache",
            Conn::Tonic { .. } => "Conn::Tonic",
            Conn::Redis(_) => "Conn::Redis",
            Conn::Memcached(_) => "Conn::Memcached",
        })
    }
}

impl Conn {
    /// Another handle on the same connection, for another worker, if the connection multiplexes
    /// concurrent calls (`None` for memcached).
    pub fn share(&self) -> Option<Conn> {
        match self {
            Conn::Lcache { client, group } => Some(Conn::Lcache {
                client: client.clone(),
                group: group.clone(),
            }),
            Conn::Tonic { client, group } => Some(Conn::Tonic {
                client: client.clone(),
                group: group.clone(),
            }),
            Conn::Redis(conn) => Some(Conn::Redis(conn.clone())),
            Conn::Memcached(_) => None,
        }
    }

    /// Reads `key`; `Ok(true)` on a hit.
    pub async fn get(&mut self, key: &Bytes) -> Result<bool> {
        Ok(match self {
            Conn::Lcache { client, group } => client.get(group, key.clone()).await?.is_some(),
            Conn::Tonic { client, group } => {
                let request = proto::GetRequest {
                    group: group.clone(),
                    key: key.clone(),
                    hops: 0,
                };
                match client.get(with_deadline(request)).await {
                    Ok(_) => true,
                    Err(status) if status.code() == tonic::Code::NotFound => false,
                    Err(status) => bail!("get failed: {status}"),
                }
            }
            Conn::Redis(conn) => redis::cmd("GET")
                .arg(key.as_ref())
                .query_async::<Option<Vec<u8>>>(conn)
                .await?
                .is_some(),
            Conn::Memcached(conn) => conn.get(key).await?.is_some(),
        })
    }

    /// Writes `value` under `key`, without expiry.
    pub async fn set(&mut self, key: &Bytes, value: &Bytes) -> Result<()> {
        match self {
            Conn::Lcache { client, group } => {
                client.set(group, key.clone(), value.clone(), None).await?;
            }
            Conn::Tonic { client, group } => {
                let request = proto::SetRequest {
                    group: group.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    ttl_ms: None,
                    hops: 0,
                };
                client.set(with_deadline(request)).await?;
            }
            Conn::Redis(conn) => {
                redis::cmd("SET")
                    .arg(key.as_ref())
                    .arg(value.as_ref())
                    .query_async::<()>(conn)
                    .await?;
            }
            Conn::Memcached(conn) => conn.set(key, value.as_ref(), None, None).await?,
        }
        Ok(())
    }
}

/// A tonic request carrying `grpc-timeout` (as LCache's client sends it).
fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(REQUEST_TIMEOUT);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("lcache-3=lcache://127.0.0.1:1,127.0.0.1:2").unwrap();
        assert_eq!(t.kind, Kind::Lcache);
        assert_eq!(t.addrs.len(), 2);
        assert_eq!(
            Target::parse("m=memcached://127.0.0.1:11211").unwrap().kind,
            Kind::Memcached
        );
        let resp = Target::parse("lcache-resp=resp://127.0.0.1:6380").unwrap();
        assert_eq!(resp.kind, Kind::LcacheResp);
        assert!(resp.kind.is_lcache() && resp.kind.multiplexes());
        for bad in [
            "redis://127.0.0.1:1",
            "x=ftp://127.0.0.1:1",
            "x=redis://",
            "=redis://127.0.0.1:1",
            "x=redis://127.0.0.1",
            "x=redis://127.0.0.1:1/0",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connections_for_workers() {
        // Multiplexing kinds share at most the asked-for connections among the workers.
        assert_eq!(Kind::Lcache.connections_for(4, 32), 4);
        assert_eq!(Kind::Redis.connections_for(1, 32), 1);
        assert_eq!(Kind::Lcache.connections_for(32, 32), 32);
        // Never more connections than workers.
        assert_eq!(Kind::Redis.connections_for(32, 8), 8);
        // memcached: one connection per worker, whatever was asked.
        assert_eq!(Kind::Memcached.connections_for(4, 32), 32);
        assert_eq!(Kind::Memcached.connections_for(32, 8), 8);
    }
}
