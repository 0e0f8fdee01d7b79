//! `lcache-bench`: a closed-loop load generator that runs the same workload against LCache,
//! Redis and memcached, one target after another (interleaved over rounds), and prints ops/s,
//! p50/p99/p99.9 latency and the LCache / Redis and LCache / memcached ratios as markdown.
//!
//! ```sh
//! lcache-bench --target lcache-1=lcache://127.0.0.1:7001 \
//!   --target redis=redis://127.0.0.1:6379 --target memcached=memcached://127.0.0.1:11211 \
//!   --scenario dist=uniform,value=100,read=1 --scenario dist=zipf,value=4KiB,read=0.9 \
//!   --connections 32 --duration 3s --rounds 3
//! ```
//!
//! `--workers N` runs N concurrent workers over the `--connections` connections (worker i on
//! connection i % connections), so LCache's HTTP/2 and Redis's multiplexed connections carry
//! several calls at once; memcached keeps one connection per worker.
//!
//! The report goes to stdout (and `--markdown`); progress and other logs go to stderr through
//! `tracing` (`RUST_LOG` filters them; `--quiet` keeps only warnings).
#![allow(clippy::print_stdout)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use lcache_bench::backend::Target;
use lcache_bench::cpu::CpuClock;
use lcache_bench::report::{markdown, ScenarioReport, Summary};
use lcache_bench::run::{connect_all, preload, run, Load};
use lcache_bench::workload::{keys, value, Scenario};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The same allocator as `lcache-node`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "lcache-bench",
    version,
    about = "Load generator: LCache vs Redis vs memcached"
)]
struct Args {
    /// A system under test: NAME=KIND://HOST:PORT[,HOST:PORT...], KIND is lcache, redis or
    /// memcached. Repeatable; every target runs every scenario.
    #[arg(long = "target", value_name = "SPEC", required = true)]
    targets: Vec<String>,
    /// Server processes of a target, for CPU accounting: NAME=PID[,PID...]. Repeatable.
    #[arg(long = "pids", value_name = "NAME=PIDS")]
    pids: Vec<String>,
    /// A workload: dist=uniform|zipf[:S],value=SIZE,read=RATIO. Repeatable
    /// [default: dist=uniform,value=100,read=1].
    #[arg(long = "scenario", value_name = "SPEC")]
    scenarios: Vec<String>,
    /// Connections per target (for LCache: one client, i.e. one HTTP/2 connection, each). The
    /// workers share them: worker i uses connection i % connections. memcached's client cannot
    /// multiplex, so memcached always gets one connection per worker.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent closed-loop workers per target, each with one request in flight
    /// [default: --connections, i.e. one connection per worker].
    #[arg(long)]
    workers: Option<usize>,
    /// Keys in the key space; all are written before a scenario is measured.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Measured time of one round of one target.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Stop a round after this many measured operations (if reached before --duration).
    #[arg(long)]
    ops: Option<u64>,
    /// Unmeasured time before each round.
    #[arg(long, default_value = "1s")]
    warmup: String,
    /// Rounds per scenario; targets take turns within a round, medians are reported.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Worker threads of the generator's tokio runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Root seed of the key choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// LCache group to use.
    #[arg(long, default_value = "default")]
    group: String,
    /// Also write the markdown report to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
    /// Only the report and warnings: no progress or per-round lines.
    #[arg(long)]
    quiet: bool,
}

/// A duration such as `3s` or `500ms`.
fn parse_duration(input: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(input.trim())
        .with_context(|| format!("{input:?} is not a duration (e.g. 3s, 500ms)"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let default_level = if args.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let workers = args.workers.unwrap_or(args.connections);
    if args.threads == 0
        || args.connections == 0
        || workers == 0
        || args.rounds == 0
        || args.keys == 0
    {
        bail!("--threads, --connections, --workers, --rounds and --keys must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = runtime.block_on(bench_all(&args, workers))?;
    println!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report)
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!("report written to {}", path.display());
    }
    Ok(())
}

/// Parses `NAME=PID[,PID...]` options.
fn parse_pids(specs: &[String]) -> Result<BTreeMap<String, Vec<u32>>> {
    let mut pids = BTreeMap::new();
    for spec in specs {
        let Some((name, list)) = spec.split_once('=') else {
            bail!("--pids {spec:?} is not NAME=PID[,PID...]");
        };
        let list = list
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--pids {spec:?}: bad pid"))?;
        pids.insert(name.trim().to_owned(), list);
    }
    Ok(pids)
}

/// Runs every scenario against every target with `workers` workers each; returns the report.
async fn bench_all(args: &Args, workers: usize) -> Result<String> {
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>>>()?;
    let pids = parse_pids(&args.pids)?;
    let scenarios = if args.scenarios.is_empty() {
        vec![Scenario::parse("")?]
    } else {
        args.scenarios
            .iter()
            .map(|s| Scenario::parse(s))
            .collect::<Result<Vec<_>>>()?
    };
    let load = Load {
        keys: args.keys,
        warmup: parse_duration(&args.warmup)?,
        duration: parse_duration(&args.duration)?,
        ops: args.ops,
        seed: args.seed,
        progress: !args.quiet,
    };
    let keys = Arc::new(keys(load.keys));
    let clocks: Vec<CpuClock> = targets
        .iter()
        .map(|t| CpuClock::new(pids.get(&t.name).cloned().unwrap_or_default()))
        .collect();

    let mut conns = Vec::with_capacity(targets.len());
    for target in &targets {
        tracing::info!(
            "connecting {} connection(s) for {workers} workers to {} ({})",
            target.kind.connections_for(args.connections, workers),
            target.name,
            target.addrs.join(",")
        );
        conns.push(Some(
            connect_all(target, args.connections, workers, &args.group).await?,
        ));
    }

    let mut reports = Vec::with_capacity(scenarios.len());
    for scenario in &scenarios {
        tracing::info!("scenario: {}", scenario.name());
        let value = value(scenario.value_bytes);
        for (target, slot) in targets.iter().zip(conns.iter_mut()) {
            tracing::info!("preloading {} keys into {}", keys.len(), target.name);
            let taken = slot.take().context("connections lost")?;
            *slot = Some(preload(taken, &keys, &value).await?);
        }
        let mut summaries = targets
            .iter()
            .map(Summary::new)
            .collect::<Result<Vec<_>>>()?;
        for round in 0..args.rounds {
            // Rotate the order each round, so no target always runs first (or right after
            // another's warm-up).
            for j in 0..targets.len() {
                let i = (j + round) % targets.len();
                let label = format!("{} round {}/{}", targets[i].name, round + 1, args.rounds);
                let taken = conns[i].take().context("connections lost")?;
                let (back, result) = run(&label, taken, scenario, &load, &keys, &clocks[i]).await?;
                conns[i] = Some(back);
                tracing::info!(
                    "{label}: {:.0} ops/s, p50 {:.0} µs, p99 {:.0} µs, errors {}{}",
                    result.throughput(),
                    result.latency.value_at_quantile(0.5) as f64 / 1000.0,
                    result.latency.value_at_quantile(0.99) as f64 / 1000.0,
                    result.errors,
                    result
                        .first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default(),
                );
                summaries[i].add(&result)?;
            }
        }
        reports.push(ScenarioReport {
            name: scenario.name(),
            targets: summaries,
        });
    }
    let sharing = if workers == args.connections {
        format!("{workers} connections per target (one request in flight each)")
    } else {
        let shared = args.connections.min(workers);
        format!(
            "{workers} workers per target (one request in flight each) sharing {shared} \
             connection(s) for LCache and Redis (worker i on connection i % {shared}); memcached \
             (whose client cannot multiplex) keeps one connection per worker"
        )
    };
    let settings = format!(
        "lcache-bench: {sharing}, {} keys \
         (all preloaded), {} warm-up + {} measured per round, {} round(s) with targets \
         interleaved, generator on {} tokio thread(s), seed {}. Latency percentiles are over \
         all rounds; CPU µs/op is user+system time of the server process(es) and of the \
         generator per operation (median over rounds).",
        args.keys,
        args.warmup,
        match args.ops {
            Some(ops) => format!("at most {} / {ops} ops", args.duration),
            None => args.duration.clone(),
        },
        args.rounds,
        args.threads,
        args.seed,
    );
    Ok(markdown(&settings, &reports))
}
