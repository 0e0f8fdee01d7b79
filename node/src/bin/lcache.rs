//! `lcache`: a command-line client for LCache nodes, and the three-node demo.
//!
//! Exit codes: 0 success, 1 a `get` miss (`not found` on stderr), 2 any other error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use lcache_node::spec::parse_duration;
use lcache_transport::{CacheClient, ClientConfig, GroupCounters, NodeStats, TlsConfig};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "lcache", version, about = "LCache command-line client")]
struct Args {
    /// Node to talk to.
    #[arg(long, default_value = "127.0.0.1:7001", global = true)]
    addr: String,
    /// Cache group.
    #[arg(long, default_value = "default", global = true)]
    group: String,
    /// Deadline of the request.
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    timeout: Duration,
    /// Client certificate (PEM) for a node serving mutual TLS; with --tls-key and --tls-ca.
    #[arg(long, value_name = "PEM", global = true)]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", global = true)]
    tls_key: Option<PathBuf>,
    /// The CA the node's certificate must chain to (PEM).
    #[arg(long, value_name = "PEM", global = true)]
    tls_ca: Option<PathBuf>,
    /// Verify the node's certificate for this name instead of the host of --addr.
    #[arg(long, value_name = "NAME", global = true)]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the raw value of KEY to stdout.
    Get {
        /// The key.
        key: String,
    },
    /// Store VALUE under KEY.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Lifetime, e.g. 30s (defaults to the group's).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Remove KEY.
    Del {
        /// The key.
        key: String,
    },
    /// Print the node's counters.
    Stats,
    /// Run three nodes A, B, C on loopback; each sets its key and reads the others'.
    Demo,
}

enum Outcome {
    Done,
    Miss,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Miss) => {
            eprintln!("not found");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<Outcome> {
    if let Command::Demo = args.command {
        let report = lcache_node::demo::run().await?;
        print!("{}", report.render());
        return Ok(Outcome::Done);
    }
    let config = ClientConfig {
        request_timeout: args.timeout,
        ..ClientConfig::default()
    };
    let tls = TlsConfig::from_optional_files(
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.tls_ca.as_deref(),
    )?;
    let client = match (tls, &args.tls_server_name) {
        (Some(tls), name) => {
            let tls = match name {
                Some(name) => tls.with_server_name(name)?,
                None => tls,
            };
            CacheClient::connect_tls(&args.addr, config, &tls).await?
        }
        (None, Some(_)) => {
            anyhow::bail!("--tls-server-name needs --tls-cert, --tls-key and --tls-ca")
        }
        (None, None) => CacheClient::connect(&args.addr, config).await?,
    };
    match args.command {
        Command::Get { key } => match client.get(&args.group, key).await? {
            Some(fetched) => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&fetched.value)?;
                stdout.flush()?;
            }
            None => return Ok(Outcome::Miss),
        },
        Command::Set { key, value, ttl } => {
            client.set(&args.group, key, value, ttl).await?;
        }
        Command::Del { key } => {
            let existed = client.delete(&args.group, key).await?;
            println!("{}", if existed { "deleted" } else { "absent" });
        }
        Command::Stats => print_stats(&client.stats(Some(&args.group)).await?),
        Command::Demo => {}
    }
    Ok(Outcome::Done)
}

/// Prints every counter of every group with its meaning (the docs of `GroupCounters`), then
/// each store tier's budget and contents.
fn print_stats(stats: &NodeStats) {
    for g in &stats.groups {
        println!("node={} group={}", stats.node_id, g.group);
        let docs = GroupCounters::DOCS;
        for ((name, value), doc) in g.counters.values().zip(docs) {
            println!("  {name:<24} {value:>12}  {}", doc.trim());
        }
        for tier in &g.tiers {
            println!(
                "  tier {:<7} budget_bytes={}",
                tier.tier.name(),
                tier.budget_bytes
            );
            for (name, value) in tier.store.values() {
                println!("    {name:<22} {value:>12}");
            }
        }
    }
}
