//! `lcache-node`: runs one LCache node. With no arguments it serves a single node on
//! 127.0.0.1:7001 hosting the `default` group.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use lcache_core::limits::Limits;
use lcache_discovery::{parse_peers, Discovery, StaticDiscovery};
use lcache_node::server::RespFrontDoor;
use lcache_node::spec::{parse_duration, parse_group_with, parse_size};
use lcache_node::{GroupConfig, Node, NodeConfig, DEFAULT_GROUP};
use lcache_transport::resp::{RequestLimits, RespConfig, MAX_INLINE_BYTES};
use lcache_transport::{ClientConfig, GrpcTransport, ServerConfig, TlsConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Membership backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiscoveryKind {
    /// A fixed peer list (`--peers`).
    Static,
    /// etcd (lease + keepalive + watch).
    Etcd,
}

#[derive(Debug, Parser)]
#[command(name = "lcache-node", version, about = "Run an LCache cache node")]
struct Args {
    /// This node's id in the cluster.
    #[arg(long, default_value = "node-1")]
    node_id: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Address peers and clients dial (defaults to --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Static peers: ID=HOST:PORT,... (this node may be included).
    #[arg(long, default_value = "")]
    peers: String,
    /// Membership backend.
    #[arg(long, value_enum, default_value_t = DiscoveryKind::Static)]
    discovery: DiscoveryKind,
    /// etcd client URLs, comma-separated (with --discovery etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// Cluster name; members register under /lcache/<cluster>/members/ (required with
    /// --discovery etcd).
    #[arg(long)]
    cluster: Option<String>,
    /// TTL of the etcd registration lease: a crashed node leaves peers' views within it.
    #[arg(long, default_value = "10s")]
    etcd_lease_ttl: String,
    /// Seed of the jitter of etcd retries (default: a stable hash of --node-id).
    #[arg(long)]
    etcd_seed: Option<u64>,
    /// A group: NAME[:budget=64MiB,policy=lru2,ttl=30s,shards=16,hot=8MiB,hot-ttl=2s,
    /// miss-ttl=1s,miss-budget=2MiB,origin=http://HOST:PORT/PATH/{key}].
    /// Repeatable; without any, the node hosts the `default` group.
    #[arg(long = "group", value_name = "SPEC")]
    groups: Vec<String>,
    /// Incarnation of this node (raise it on restart so peers can tell lives apart). With
    /// --discovery etcd it is only a floor: etcd derives a larger one on each registration.
    #[arg(long, default_value_t = 0)]
    incarnation: u64,
    /// Largest key accepted, in bytes.
    #[arg(long, default_value = "250")]
    max_key_bytes: String,
    /// Largest value accepted.
    #[arg(long, default_value = "1MiB")]
    max_value_bytes: String,
    /// Requests served at once; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Callers that may wait on one key's load or fetch at once; more are refused
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = 10_000)]
    max_waiters_per_key: usize,
    /// Loader runs at once over all groups; a get that would start one more is refused
    /// (RESOURCE_EXHAUSTED). A load keeps its slot until the loader returns, even if its callers
    /// gave up.
    #[arg(long, default_value_t = NodeConfig::DEFAULT_MAX_LOADS)]
    max_loads: usize,
    /// Client connections held at once; more are closed as soon as they are accepted.
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Requests (HTTP/2 streams) one connection may have open at once.
    #[arg(long, default_value_t = ServerConfig::DEFAULT_STREAMS_PER_CONNECTION)]
    max_streams_per_connection: u32,
    /// Bytes of request bodies held at once over all connections; a request past it is refused
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, default_value = "64MiB")]
    max_request_bytes: String,
    /// Deadline of requests that carry none (and cap of those that do).
    #[arg(long, default_value = "5s")]
    request_timeout: String,
    /// Transit allowance of a peer call: a forwarded get waits for the key's owner up to
    /// --load-timeout plus this (a slow but healthy owner is waited for); a write's
    /// invalidations wait up to this.
    #[arg(long, default_value = "2s")]
    peer_timeout: String,
    /// Longest a loader may run.
    #[arg(long, default_value = "10s")]
    load_timeout: String,
    /// Longest a graceful shutdown takes in total: deregister, stop accepting, drain.
    #[arg(long, default_value = "10s")]
    shutdown_grace: String,
    /// Also serve the Redis protocol (RESP2) on this address, e.g. 127.0.0.1:6379, for
    /// redis-cli and Redis client libraries [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    resp_listen: Option<SocketAddr>,
    /// The group the RESP port serves (a RESP command names no group).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_GROUP)]
    resp_group: String,
    /// RESP connections served at once; more are refused (Redis's maxclients).
    #[arg(long, default_value_t = 10_000)]
    resp_max_connections: usize,
    /// Turns a RESP connection yields to the runtime after answering, while other connections
    /// are being answered, before it waits for its next request: spares the clients the cost of
    /// waking an idle worker when many of them send one request at a time. A lone connection
    /// never lingers, and only a node on one tokio worker thread (TOKIO_WORKER_THREADS=1)
    /// does: with several, an idle worker blocks whatever the others do. 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = RespConfig::default().linger_turns)]
    resp_linger_turns: u32,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// This node's TLS certificate (PEM, chain allowed). With --tls-key and --tls-ca it turns on
    /// mutual TLS for the gRPC port and peer calls: clients and peers must present a
    /// certificate signed by --tls-ca, and peers' certificates are verified against it.
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// The CA certificate(s) every client and peer certificate must chain to (PEM).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Verify peers' certificates for this name instead of the host of their address (for
    /// nodes sharing one certificate name).
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// CA of etcd's certificate, with https:// --etcd-endpoints [default: --tls-ca].
    #[arg(long, value_name = "PEM")]
    etcd_tls_ca: Option<PathBuf>,
    /// Certificate presented to etcd (with --etcd-tls-key) [default: --tls-cert].
    #[arg(long, value_name = "PEM")]
    etcd_tls_cert: Option<PathBuf>,
    /// Key of --etcd-tls-cert [default: --tls-key].
    #[arg(long, value_name = "PEM")]
    etcd_tls_key: Option<PathBuf>,
}

impl Args {
    /// The node's settings; `bound` is the address the listener got (port 0 resolved).
    fn node_config(&self, bound: SocketAddr) -> Result<NodeConfig> {
        let advertise = match &self.advertise {
            Some(addr) => addr.clone(),
            None if bound.ip().is_unspecified() => {
                bail!(
                    "--listen {} is a wildcard address: give --advertise HOST:PORT",
                    self.listen
                )
            }
            None => bound.to_string(),
        };
        let limits = Limits {
            max_key_bytes: usize::try_from(parse_size(&self.max_key_bytes)?)?,
            max_value_bytes: usize::try_from(parse_size(&self.max_value_bytes)?)?,
        };
        let groups = if self.groups.is_empty() {
            vec![GroupConfig::new(DEFAULT_GROUP)]
        } else {
            self.groups
                .iter()
                .map(|spec| parse_group_with(spec, &limits))
                .collect::<Result<_, _>>()?
        };
        let mut config = NodeConfig::new(self.node_id.as_str(), advertise).with_groups(groups);
        config.incarnation = self.incarnation;
        config.limits = limits;
        config.max_in_flight = self.max_in_flight;
        config.max_loads = self.max_loads;
        config.max_waiters_per_key = self.max_waiters_per_key;
        config.request_timeout = parse_duration(&self.request_timeout)?;
        config.peer_timeout = parse_duration(&self.peer_timeout)?;
        config.load_timeout = parse_duration(&self.load_timeout)?;
        config.shutdown_grace = parse_duration(&self.shutdown_grace)?;
        Ok(config)
    }

    /// The gRPC server's settings for a node configured as `config`.
    fn server_config(&self, config: &NodeConfig) -> Result<ServerConfig> {
        Ok(ServerConfig {
            max_message_bytes: message_limit(&config.limits),
            // A forwarded get may wait for the owner's whole load.
            max_request_timeout: config.request_timeout.max(config.forward_timeout()),
            max_connections: self.max_connections,
            max_concurrent_streams: Some(self.max_streams_per_connection),
            concurrency_limit_per_connection: Some(self.max_streams_per_connection as usize),
            max_request_bytes: usize::try_from(parse_size(&self.max_request_bytes)?)?,
            ..ServerConfig::default()
        })
    }

    /// The RESP front door's settings: its group, and request bounds derived from the node's
    /// key and value limits (one argument holds at most a key or a value; the query buffer holds
    /// a `SET` of the largest key and value).
    fn resp_config(&self, node: &NodeConfig) -> Result<RespConfig> {
        let limits = &node.limits;
        if !node
            .groups
            .iter()
            .any(|group| group.name == self.resp_group)
        {
            bail!(
                "--resp-group {:?} is not one of this node's groups (--group)",
                self.resp_group
            );
        }
        let defaults = RespConfig::default();
        let config = RespConfig {
            group: self.resp_group.clone(),
            max_connections: self.resp_max_connections,
            limits: RequestLimits {
                max_bulk_bytes: limits.max_key_bytes.max(limits.max_value_bytes),
                ..defaults.limits
            },
            max_query_buffer_bytes: (limits.max_key_bytes
                + limits.max_value_bytes
                + MAX_INLINE_BYTES)
                .max(defaults.max_query_buffer_bytes),
            request_timeout: node.request_timeout,
            linger_turns: self.resp_linger_turns,
        };
        config.validate()?;
        Ok(config)
    }

    /// The mutual TLS settings of the gRPC port and peer calls, if `--tls-*` ask for them.
    fn tls(&self) -> Result<Option<TlsConfig>> {
        let tls = TlsConfig::from_optional_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
        )?;
        Ok(match (tls, &self.tls_server_name) {
            (Some(tls), Some(name)) => Some(tls.with_server_name(name)?),
            (tls, None) => tls,
            (None, Some(_)) => bail!("--tls-server-name needs --tls-cert, --tls-key and --tls-ca"),
        })
    }

    /// Binds the metrics port if `--metrics-listen` asks for one.
    async fn metrics_listener(&self) -> Result<Option<tokio::net::TcpListener>> {
        let Some(addr) = self.metrics_listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        Ok(Some(listener))
    }

    /// Binds the RESP port if `--resp-listen` asks for one.
    async fn resp_front_door(&self, node: &NodeConfig) -> Result<Option<RespFrontDoor>> {
        let Some(addr) = self.resp_listen else {
            return Ok(None);
        };
        let config = self.resp_config(node)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for RESP on {addr}"))?;
        Ok(Some(RespFrontDoor { listener, config }))
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is *called* (not when
/// the future is first polled), so calling it first thing in `main` means a signal at any moment
/// after the process started leads to a graceful shutdown — even one that arrives while the node
/// is still joining the cluster.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                biased;
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received");
            }
        })
    }
}

/// mimalloc: every request allocates (HTTP/2 frames, headers, the request and response
/// messages), and it is measurably cheaper than the system allocator on that path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option that makes it give freed memory back to the OS at once.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc return freed memory to the OS at once, so a node's resident memory follows
/// what it holds (its budgets) instead of its high-water mark: after a burst of large requests
/// mimalloc otherwise keeps the freed pages until the process allocates again, which an idle
/// node may not do (measured: 159 MiB kept after a flood of 1 MiB writes, 46 MiB with this).
/// mimalloc reads its options when the process starts, before `main`, so if the option is not
/// set the process starts itself again with it (same pid, same arguments); an operator can set
/// it to anything else, and that is kept.
#[cfg(unix)]
fn return_freed_memory() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(PURGE_DELAY, "0")
        .exec();
    // Only reached if the exec failed: carry on with mimalloc's defaults.
    let _ = err;
}

#[cfg(not(unix))]
fn return_freed_memory() {}

fn main() -> Result<()> {
    return_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

/// Parses the arguments, starts the node and serves it until a signal.
async fn run() -> Result<()> {
    let shutdown = shutdown_signal()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let config = args.node_config(bound)?;
    let tls = args.tls()?;
    if tls.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(addr = %bound,
            "serving plain text on a non-loopback address: anyone who reaches it can read and \
             write the cache; give --tls-cert, --tls-key and --tls-ca for mutual TLS");
    }
    let mut server_config = args.server_config(&config)?;
    server_config.tls = tls.clone();
    let client_config = ClientConfig {
        request_timeout: config.request_timeout,
        connect_timeout: config.peer_timeout,
        max_message_bytes: server_config.max_message_bytes,
        ..ClientConfig::default()
    };
    let transport = match tls {
        Some(tls) => GrpcTransport::with_tls(client_config, tls),
        None => GrpcTransport::new(client_config),
    };
    let serving = Serving {
        server_config,
        listener,
        resp: args.resp_front_door(&config).await?,
        metrics: args.metrics_listener().await?,
    };
    match args.discovery {
        DiscoveryKind::Static => {
            let discovery = StaticDiscovery::new(parse_peers(&args.peers)?);
            let node = Node::start(config, transport, discovery).await?;
            serve(node, serving, shutdown).await
        }
        DiscoveryKind::Etcd => run_etcd(&args, config, transport, serving, shutdown).await,
    }
}

/// What a started node is served on.
struct Serving {
    server_config: ServerConfig,
    listener: tokio::net::TcpListener,
    resp: Option<RespFrontDoor>,
    metrics: Option<tokio::net::TcpListener>,
}

/// Serves `node` (and its metrics) until SIGINT/SIGTERM, then shuts down gracefully.
async fn serve<D: Discovery>(
    node: Node<GrpcTransport, D>,
    serving: Serving,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics = serving.metrics.map(|listener| {
        tokio::spawn(lcache_node::metrics::serve(
            listener,
            node.metrics(),
            stop_metrics.clone().cancelled_owned(),
        ))
    });
    let report = lcache_node::server::run_with_resp(
        node,
        serving.server_config,
        serving.listener,
        serving.resp,
        shutdown,
    )
    .await;
    stop_metrics.cancel();
    if let Some(task) = metrics {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "the metrics endpoint failed"),
            Err(err) => tracing::warn!(error = %err, "the metrics endpoint's task failed"),
        }
    }
    tracing::info!(report = ?report?, "bye");
    Ok(())
}

/// Largest message: the largest key and value plus the request's other fields and framing.
fn message_limit(limits: &Limits) -> usize {
    limits.max_value_bytes + limits.max_key_bytes + 4096
}

/// Serve with etcd discovery until SIGINT/SIGTERM; shutting down revokes the lease.
#[cfg(feature = "etcd")]
async fn run_etcd(
    args: &Args,
    config: NodeConfig,
    transport: GrpcTransport,
    serving: Serving,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let Some(cluster) = args.cluster.as_deref() else {
        bail!("--discovery etcd needs --cluster NAME");
    };
    let mut etcd = lcache_discovery::EtcdConfig::new(args.etcd_endpoints.iter().cloned(), cluster)
        .with_lease_ttl(parse_duration(&args.etcd_lease_ttl)?);
    etcd.seed = args.etcd_seed;
    etcd.tls = etcd_tls(args)?;
    let discovery = lcache_discovery::EtcdDiscovery::new(etcd)?;
    let node = Node::start(config, transport, discovery).await?;
    serve(node, serving, shutdown).await
}

/// TLS to etcd when its endpoints are https:// URLs: `--etcd-tls-*`, else the node's `--tls-*`.
#[cfg(feature = "etcd")]
fn etcd_tls(args: &Args) -> Result<Option<lcache_discovery::EtcdTls>> {
    if !args
        .etcd_endpoints
        .iter()
        .any(|e| e.starts_with("https://"))
    {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let Some(ca) = args.etcd_tls_ca.as_ref().or(args.tls_ca.as_ref()) else {
        bail!("https:// etcd endpoints need --etcd-tls-ca (or --tls-ca)");
    };
    let identity = match (&args.etcd_tls_cert, &args.etcd_tls_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        (None, None) => match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
        _ => bail!("--etcd-tls-cert and --etcd-tls-key go together"),
    };
    Ok(Some(lcache_discovery::EtcdTls {
        ca_pem: read(ca)?,
        identity,
    }))
}

/// Without the `etcd` feature there is no etcd client in the binary.
#[cfg(not(feature = "etcd"))]
async fn run_etcd(
    _args: &Args,
    _config: NodeConfig,
    _transport: GrpcTransport,
    _serving: Serving,
    _shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    bail!(
        "this lcache-node was built without etcd support; rebuild it with \
         `cargo build --features lcache-node/etcd` (needs protoc) or use --discovery static"
    )
}
